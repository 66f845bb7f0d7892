"""Synthetic video-QA clips for training and evaluating the built-in tiny video VLM.

Each clip is a static, low-contrast textured background with 1-3 flat, saturated shapes. One shape may
move, one may appear and one may disappear, so answering the questions needs the objects and how they
change over time, while the background is exactly the same in every frame and therefore redundant. That
makes the data a clean test bed for temporal token pruning: the informative tokens are the few 3x3-patch
groups where something moves or (dis)appears.

Every clip is a pure function of its seed. Each clip has a *focus* question type, drawn uniformly, whose
answer is also drawn uniformly before the scene is built around it, so question types and answers are
balanced by construction. A clip yields the focus question plus up to two extra questions about the same
scene.

Question types and templates (``{color} {shape}`` names one object; colours are unique within a scene):

- ``moving_color``: "what color is the moving object ?" -> red / green / blue / yellow
- ``moving_shape``: "what shape is the moving object ?" -> circle / square / triangle
- ``direction``: "which direction does the {color} {shape} move ?" -> left / right / up / down
- ``count``: "how many objects are there at the end ?" -> one / two / three; the number of objects visible
  in the last frame (objects that appeared count, objects that disappeared do not)
- ``appears_shape``: "what shape appears during the video ?" -> circle / square / triangle; the shape of the
  single object that is absent in the first frames and present from some frame on
- ``does_move``: "does the {color} {shape} move ?" -> yes / no
- ``disappears_color``: "what color is the object that disappears ?" -> red / green / blue / yellow
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 205, 30),
}
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
BEHAVIOURS: tuple[str, ...] = ("moves", "static", "appears", "disappears")
COUNT_WORDS: tuple[str, ...] = ("one", "two", "three")

QUESTION_TYPES: tuple[str, ...] = (
    "moving_color",
    "moving_shape",
    "direction",
    "count",
    "appears_shape",
    "does_move",
    "disappears_color",
)
ANSWERS: dict[str, tuple[str, ...]] = {
    "moving_color": tuple(COLORS),
    "moving_shape": SHAPES,
    "direction": tuple(DIRECTIONS),
    "count": COUNT_WORDS,
    "appears_shape": SHAPES,
    "does_move": ("yes", "no"),
    "disappears_color": tuple(COLORS),
}
TEMPLATES: dict[str, str] = {
    "moving_color": "what color is the moving object ?",
    "moving_shape": "what shape is the moving object ?",
    "direction": "which direction does the {color} {shape} move ?",
    "count": "how many objects are there at the end ?",
    "appears_shape": "what shape appears during the video ?",
    "does_move": "does the {color} {shape} move ?",
    "disappears_color": "what color is the object that disappears ?",
}

# Training-only questions that need one look at one named object. From scratch, a model first fits each
# question's answer prior, and every question above needs two steps (find the object that moves /
# appears / disappears, then read it), so reading the video pays off late. These one-step questions make
# it pay off early: they teach finding an object by colour and reading its shape and position. They are
# asked by `grounding_questions` only, never in the val or test splits.
GROUNDING_TEMPLATES: dict[str, str] = {
    "shape_of_color": "what shape is the {color} object ?",
    "color_present": "is there a {color} object ?",
    "side_at": "where is the {color} object at the {moment} ?",
}
GROUNDING_ANSWERS: dict[str, tuple[str, ...]] = {
    "shape_of_color": SHAPES,
    "color_present": ("yes", "no"),
    "side_at": ("left", "right"),
}
_MOMENTS: tuple[str, ...] = ("start", "end")


def _vocabulary() -> list[str]:
    words: set[str] = {*_MOMENTS}
    for template in [*TEMPLATES.values(), *GROUNDING_TEMPLATES.values()]:
        for word in template.split():
            if word == "{color}":
                words.update(COLORS)
            elif word == "{shape}":
                words.update(SHAPES)
            elif not word.startswith("{"):
                words.add(word)
    for answers in [*ANSWERS.values(), *GROUNDING_ANSWERS.values()]:
        words.update(answers)
    return sorted(words)


VOCABULARY: list[str] = _vocabulary()

SPLIT_SEEDS: dict[str, int] = {"train": 0, "val": 1_000_000, "test": 2_000_000}

# Object sizes as a fraction of the frame side: 0.13-0.16 of 252 px is 33-40 px, about one 42-px
# token group, large enough to keep its colour through h264 4:2:0 chroma subsampling.
_SIZE_FRACTION = (0.13, 0.16)
# Travel of the moving object as a fraction of the frame side: clearly visible, always inside the frame.
_TRAVEL_FRACTION = (0.4, 0.6)
_MARGIN = 4
_GAP = 10
# Number of objects when the focus question leaves it free; two or three objects make "which one"
# questions non-trivial more often.
_NUM_OBJECT_WEIGHTS = np.array([0.2, 0.4, 0.4])
# Behaviour of objects added beyond those the focus question needs.
_FILL_WEIGHTS: dict[str, float] = {"moves": 0.35, "static": 0.35, "appears": 0.15, "disappears": 0.15}
# Behaviours of the objects still visible at the end in ``count`` scenes (moves, appears, static).
_COUNT_WEIGHTS: dict[str, float] = {"moves": 0.4, "appears": 0.2, "static": 0.4}
# Probability that an applicable non-focus type is added as an extra question (count: per answer). The
# rates offset how often each type is applicable (appear/disappear objects are rarer than movers, and
# "two" is the commonest end count) so the pooled question types and count answers stay near uniform.
_EXTRA_RATE: dict[str, float] = {
    "moving_color": 0.33,
    "moving_shape": 0.33,
    "direction": 0.33,
    "appears_shape": 0.75,
    "does_move": 0.36,
    "disappears_color": 0.9,
}
_EXTRA_COUNT_RATE: dict[str, float] = {"one": 0.25, "two": 0.17, "three": 0.4}


@dataclass
class SceneObject:
    """One flat shape; its centre moves linearly and it is drawn in frames ``frame_on <= t < frame_off``."""

    shape: str
    color: str
    behaviour: str
    size: int
    start: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    direction: str | None = None
    frame_on: int = 0
    frame_off: int = 0
    stop: int | None = None  # the frame from which a moving object stands still (None: it never stops)

    def center(self, t: int) -> tuple[float, float]:
        t = t if self.stop is None else min(t, self.stop)
        return (self.start[0] + self.velocity[0] * t, self.start[1] + self.velocity[1] * t)

    def visible(self, t: int) -> bool:
        return self.frame_on <= t < self.frame_off

    def box(self, num_frames: int) -> tuple[float, float, float, float]:
        """Bounding box (x0, y0, x1, y1) of everything the object covers over the whole clip."""
        half = self.size / 2
        (xa, ya), (xb, yb) = self.center(0), self.center(num_frames - 1)
        return (min(xa, xb) - half, min(ya, yb) - half, max(xa, xb) + half, max(ya, yb) + half)


@dataclass
class Scene:
    """Everything needed to render a clip and to ask about it.

    ``focus`` is the question type the scene was built for and ``subject`` the index of the object that
    an object-specific focus question (``direction``, ``does_move``) names.
    """

    num_frames: int
    size: int
    background_seed: int
    objects: list[SceneObject] = field(default_factory=list)
    focus: str = "count"
    subject: int | None = None

    def mover(self) -> int | None:
        return next((i for i, o in enumerate(self.objects) if o.behaviour == "moves"), None)

    def with_behaviour(self, behaviour: str) -> int | None:
        return next((i for i, o in enumerate(self.objects) if o.behaviour == behaviour), None)


@dataclass
class QA:
    question: str
    answer: str
    qtype: str


@dataclass
class Clip:
    frames: np.ndarray
    scene: Scene
    qas: list[QA]
    seed: int


def _boxes_clear(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[2] + _GAP <= b[0] or b[2] + _GAP <= a[0] or a[3] + _GAP <= b[1] or b[3] + _GAP <= a[1]


def _roles_for(focus: str, answer: str, rng: np.random.Generator, max_objects: int = 3) -> list[str]:
    """Behaviours of all objects such that ``focus`` can have ``answer``.

    Apart from ``count``, the first role is the subject the answer is about.
    """
    if focus == "count":
        visible_end = COUNT_WORDS.index(answer) + 1
        roles: list[str] = []
        for _ in range(visible_end):
            pool = [r for r in _COUNT_WEIGHTS if r == "static" or r not in roles]
            weights = np.array([_COUNT_WEIGHTS[r] for r in pool])
            roles.append(str(rng.choice(pool, p=weights / weights.sum())))
        if visible_end < max_objects and rng.random() < 0.4:
            roles.append("disappears")
        return [roles[i] for i in rng.permutation(len(roles))]
    if focus in ("moving_color", "moving_shape", "direction") or (focus == "does_move" and answer == "yes"):
        roles = ["moves"]
    elif focus == "appears_shape":
        roles = ["appears"]
    elif focus == "disappears_color":
        roles = ["disappears"]
    else:
        roles = [str(rng.choice(["static", "appears", "disappears"], p=[0.6, 0.2, 0.2]))]
    n = min(int(rng.choice(3, p=_NUM_OBJECT_WEIGHTS)) + 1, max_objects)
    while len(roles) < n:
        pool = [r for r in _FILL_WEIGHTS if r == "static" or r not in roles]
        weights = np.array([_FILL_WEIGHTS[r] for r in pool])
        roles.append(str(rng.choice(pool, p=weights / weights.sum())))
    return roles


def _place(
    roles: list[str], num_frames: int, size: int, rng: np.random.Generator, direction: str | None
) -> list[SceneObject] | None:
    """Random non-overlapping geometry for the given behaviours, or None when a draw does not fit.

    Boxes cover each object's whole trajectory plus a gap, so objects never touch in any frame and the
    moving object never passes over another one.
    """
    boxes: list[tuple[float, float, float, float]] = []
    placed: dict[int, SceneObject] = {}
    lo_k, hi_k = max(1, num_frames // 4), num_frames - max(1, num_frames // 4)
    for i in sorted(range(len(roles)), key=lambda j: roles[j] != "moves"):
        role = roles[i]
        obj_size = int(round(size * rng.uniform(*_SIZE_FRACTION)))
        half = obj_size / 2
        lo, hi = _MARGIN + half, size - _MARGIN - half
        for _ in range(50):
            velocity = (0.0, 0.0)
            heading = None
            if role == "moves":
                heading = direction or str(rng.choice(list(DIRECTIONS)))
                dx, dy = DIRECTIONS[heading]
                travel = size * rng.uniform(*_TRAVEL_FRACTION)
                along = rng.uniform(lo, hi - travel) + (travel if dx < 0 or dy < 0 else 0.0)
                across = rng.uniform(lo, hi)
                start = (along, across) if dx else (across, along)
                step = travel / (num_frames - 1)
                velocity = (dx * step, dy * step)
            else:
                start = (rng.uniform(lo, hi), rng.uniform(lo, hi))
            frame_on, frame_off = 0, num_frames
            if role == "appears":
                frame_on = int(rng.integers(lo_k, hi_k + 1))
            elif role == "disappears":
                frame_off = int(rng.integers(lo_k, hi_k + 1))
            obj = SceneObject(
                shape=SHAPES[0],
                color=next(iter(COLORS)),
                behaviour=role,
                size=obj_size,
                start=(float(start[0]), float(start[1])),
                velocity=(float(velocity[0]), float(velocity[1])),
                direction=heading,
                frame_on=frame_on,
                frame_off=frame_off,
            )
            box = obj.box(num_frames)
            if all(_boxes_clear(box, other) for other in boxes):
                boxes.append(box)
                placed[i] = obj
                break
        else:
            return None
    return [placed[i] for i in range(len(roles))]


def make_scene(rng: np.random.Generator, num_frames: int = 16, size: int = 252, max_objects: int = 3) -> Scene:
    """Draw a focus question type and its answer uniformly, then a scene in which that answer holds.

    `max_objects` < 3 gives easier scenes for a training curriculum (a focus or answer that needs
    more objects is drawn again); the default draws exactly what the splits always held."""
    if num_frames < 4:
        raise ValueError("num_frames must be at least 4 so objects can appear and disappear mid-clip")
    if size < 64:
        raise ValueError("size must be at least 64 px")
    if not 1 <= max_objects <= 3:
        raise ValueError("max_objects must be 1, 2 or 3")
    focus = str(rng.choice(QUESTION_TYPES))
    answer = str(rng.choice(ANSWERS[focus]))
    while _needs_objects(focus, answer) > max_objects:
        focus = str(rng.choice(QUESTION_TYPES))
        answer = str(rng.choice(ANSWERS[focus]))
    for _ in range(1000):
        roles = _roles_for(focus, answer, rng, max_objects)
        objects = _place(roles, num_frames, size, rng, answer if focus == "direction" else None)
        if objects is not None:
            break
    else:
        raise RuntimeError(f"could not place non-overlapping objects in a {size}-px frame")
    colors = [str(c) for c in rng.permutation(list(COLORS))[: len(objects)]]
    shapes = [str(rng.choice(SHAPES)) for _ in objects]
    # For every focus except count the subject is the first role, the one the answer is about.
    subject = None if focus == "count" else 0
    if focus.endswith("_color"):
        colors = [answer] + [str(c) for c in rng.permutation(list(COLORS)) if c != answer][: len(objects) - 1]
    elif focus.endswith("_shape"):
        shapes[0] = answer
    for obj, color, shape in zip(objects, colors, shapes, strict=True):
        obj.color, obj.shape = color, str(shape)
    return Scene(
        num_frames=num_frames,
        size=size,
        background_seed=int(rng.integers(2**31 - 1)),
        objects=objects,
        focus=focus,
        subject=subject,
    )


def render_background(seed: int, size: int) -> np.ndarray:
    """Muted, low-saturation texture (tinted grey, gradient, soft stripes): visible but carries no answer."""
    rng = np.random.default_rng(seed)
    coord = np.arange(size, dtype=np.float32) / size
    base = rng.uniform(95, 155) + rng.uniform(-8, 8, size=3)
    gx, gy = rng.uniform(-12, 12, size=2)
    # Plane waves sin(u x + v y + p) written as sums of outer products, so no full-size trig is needed.
    plane = np.zeros((size, size), dtype=np.float32)
    plane += (gy * (coord - 0.5))[:, None] + (gx * (coord - 0.5))[None, :]
    for _ in range(3):
        angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(1.5, 6.0), rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(2, 5)
        u, v = 2 * np.pi * freq * np.cos(angle), 2 * np.pi * freq * np.sin(angle)
        along_x, along_y = u * coord + phase, v * coord
        plane += amp * np.sin(along_y)[:, None] * np.cos(along_x)[None, :]
        plane += amp * np.cos(along_y)[:, None] * np.sin(along_x)[None, :]
    img = plane[..., None] + base.astype(np.float32)[None, None, :]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def draw_object(img: np.ndarray, obj: SceneObject, t: int, fill: tuple[int, int, int] | None = None) -> None:
    """Draw ``obj`` as it is at frame ``t`` into the RGB image ``img`` in place (in ``fill`` if given)."""
    cx, cy = obj.center(t)
    half = obj.size / 2
    color = fill if fill is not None else COLORS[obj.color]
    if obj.shape == "circle":
        cv2.circle(img, (int(round(cx)), int(round(cy))), int(round(half)), color, thickness=-1)
    elif obj.shape == "square":
        p0 = (int(round(cx - half)), int(round(cy - half)))
        p1 = (int(round(cx + half)) - 1, int(round(cy + half)) - 1)
        cv2.rectangle(img, p0, p1, color, thickness=-1)
    elif obj.shape == "triangle":
        pts = np.rint([[cx, cy - half], [cx - half, cy + half], [cx + half, cy + half]]).astype(np.int32)
        cv2.fillPoly(img, [pts], color)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


def render_scene(scene: Scene) -> np.ndarray:
    """Frames (T, size, size, 3) uint8 RGB; pixels no object ever covers are identical in all frames."""
    background = render_background(scene.background_seed, scene.size)
    frames = np.repeat(background[None], scene.num_frames, axis=0)
    for t in range(scene.num_frames):
        for obj in scene.objects:
            if obj.visible(t):
                draw_object(frames[t], obj, t)
    return frames


# ----------------------------------------------------------------- the rich world
WORLDS: tuple[str, ...] = ("plain", "rich", "mixed")  # mixed: odd seeds rich, even seeds plain
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


# Per-cell attribute classes of `group_labels`: 0 is "no object" in each. x and y are the object's
# centre in ninths of the frame side: finer than a token group, so that a token says where in its
# group the object is and the shift between frames shows.
POSITION_BINS = 9
LABEL_HEADS: dict[str, tuple[str, ...]] = {
    "color": ("none", *COLORS),
    "shape": ("none", *SHAPES),
    "x": ("none", *(f"x{i}" for i in range(POSITION_BINS))),
    "y": ("none", *(f"y{i}" for i in range(POSITION_BINS))),
    "motion": ("none", "still", "appeared", *DIRECTIONS),
}


def group_labels(scene: Scene, rows: int, cols: int, min_fraction: float = 0.05) -> np.ndarray:
    """(T, rows * cols, len(LABEL_HEADS)) int64 class of each grid cell per frame (row-major, the
    order of a model's token groups): colour, shape, centre position (x, y in `POSITION_BINS` bins of
    the frame side) and motion of the object that covers most of the cell, or 0 where objects cover
    less than `min_fraction` of it. Motion is "appeared" for an object absent at the start, the
    direction for the moving object and "still" otherwise.

    Dense targets for training from scratch: colour, shape and position teach the vision side to put
    what is where into every visual token; motion, which no single frame shows, teaches the LLM to
    compare frames, so that the questions only need to look these up."""
    t_count, size = scene.num_frames, scene.size
    out = np.zeros((t_count, rows * cols, len(LABEL_HEADS)), dtype=np.int64)
    ys = np.linspace(0, size, rows + 1).round().astype(int)
    xs = np.linspace(0, size, cols + 1).round().astype(int)
    colors, shapes, motions = list(COLORS), list(SHAPES), LABEL_HEADS["motion"]
    for t in range(t_count):
        ids = np.zeros((size, size, 3), dtype=np.uint8)
        for i, obj in enumerate(scene.objects):
            if obj.visible(t):
                draw_object(ids, obj, t, fill=(i + 1, 0, 0))
        ids = ids[..., 0]
        for r in range(rows):
            for c in range(cols):
                cell = ids[ys[r]:ys[r + 1], xs[c]:xs[c + 1]]
                counts = np.bincount(cell.ravel(), minlength=len(scene.objects) + 1)
                counts[0] = 0
                best = int(counts.argmax())
                if counts[best] < min_fraction * cell.size:
                    continue
                obj = scene.objects[best - 1]
                motion = motions.index({"moves": obj.direction, "appears": "appeared"}.get(obj.behaviour) or "still")
                x, y = (1 + min(POSITION_BINS - 1, max(0, int(v * POSITION_BINS / size))) for v in obj.center(t))
                out[t, r * cols + c] = (1 + colors.index(obj.color), 1 + shapes.index(obj.shape), x, y, motion)
    return out



def _name(obj: SceneObject) -> dict[str, str]:
    return {"color": obj.color, "shape": obj.shape}


def answer_for(scene: Scene, qtype: str, subject: int | None = None) -> QA:
    """The question of type ``qtype`` (about object ``subject`` where it names one) and its answer."""
    objs = scene.objects
    mover = scene.mover()
    if qtype in ("moving_color", "moving_shape", "direction"):
        if mover is None:
            raise ValueError(f"{qtype} needs a moving object")
        m = objs[mover]
        answers = {"moving_color": m.color, "moving_shape": m.shape, "direction": m.direction}
        return QA(TEMPLATES[qtype].format(**_name(m)), str(answers[qtype]), qtype)
    if qtype == "count":
        n = sum(o.visible(scene.num_frames - 1) for o in objs)
        return QA(TEMPLATES[qtype], COUNT_WORDS[n - 1], qtype)
    if qtype == "appears_shape":
        i = scene.with_behaviour("appears")
        if i is None:
            raise ValueError("appears_shape needs an appearing object")
        return QA(TEMPLATES[qtype], objs[i].shape, qtype)
    if qtype == "disappears_color":
        i = scene.with_behaviour("disappears")
        if i is None:
            raise ValueError("disappears_color needs a disappearing object")
        return QA(TEMPLATES[qtype], objs[i].color, qtype)
    if qtype == "does_move":
        if subject is None:
            raise ValueError("does_move needs a subject object")
        o = objs[subject]
        return QA(TEMPLATES[qtype].format(**_name(o)), "yes" if o.behaviour == "moves" else "no", qtype)
    raise ValueError(f"unknown question type {qtype!r}")


def applicable_types(scene: Scene) -> list[str]:
    """Question types that have a well-defined answer for ``scene``."""
    behaviours = {o.behaviour for o in scene.objects}
    types = []
    for qtype in QUESTION_TYPES:
        if qtype in ("moving_color", "moving_shape", "direction") and "moves" not in behaviours:
            continue
        if qtype == "appears_shape" and "appears" not in behaviours:
            continue
        if qtype == "disappears_color" and "disappears" not in behaviours:
            continue
        if qtype == "count" and not any(o.visible(scene.num_frames - 1) for o in scene.objects):
            continue
        types.append(qtype)
    return types


def questions_for(scene: Scene, rng: np.random.Generator, max_questions: int = 3) -> list[QA]:
    """The focus question first, then up to ``max_questions - 1`` other applicable questions.

    More questions per clip means more supervision per rendered video when training on a CPU.

    Extra ``does_move`` questions are only asked when there is a mover and name it half of the time, so
    yes/no stays balanced.
    """
    qas = [answer_for(scene, scene.focus, scene.subject)]
    others = [q for q in applicable_types(scene) if q != scene.focus]
    if scene.mover() is None or len(scene.objects) < 2:
        others = [q for q in others if q != "does_move"]
    rates = [
        _EXTRA_COUNT_RATE[answer_for(scene, q).answer] if q == "count" else _EXTRA_RATE[q] for q in others
    ]
    extras = [q for q, rate in zip(others, rates, strict=True) if rng.random() < rate]
    if len(extras) > max_questions - 1:
        keep = sorted(rng.choice(len(extras), size=max_questions - 1, replace=False))
        extras = [extras[i] for i in keep]
    for qtype in extras:
        subject = None
        if qtype == "does_move":
            still = [i for i, o in enumerate(scene.objects) if o.behaviour != "moves"]
            subject = scene.mover() if rng.random() < 0.5 else int(rng.choice(still))
        qas.append(answer_for(scene, qtype, subject))
    return qas


def grounding_questions(scene: Scene, rng: np.random.Generator, n: int = 2) -> list[QA]:
    """``n`` training-only one-step questions about ``scene`` (see GROUNDING_TEMPLATES), types drawn
    uniformly; yes/no and left/right stay balanced."""
    qas: list[QA] = []
    for _ in range(n):
        qtype = str(rng.choice(list(GROUNDING_TEMPLATES)))
        obj = scene.objects[int(rng.integers(len(scene.objects)))]
        if qtype == "shape_of_color":
            qas.append(QA(GROUNDING_TEMPLATES[qtype].format(color=obj.color), obj.shape, qtype))
        elif qtype == "color_present":
            present = {o.color for o in scene.objects}
            absent = [c for c in COLORS if c not in present]
            if absent and rng.random() < 0.5:
                qas.append(QA(GROUNDING_TEMPLATES[qtype].format(color=str(rng.choice(absent))), "no", qtype))
            else:
                qas.append(QA(GROUNDING_TEMPLATES[qtype].format(color=obj.color), "yes", qtype))
        else:
            moment = str(rng.choice(_MOMENTS))
            t = obj.frame_on if moment == "start" else obj.frame_off - 1
            side = "left" if obj.center(t)[0] < scene.size / 2 else "right"
            qas.append(QA(GROUNDING_TEMPLATES[qtype].format(color=obj.color, moment=moment), side, qtype))
    return qas


def _needs_objects(focus: str, answer: str) -> int:
    """Fewest objects a scene needs for the focus question to have this answer."""
    if focus == "count":
        return COUNT_WORDS.index(answer) + 1
    return 1


def make_clip(seed: int, num_frames: int = 16, size: int = 252, max_objects: int = 3, world: str = "plain") -> Clip:
    """Scene, frames and questions for ``seed``; the same seed always gives the same clip.

    ``world`` "plain" is the static textured background; "rich" renders the same scene and questions
    (a mover may also stop part-way) over a real photograph with camera pans, hard cuts, static
    distractors, noise and brightness flicker (see `RichStyle`); "mixed" is rich for odd seeds and
    plain for even ones, so a model trained on it keeps both."""
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; expected one of {WORLDS}")
    if world == "mixed":
        world = "rich" if seed % 2 else "plain"
    rng = np.random.default_rng(seed)
    scene = make_scene(rng, num_frames=num_frames, size=size, max_objects=max_objects)
    qas = questions_for(scene, rng)
    if world == "plain":
        return Clip(frames=render_scene(scene), scene=scene, qas=qas, seed=seed)
    style = draw_rich_style(np.random.default_rng([seed, 7]), scene)
    return Clip(frames=render_rich(scene, style), scene=scene, qas=qas, seed=seed)


def iter_split(split: str, num_clips: int, num_frames: int = 16, size: int = 252,
               world: str = "plain") -> Iterator[Clip]:
    """Clips ``0..num_clips-1`` of ``split``; clip i has seed ``SPLIT_SEEDS[split] + i``."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_SEEDS)}")
    base = SPLIT_SEEDS[split]
    for i in range(num_clips):
        yield make_clip(base + i, num_frames=num_frames, size=size, world=world)


