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

from dataclasses import dataclass, field

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


def _needs_objects(focus: str, answer: str) -> int:
    """Fewest objects a scene needs for the focus question to have this answer."""
    if focus == "count":
        return COUNT_WORDS.index(answer) + 1
    return 1
