"""Write the real-photograph clip of the built-in model's real-footage check (`stts footage`).

`motorcycle_dolly.mp4`: scikit-image's stereo pair (`skimage.data.stereo_motorcycle`, the Middlebury
2014 "Motorcycle" scene: two real photographs from two camera positions and the measured disparity)
turned into a sideways camera move from the left view to the right one, seen through a
320 px square window: the camera stands still, moves, and stands still again (`dolly_path`). Frame t is the left photograph
warped by a = t / (T - 1) of the disparity (backward warp; occluded pixels take the nearest measured
disparity), so near things (the motorcycle) move up to several times faster than the shelves behind
it: the parallax of the real camera move, not a synthetic one. Run:

    python scripts/make_footage_checks.py --out runs/footage
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage


def dolly_path(num_frames: int) -> np.ndarray:
    """How far along the move each frame is: still for the first third, moving (eased in and out) in
    the middle third, still again at the right view for the last third."""
    u = np.clip(np.linspace(-1.0, 2.0, num_frames), 0.0, 1.0)
    return (u * u * (3.0 - 2.0 * u)).astype(np.float32)


def dolly_frames(num_frames: int = 48, crop: int = 320) -> np.ndarray:
    """(T, crop, crop, 3) uint8: the left view moved toward the right one by the measured disparity,
    a square window around the motorcycle's engine (the shelves behind it move about a third as fast)."""
    from skimage import data

    left, _right, disparity = data.stereo_motorcycle()
    unknown = ~np.isfinite(disparity)
    filled = np.where(unknown, 0.0, disparity)
    nearest = ndimage.distance_transform_edt(unknown, return_distances=False, return_indices=True)
    filled = filled[tuple(nearest)].astype(np.float32)
    h, w = filled.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = [cv2.remap(left, xx + a * filled, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
              for a in dolly_path(num_frames)]
    y, x = (h - crop) // 2 + 40, (w - crop) // 2
    return np.stack(frames)[:, y:y + crop, x:x + crop]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/footage"))
    p.add_argument("--frames", type=int, default=48)
    args = p.parse_args()
    from stts_core.data.video_encode import write_video

    args.out.mkdir(parents=True, exist_ok=True)
    frames = dolly_frames(args.frames)
    print(write_video(args.out / "motorcycle_dolly.mp4", frames, fps=8.0))


if __name__ == "__main__":
    main()