def write_split(
    out_dir: str | Path,
    split: str,
    num_clips: int,
    num_frames: int = 16,
    size: int = 252,
    fps: float = 8.0,
    world: str = "plain",
) -> Path:
    """Write ``out_dir/split/clip_XXXXX.mp4`` and ``out_dir/split.jsonl`` (one line per question) of a world.

    The ``video`` field is relative to ``out_dir`` (the JSONL's folder) so the folder can be moved.
    """
    from stts_core.data.video import write_video

    out = Path(out_dir)
    (out / split).mkdir(parents=True, exist_ok=True)
    jsonl = out / f"{split}.jsonl"
    with jsonl.open("w", encoding="utf-8") as fh:
        for i, clip in enumerate(iter_split(split, num_clips, num_frames=num_frames, size=size, world=world)):
            rel = Path(split) / f"clip_{i:05d}.mp4"
            write_video(out / rel, clip.frames, fps=fps)
            for qa in clip.qas:
                record = {
                    "video": rel.as_posix(),
                    "question": qa.question,
                    "answer": qa.answer,
                    "qtype": qa.qtype,
                    "seed": clip.seed,
                }
                fh.write(json.dumps(record) + "\n")
    return jsonl


def example_clips(out_dir: str | Path, n: int = 4, fps: float = 8.0) -> list[tuple[Path, str]]:
    """Write ``n`` test-split clips whose focus questions are of different types, for the demo app."""
    from stts_core.data.video import write_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    results: list[tuple[Path, str]] = []
    seed = SPLIT_SEEDS["test"]
    while len(results) < n:
        clip = make_clip(seed)
        seed += 1
        focus = clip.scene.focus
        if focus in seen and len(seen) < len(QUESTION_TYPES):
            continue
        seen.add(focus)
        path = write_video(out / f"example_{len(results):02d}.mp4", clip.frames, fps=fps)
        results.append((Path(path), clip.qas[0].question))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write one split of synthetic clips plus its JSONL."""
    parser = argparse.ArgumentParser(description="Write synthetic STTS video-QA clips.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--split", default="test", choices=sorted(SPLIT_SEEDS))
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=252)
    parser.add_argument("--fps", type=float, default=8.0)
    args = parser.parse_args(argv)
    path = write_split(args.out, args.split, args.clips, num_frames=args.frames, size=args.size, fps=args.fps)
    print(path)


if __name__ == "__main__":
    main()
