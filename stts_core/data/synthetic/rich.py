"""The rich world: the same scenes and questions over real photographs (scikit-image), with camera
pans, hard cuts, movers that stop, static distractors, noise and brightness flicker."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from stts_core.data.synthetic.scene import (
    Scene,
    _boxes_clear,
    draw_object,
)

# mixed: odd seeds rich, even seeds plain; footage: filmed like real video (`footage`); blend: footage for
# even seeds, rich for seeds 1 mod 4, plain for seeds 3 mod 4
WORLDS: tuple[str, ...] = ("plain", "rich", "mixed", "footage", "blend")
# Photographs shipped inside the scikit-image wheel (no download). The OOD check (`stts_core.ood`) uses
# other ones, so no background it shows was seen in training.
TRAIN_PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "rocket", "chelsea", "hubble_deep_field", "grass",
                                 "gravel", "camera", "immunohistochemistry", "stereo_motorcycle")
_DISTRACTOR_GREYS = (30, 90, 170, 230)


@functools.lru_cache(maxsize=32)
def photo(name: str) -> np.ndarray:
    """An RGB uint8 photograph from scikit-image's bundled data (grey ones repeated to 3 channels)."""
    from skimage import data

    img = getattr(data, name)()
    img = img[0] if isinstance(img, tuple) else img
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


@dataclass
class RichStyle:
    """How the rich world renders one scene. Pans move the background only: objects keep the scene's
    screen positions, so every question keeps its answer."""

    photos: tuple[str, str]  # before and after the cut
    crop: tuple[float, float, float]  # (x, y, zoom) of the first frame's window into the photo, in [0, 1]
    pan: tuple[float, float]  # background shift per frame in px (the camera pans the other way)
    cut_at: int | None  # from this frame on, the second photo (a hard cut)
    mute: float  # how much of the photo's contrast is kept (objects must stay easy to see)
    noise: float  # per-pixel Gaussian noise sigma (0-255 scale), new in every frame
    flicker: float  # per-frame brightness gain amplitude
    seed: int  # of the noise and flicker draws
    distractors: list[tuple[str, tuple[int, int], int, int]] = field(default_factory=list)  # shape, centre, size, grey


def draw_rich_style(rng: np.random.Generator, scene: Scene) -> RichStyle:
    """A random rich rendering of `scene`; may also make its mover stop part-way (same path, same answers)."""
    t, size = scene.num_frames, scene.size
    names = rng.choice(len(TRAIN_PHOTOS), size=2, replace=False)
    pan = (0.0, 0.0)
    if rng.random() < 0.4:
        speed = rng.uniform(0.5, 3.0) * size / 252
        angle = rng.uniform(0, 2 * np.pi)
        pan = (float(speed * np.cos(angle)), float(speed * np.sin(angle)))
    cut_at = int(rng.integers(t // 4, 3 * t // 4 + 1)) if rng.random() < 0.2 else None
    for obj in scene.objects:
        if obj.behaviour == "moves" and rng.random() < 0.3:
            obj.stop = int(rng.integers(t // 2, t - 1))
            scale = (t - 1) / obj.stop
            obj.velocity = (obj.velocity[0] * scale, obj.velocity[1] * scale)
    return RichStyle(
        photos=(TRAIN_PHOTOS[int(names[0])], TRAIN_PHOTOS[int(names[1])]),
        crop=(float(rng.random()), float(rng.random()), float(rng.uniform(0.5, 1.0))),
        pan=pan,
        cut_at=cut_at,
        mute=float(rng.uniform(0.35, 0.7)),
        noise=0.0 if rng.random() < 0.4 else float(rng.uniform(1.0, 6.0)),
        flicker=0.0 if rng.random() < 0.6 else float(rng.uniform(0.02, 0.08)),
        seed=int(rng.integers(2**31 - 1)),
        distractors=_place_distractors(rng, scene, int(rng.integers(0, 3))),
    )


def _place_distractors(rng: np.random.Generator, scene: Scene, count: int) -> list:
    """Static hollow grey shapes (rings, frames) clear of every object's path: seen, never asked about."""
    boxes = [o.box(scene.num_frames) for o in scene.objects]
    out = []
    for _ in range(count):
        for _ in range(30):
            side = int(scene.size * rng.uniform(0.1, 0.18))
            cx, cy = (int(v) for v in rng.integers(side, scene.size - side, size=2))
            box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
            if all(_boxes_clear(box, b) for b in boxes):
                boxes.append(box)
                grey = int(rng.choice(_DISTRACTOR_GREYS))
                out.append((str(rng.choice(["ring", "frame"])), (cx, cy), side, grey))
                break
    return out


def _photo_window(name: str, style: RichStyle, size: int, frames: int) -> np.ndarray:
    """The photo resized so the first frame's window plus the whole pan fits, muted toward its mean."""
    img = photo(name)
    reach = int(np.ceil(max(abs(style.pan[0]), abs(style.pan[1])) * (frames - 1)))
    need = size + 2 * reach
    h, w = img.shape[:2]
    scale = need / (min(h, w) * style.crop[2])
    img = cv2.resize(img, (max(need, int(round(w * scale))), max(need, int(round(h * scale)))),
                     interpolation=cv2.INTER_AREA).astype(np.float32)
    mean = img.mean(axis=(0, 1), keepdims=True)
    return mean + style.mute * (img - mean)


def render_rich(scene: Scene, style: RichStyle) -> np.ndarray:
    """Frames (T, size, size, 3) uint8 of the rich world: photo background (panned, cut), objects,
    distractors, then the camera's flicker and noise over everything."""
    size, t_count = scene.size, scene.num_frames
    rng = np.random.default_rng(style.seed)
    names = style.photos if style.cut_at is not None else style.photos[:1]
    backgrounds = [_photo_window(name, style, size, t_count) for name in names]
    reach = int(np.ceil(max(abs(style.pan[0]), abs(style.pan[1])) * (t_count - 1)))
    frames = np.empty((t_count, size, size, 3), dtype=np.uint8)
    for t in range(t_count):
        bg = backgrounds[1 if style.cut_at is not None and t >= style.cut_at else 0]
        room_y, room_x = bg.shape[0] - size - 2 * reach, bg.shape[1] - size - 2 * reach
        y = int(round(reach + style.crop[1] * room_y - style.pan[1] * t))
        x = int(round(reach + style.crop[0] * room_x - style.pan[0] * t))
        img = np.clip(np.rint(bg[y:y + size, x:x + size]), 0, 255).astype(np.uint8)
        img = np.ascontiguousarray(img)
        for shape, (cx, cy), side, grey in style.distractors:
            thick = max(2, side // 8)
            if shape == "ring":
                cv2.circle(img, (cx, cy), side // 2, (grey,) * 3, thickness=thick)
            else:
                cv2.rectangle(img, (cx - side // 2, cy - side // 2), (cx + side // 2, cy + side // 2), (grey,) * 3,
                              thickness=thick)
        for obj in scene.objects:
            if obj.visible(t):
                draw_object(img, obj, t)
        out = img.astype(np.float32)
        if style.flicker:
            out *= 1.0 + style.flicker * float(rng.uniform(-1, 1))
        if style.noise:
            out += style.noise * rng.standard_normal(out.shape, dtype=np.float32)
        frames[t] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return frames


