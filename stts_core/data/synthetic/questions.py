"""Questions and answers about a scene, and the per-group labels (colour, shape, position, motion)."""

from __future__ import annotations

import numpy as np

from stts_core.data.synthetic.scene import (
    _EXTRA_COUNT_RATE,
    _EXTRA_RATE,
    _MOMENTS,
    COLORS,
    COUNT_WORDS,
    DIRECTIONS,
    GROUNDING_TEMPLATES,
    QA,
    QUESTION_TYPES,
    SHAPES,
    TEMPLATES,
    Scene,
    SceneObject,
    draw_object,
)

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
