"""The footage world: the same scenes and questions in clips that move like real footage.

Where the rich world slides a muted photograph under flat shapes, here the photograph is filmed: a
camera that pans, zooms, rolls and shakes (or stands still, as most real shots do), textured movers cut
from other photographs that travel, turn, grow and deform non-rigidly, a region of the background that
ripples like water or foliage, lighting that drifts and a shadow that passes, motion or focus blur,
sensor noise and JPEG compression. Every motion is smooth and seeded. The scene's shapes are drawn on
top at the scene's screen positions, so every question keeps its answer.

Only `rich.TRAIN_PHOTOS` are filmed; the out-of-distribution check's photographs stay unseen.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from stts_core.data.synthetic.rich import TRAIN_PHOTOS, photo
from stts_core.data.synthetic.scene import Scene, draw_object

_OVERSCAN = 1.8  # the photograph is this many output frames wide, so pans and zoom-outs stay inside it


@dataclass
class Camera:
    """The camera's path over the background photograph, in output pixels per frame."""

    velocity: tuple[float, float] = (0.0, 0.0)  # pan
    zoom_rate: float = 0.0  # log-scale change per frame (> 0 zooms in)
    roll_rate: float = 0.0  # radians per frame
    shake: float = 0.0  # handheld jitter, px (smoothed random walk)
    start: tuple[float, float] = (0.5, 0.5)  # window centre in the photograph, relative


@dataclass
class Sprite:
    """A textured mover: a soft-edged cut-out of a photograph."""

    photo: str
    crop: tuple[float, float, float]  # (x, y, side) of the cut-out in the photograph, relative
    size: float  # px
    start: tuple[float, float]  # centre, px
    velocity: tuple[float, float]  # px per frame
    bend: float  # curvature of the path (px per frame^2, perpendicular to the velocity)
    spin: float  # radians per frame
    grow: float  # log-scale change per frame
    wobble: float  # amplitude of the non-rigid deformation, as a fraction of the size
    phase: float
    outline: tuple[float, ...]  # radial harmonics of the blob mask


@dataclass
class FootageStyle:
    """How the footage world films one scene."""

    background: str
    camera: Camera
    sprites: list[Sprite]
    ripple: tuple[float, float, float, float] | None  # (cx, cy, radius, amplitude) in px, or None
    gain: float  # lighting drift over the clip (the last frame's gain is 1 + gain)
    shadow: tuple[float, float, float] | None  # (depth, speed px/frame, angle) of a passing soft shadow
    blur: str  # "none", "motion" (along the pan) or "focus" (a focus pull)
    noise: float  # sensor noise sigma (0-255)
    jpeg: int | None  # JPEG quality of every frame, or None
    cut_at: int | None  # from this frame on, another photograph (a hard cut)
    cut_background: str = ""
    seed: int = 0
    extras: dict = field(default_factory=dict)


def draw_footage_style(rng: np.random.Generator, scene: Scene) -> FootageStyle:
    """A random filming of `scene` (a pure function of the generator's state)."""
    size = scene.size
    names = rng.choice(len(TRAIN_PHOTOS), size=4, replace=False)
    camera = Camera(start=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65))))
    if rng.random() < 0.6:  # about four shots in ten stand still
        speed = rng.uniform(0.3, 3.5) * size / 252
        angle = rng.uniform(0, 2 * np.pi)
        camera.velocity = (float(speed * np.cos(angle)), float(speed * np.sin(angle))) if rng.random() < 0.75 \
            else (0.0, 0.0)
        camera.zoom_rate = float(rng.uniform(-0.02, 0.025)) if rng.random() < 0.4 else 0.0
        camera.roll_rate = float(rng.uniform(-0.01, 0.01)) if rng.random() < 0.25 else 0.0
        camera.shake = float(rng.uniform(0.3, 2.0)) if rng.random() < 0.5 else 0.0
    sprites = [_draw_sprite(rng, TRAIN_PHOTOS[int(names[1 + i])], scene) for i in range(int(rng.integers(0, 3)))]
    ripple = None
    if rng.random() < 0.35:
        ripple = (float(rng.uniform(0.2, 0.8) * size), float(rng.uniform(0.2, 0.8) * size),
                  float(rng.uniform(0.15, 0.35) * size), float(rng.uniform(1.0, 3.5)))
    shadow = None
    if rng.random() < 0.25:
        shadow = (float(rng.uniform(0.2, 0.5)), float(rng.uniform(2.0, 6.0) * size / 252),
                  float(rng.uniform(0, 2 * np.pi)))
    cut_at = int(rng.integers(scene.num_frames // 3, 2 * scene.num_frames // 3 + 1)) if rng.random() < 0.1 else None
    return FootageStyle(
        background=TRAIN_PHOTOS[int(names[0])], camera=camera, sprites=sprites, ripple=ripple,
        gain=float(rng.uniform(-0.25, 0.25)) if rng.random() < 0.4 else 0.0, shadow=shadow,
        blur=str(rng.choice(["none", "motion", "focus"], p=[0.55, 0.3, 0.15])),
        noise=0.0 if rng.random() < 0.3 else float(rng.uniform(1.0, 5.0)),
        jpeg=int(rng.integers(25, 90)) if rng.random() < 0.7 else None,
        cut_at=cut_at, cut_background=TRAIN_PHOTOS[int(names[3])], seed=int(rng.integers(2**31 - 1)))


def _draw_sprite(rng: np.random.Generator, name: str, scene: Scene) -> Sprite:
    size = scene.size
    side = float(rng.uniform(0.18, 0.35) * size)
    travel = rng.uniform(0.0, 0.5) * size / max(1, scene.num_frames - 1)
    angle = rng.uniform(0, 2 * np.pi)
    return Sprite(
        photo=name, crop=(float(rng.random()), float(rng.random()), float(rng.uniform(0.2, 0.5))), size=side,
        start=(float(rng.uniform(0.2, 0.8) * size), float(rng.uniform(0.2, 0.8) * size)),
        velocity=(float(travel * np.cos(angle)), float(travel * np.sin(angle))),
        bend=float(rng.normal(0.0, 0.15)), spin=float(rng.uniform(-0.08, 0.08)) if rng.random() < 0.5 else 0.0,
        grow=float(rng.uniform(-0.03, 0.03)) if rng.random() < 0.3 else 0.0,
        wobble=float(rng.uniform(0.02, 0.12)) if rng.random() < 0.7 else 0.0, phase=float(rng.uniform(0, 6.3)),
        outline=tuple(float(x) for x in rng.normal(0.0, 0.12, size=4)))


@functools.lru_cache(maxsize=16)
def _filmed_photo(name: str, size: int) -> np.ndarray:
    """The photograph at `_OVERSCAN` output frames across its short side, float32."""
    img = photo(name)
    h, w = img.shape[:2]
    scale = _OVERSCAN * size / min(h, w)
    out = cv2.resize(img, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_AREA)
    return out.astype(np.float32)


def _shake_path(rng: np.random.Generator, frames: int, amount: float) -> np.ndarray:
    """(T, 2) smoothed random-walk jitter of the handheld camera, px."""
    if not amount:
        return np.zeros((frames, 2))
    steps = rng.normal(0.0, amount, size=(frames, 2))
    walk = np.cumsum(steps, axis=0) * 0.5 + steps
    return walk - walk.mean(0)


def _camera_view(img: np.ndarray, cam: Camera, t: int, jitter: np.ndarray, size: int) -> np.ndarray:
    """Frame t of the camera's window over the photograph (bilinear, reflected at the border)."""
    h, w = img.shape[:2]
    cx = cam.start[0] * w + cam.velocity[0] * t + jitter[0]
    cy = cam.start[1] * h + cam.velocity[1] * t + jitter[1]
    scale = math.exp(-cam.zoom_rate * t)  # photograph pixels per output pixel
    a = cam.roll_rate * t
    c, s = scale * math.cos(a), scale * math.sin(a)
    # output (u, v) -> photograph: centre + R(a) * scale * ((u, v) - size / 2)
    m = np.array([[c, -s, cx - c * size / 2 + s * size / 2], [s, c, cy - s * size / 2 - c * size / 2]])
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def _ripple(frame: np.ndarray, ripple: tuple[float, float, float, float], t: int) -> np.ndarray:
    """A region that moves in place, non-rigidly (water, foliage): a travelling sine displacement under
    a Gaussian window."""
    cx, cy, radius, amp = ripple
    size = frame.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    window = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
    k = 2 * np.pi / max(8.0, radius / 2)
    map_x = xx + amp * window * np.sin(k * yy + 0.9 * t)
    map_y = yy + amp * window * np.cos(k * xx + 0.7 * t)
    return cv2.remap(frame, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _sprite_cutout(sprite: Sprite) -> tuple[np.ndarray, np.ndarray]:
    """The sprite's texture (n, n, 3) float32 and soft blob mask (n, n) in [0, 1]."""
    img = photo(sprite.photo)
    h, w = img.shape[:2]
    side = max(8, int(sprite.crop[2] * min(h, w)))
    x = int(sprite.crop[0] * (w - side))
    y = int(sprite.crop[1] * (h - side))
    n = max(8, int(round(sprite.size)))
    tex = cv2.resize(img[y:y + side, x:x + side], (n, n), interpolation=cv2.INTER_AREA).astype(np.float32)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) - (n - 1) / 2
    theta = np.arctan2(yy, xx)
    radius = 0.42 * n * (1.0 + sum(c * np.cos((k + 2) * theta + k) for k, c in enumerate(sprite.outline)))
    mask = (np.hypot(xx, yy) <= radius).astype(np.float32)
    return tex, cv2.GaussianBlur(mask, (0, 0), max(0.8, n / 40))


def _place_sprite(frame: np.ndarray, sprite: Sprite, cutout: tuple[np.ndarray, np.ndarray], t: int) -> None:
    """Composite frame t of the sprite in place: deformed, turned, scaled and moved along its path."""
    tex, mask = cutout
    n = tex.shape[0]
    if sprite.wobble:
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        amp = sprite.wobble * n
        map_x = xx + amp * np.sin(2 * np.pi * yy / n * 1.3 + sprite.phase + 0.8 * t)
        map_y = yy + amp * np.sin(2 * np.pi * xx / n * 1.1 + sprite.phase + 0.6 * t)
        tex = cv2.remap(tex, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mask = cv2.remap(mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    vx, vy = sprite.velocity
    norm = math.hypot(vx, vy) or 1.0
    px = sprite.start[0] + vx * t - vy / norm * sprite.bend * t * t / 2
    py = sprite.start[1] + vy * t + vx / norm * sprite.bend * t * t / 2
    m = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), math.degrees(sprite.spin * t), math.exp(sprite.grow * t))
    m[:, 2] += (px - (n - 1) / 2, py - (n - 1) / 2)
    size = frame.shape[0]
    moved = cv2.warpAffine(tex, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    frame *= 1.0 - alpha
    frame += alpha * moved


def _lighting(frame: np.ndarray, style: FootageStyle, t: int, frames: int) -> np.ndarray:
    """The light's drift over the clip and a soft shadow passing through."""
    out = frame * (1.0 + style.gain * t / max(1, frames - 1))
    if style.shadow is not None:
        depth, speed, angle = style.shadow
        size = frame.shape[0]
        cx = size / 2 + (t - frames / 2) * speed * math.cos(angle)
        cy = size / 2 + (t - frames / 2) * speed * math.sin(angle)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (0.3 * size) ** 2))
        out *= (1.0 - depth * blob)[..., None]
    return out


def _blur(frame: np.ndarray, style: FootageStyle, t: int, frames: int) -> np.ndarray:
    """Motion blur along the pan (length: pixels moved in a frame), or a focus pull that peaks mid-clip."""
    if style.blur == "motion":
        vx, vy = style.camera.velocity
        length = min(9, int(round(math.hypot(vx, vy) + style.camera.shake)))
        if length < 2:
            return frame
        kernel = np.zeros((length * 2 + 1, length * 2 + 1), dtype=np.float32)
        angle = math.atan2(vy, vx) if (vx or vy) else 0.0
        for i in range(-length, length + 1):
            kernel[length + round(i * math.sin(angle) / 2), length + round(i * math.cos(angle) / 2)] = 1.0
        return cv2.filter2D(frame, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    if style.blur == "focus":
        sigma = 2.5 * math.sin(math.pi * t / max(1, frames - 1))
        return cv2.GaussianBlur(frame, (0, 0), sigma) if sigma > 0.3 else frame
    return frame


def _jpeg(frame: np.ndarray, quality: int | None) -> np.ndarray:
    if quality is None:
        return frame
    ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] if ok else frame


def render_footage(scene: Scene, style: FootageStyle) -> np.ndarray:
    """Frames (T, size, size, 3) uint8 of the footage world."""
    size, count = scene.size, scene.num_frames
    rng = np.random.default_rng(style.seed)
    jitter = _shake_path(rng, count, style.camera.shake)
    cutouts = [_sprite_cutout(s) for s in style.sprites]
    frames = np.empty((count, size, size, 3), dtype=np.uint8)
    for t in range(count):
        name = style.cut_background if style.cut_at is not None and t >= style.cut_at else style.background
        view = _camera_view(_filmed_photo(name, size), style.camera, t, jitter[t], size)
        if style.ripple is not None:
            view = _ripple(view, style.ripple, t)
        for sprite, cutout in zip(style.sprites, cutouts, strict=True):
            _place_sprite(view, sprite, cutout, t)
        img = np.ascontiguousarray(np.clip(np.rint(view), 0, 255).astype(np.uint8))
        for obj in scene.objects:
            if obj.visible(t):
                draw_object(img, obj, t)
        out = _blur(_lighting(img.astype(np.float32), style, t, count), style, t, count)
        if style.noise:
            out += style.noise * rng.standard_normal(out.shape, dtype=np.float32)
        frames[t] = _jpeg(np.ascontiguousarray(np.clip(np.rint(out), 0, 255).astype(np.uint8)), style.jpeg)
    return frames
