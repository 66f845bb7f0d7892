"""`stts ood --model DIR`: does a scorer keep what moves, on clips unlike its training data?

A clip generator with per-pixel ground-truth motion masks, built from backgrounds and motions that
no training world uses (scikit-image photographs kept out of `synthetic.TRAIN_PHOTOS`, procedural
checkerboards, ellipses / stars / crosses in other colours moving diagonally, in orbits, pulsing in
size, plus hard cuts). A group of a frame t >= 1 is "moving" when at least `MOVING_FRACTION` of its
pixels changed between t-1 and t for a reason other than sensor noise (an object moved, appeared,
changed size, or the shot cut). Per vit-stage method (learned, heuristic, random) it reports:

- AUC: how well the scores of frames 1..T-1 separate moving from static groups (mean over clips);
- recall of moving groups at keep 0.3 (`select_groups`, the pipeline's own selection), as a ratio to
  chance (the share of prunable groups kept), and as a ratio to the heuristic scorer's recall.

Nothing here is used for training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from stts_core.methods.budget import select_groups
from stts_core.methods.registry import get_method
from stts_core.models.base import VideoBackend
from stts_core.pipeline.visual import method_scores

OOD_PHOTOS: tuple[str, ...] = ("brick", "coins", "moon", "cell", "retina", "colorwheel")
KINDS: tuple[str, ...] = ("textured_mover", "hard_cut", "static_and_moving", "orbit", "pulse")
SHAPES: tuple[str, ...] = ("ellipse", "star", "cross")
COLORS: tuple[tuple[int, int, int], ...] = ((230, 60, 200), (40, 220, 230), (250, 140, 20), (245, 245, 245))
MOVING_FRACTION = 0.02  # a group with at least this share of changed pixels is "moving"
NOISE_SIGMA = 2.0  # sensor noise on every frame (0-255 scale); not motion
OOD_SEED_BASE = 3_000_000  # disjoint from every synthetic split


@dataclass
class OODClip:
    frames: np.ndarray  # (T, S, S, 3) uint8
    motion: np.ndarray  # (T, S, S) bool: changed since frame t-1 by motion, appearance or a cut (frame 0: False)
    kind: str
    seed: int


@dataclass
class _Thing:
    shape: str
    color: tuple[int, int, int]
    size: float
    path: str  # "still", "line", "orbit", "pulse"
    start: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    radius: float = 0.0
    phase: float = 0.0

    def pose(self, t: int) -> tuple[float, float, float, float]:
        """(cx, cy, size, angle in radians) at frame t."""
        cx, cy = self.start
        if self.path == "line":
            return cx + self.velocity[0] * t, cy + self.velocity[1] * t, self.size, 0.0
        if self.path == "orbit":
            a = self.phase + 0.35 * t
            return cx + self.radius * math.cos(a), cy + self.radius * math.sin(a), self.size, 0.0
        if self.path == "pulse":
            return cx, cy, self.size * (1.0 + 0.45 * math.sin(self.phase + 0.8 * t)), 0.25 * t
        return cx, cy, self.size, 0.0


def _polygon(shape: str, cx: float, cy: float, size: float, angle: float) -> np.ndarray:
    r = size / 2
    if shape == "star":
        pts = [(r if i % 2 == 0 else 0.45 * r, angle + i * math.pi / 5) for i in range(10)]
    else:  # cross: a plus sign of arm width 0.4 r
        w = 0.4 * r
        corners = [(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w), (-r, -w), (-r, w),
                   (-w, w), (-w, r)]
        pts = [(math.hypot(x, y), angle + math.atan2(y, x)) for x, y in corners]
    return np.rint([[cx + d * math.cos(a), cy + d * math.sin(a)] for d, a in pts]).astype(np.int32)


def _draw(img: np.ndarray, thing: _Thing, t: int, fill: tuple[int, int, int] | None = None) -> None:
    cx, cy, size, angle = thing.pose(t)
    color = fill or thing.color
    if thing.shape == "ellipse":
        axes = (max(1, int(size / 2)), max(1, int(size / 3)))
        cv2.ellipse(img, (int(round(cx)), int(round(cy))), axes, math.degrees(angle), 0, 360, color, thickness=-1)
    else:
        cv2.fillPoly(img, [_polygon(thing.shape, cx, cy, size, angle)], color)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """An out-of-training background: a held-out photograph or a procedural checkerboard."""
    if rng.random() < 0.35:
        cell = int(rng.integers(10, 40))
        yy, xx = np.mgrid[0:size, 0:size]
        board = ((yy // cell + xx // cell) % 2).astype(np.float32)
        a, b = rng.uniform(40, 220, size=3), rng.uniform(40, 220, size=3)
        return (a[None, None] * board[..., None] + b[None, None] * (1 - board[..., None])).astype(np.float32)
    from stts_core.data.synthetic import photo

    img = photo(str(rng.choice(OOD_PHOTOS)))
    h, w = img.shape[:2]
    side = int(min(h, w) * rng.uniform(0.5, 1.0))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = cv2.resize(img[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    mean = crop.mean(axis=(0, 1), keepdims=True)
    return mean + 0.6 * (crop - mean)


def _things(rng: np.random.Generator, kind: str, size: int, frames: int) -> list[_Thing]:
    def make(path: str) -> _Thing:
        s = size * rng.uniform(0.12, 0.2)
        lo, hi = s, size - s
        thing = _Thing(str(rng.choice(SHAPES)), COLORS[int(rng.integers(len(COLORS)))], s, path,
                       (float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))), phase=float(rng.uniform(0, 6.3)))
        if path == "line":  # diagonal, about half the frame over the clip, staying inside
            travel = size * rng.uniform(0.35, 0.5) / (frames - 1)
            sx, sy = rng.choice([-1, 1], size=2)
            thing.start = (size / 2 - sx * size * 0.25, size / 2 - sy * size * 0.25)
            thing.velocity = (float(sx * travel), float(sy * travel))
        elif path == "orbit":
            thing.radius = size * rng.uniform(0.12, 0.22)
            thing.start = (float(rng.uniform(size * 0.35, size * 0.65)), float(rng.uniform(size * 0.35, size * 0.65)))
        return thing

    if kind == "static_and_moving":
        return [make("still") for _ in range(int(rng.integers(2, 4)))] + [make("line")]
    if kind == "orbit":
        return [make("orbit")]
    if kind == "pulse":
        return [make("pulse"), make("still")]
    return [make("line")]


def make_ood_clip(seed: int, kind: str, num_frames: int = 16, size: int = 252) -> OODClip:
    """One clip of `kind` and its per-pixel motion mask; a pure function of its arguments."""
    if kind not in KINDS:
        raise ValueError(f"unknown OOD clip kind {kind!r}; expected one of {KINDS}")
    rng = np.random.default_rng([OOD_SEED_BASE + seed, KINDS.index(kind)])
    backgrounds = [_background(rng, size)]
    cut_at = None
    if kind == "hard_cut":
        backgrounds.append(_background(rng, size))
        cut_at = int(rng.integers(num_frames // 3, 2 * num_frames // 3 + 1))
    things = _things(rng, kind, size, num_frames)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    ids = np.zeros((num_frames, size, size), dtype=np.uint8)
    for t in range(num_frames):
        img = backgrounds[1 if cut_at is not None and t >= cut_at else 0].copy()
        layer = np.zeros((size, size, 3), dtype=np.uint8)
        for i, thing in enumerate(things):
            _draw(img, thing, t)
            _draw(layer, thing, t, fill=(i + 1, 0, 0))
        ids[t] = layer[..., 0]
        img += NOISE_SIGMA * rng.standard_normal(img.shape, dtype=np.float32)
        frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    motion = np.zeros_like(ids, dtype=bool)
    motion[1:] = ids[1:] != ids[:-1]
    if cut_at is not None:
        motion[cut_at] = True
    return OODClip(frames=frames, motion=motion, kind=kind, seed=seed)


def group_motion(motion: np.ndarray, rows: int, cols: int, fraction: float = MOVING_FRACTION) -> np.ndarray:
    """(T, rows * cols) bool: the cells (row-major, a model's group order) where at least `fraction`
    of the pixels moved."""
    t, h, w = motion.shape
    ys = np.linspace(0, h, rows + 1).round().astype(int)
    xs = np.linspace(0, w, cols + 1).round().astype(int)
    out = np.zeros((t, rows * cols), dtype=bool)
    for r in range(rows):
        for c in range(cols):
            cell = motion[:, ys[r]:ys[r + 1], xs[c]:xs[c + 1]]
            out[:, r * cols + c] = cell.reshape(t, -1).mean(1) >= fraction
    return out


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Probability that a random positive outscores a random negative (ties count half); None
    without both classes."""
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    values = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(values))
    i = 0
    while i < len(values):  # average ranks over ties
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    rank_of = np.empty(len(values))
    rank_of[order] = ranks
    r_pos = rank_of[:len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@dataclass
class ScorerTally:
    aucs: list[float]
    kept_moving: int = 0
    moving: int = 0
    kept: int = 0
    prunable: int = 0

    def add(self, scores: np.ndarray, keep: np.ndarray, labels: np.ndarray) -> None:
        s, k, y = scores[1:].reshape(-1), keep[1:].reshape(-1), labels[1:].reshape(-1)
        value = auc(s, y)
        if value is not None:
            self.aucs.append(value)
        self.kept_moving += int((k & y).sum())
        self.moving += int(y.sum())
        self.kept += int(k.sum())
        self.prunable += int(k.size)

    def summary(self) -> dict[str, float | None]:
        recall = self.kept_moving / self.moving if self.moving else None
        chance = self.kept / self.prunable if self.prunable else None
        return {"auc": float(np.mean(self.aucs)) if self.aucs else None, "recall": recall, "chance": chance,
                "recall_over_chance": recall / chance if recall is not None and chance else None}


@torch.no_grad()
def evaluate_ood(backend: VideoBackend, clips: list[OODClip], scorers: list[str], keep_ratio: float = 0.3,
                 seed: int = 0) -> dict[str, dict]:
    """Per scorer: mean per-clip AUC and the pooled recall of moving groups at `keep_ratio` (with its
    ratio to chance and, when the heuristic ran, to the heuristic's recall)."""
    tallies = {name: ScorerTally([]) for name in scorers}
    per_kind: dict[str, dict[str, ScorerTally]] = {}
    for clip in clips:
        inputs = backend.prepare(clip.frames, "what moves ?")
        labels = group_motion(clip.motion, *inputs.grid)
        prefix = backend.vit_prefix(inputs)
        for name in scorers:
            scores = method_scores(backend, get_method(name), prefix, inputs, seed + clip.seed)
            keep = select_groups(scores, keep_ratio).cpu().numpy()
            values = scores.detach().float().cpu().numpy()
            tallies[name].add(values, keep, labels)
            per_kind.setdefault(clip.kind, {}).setdefault(name, ScorerTally([])).add(values, keep, labels)
    out = {name: t.summary() for name, t in tallies.items()}
    if "heuristic" in out and out["heuristic"]["recall"]:
        for name in out:
            recall = out[name]["recall"]
            out[name]["recall_over_heuristic"] = recall / out["heuristic"]["recall"] if recall is not None else None
    out["by_kind"] = {kind: {name: t.summary() for name, t in d.items()} for kind, d in per_kind.items()}
    return out


def ood_clips(num_clips: int, num_frames: int = 16, size: int = 252) -> list[OODClip]:
    """`num_clips` clips, the kinds in turn."""
    return [make_ood_clip(i, KINDS[i % len(KINDS)], num_frames, size) for i in range(num_clips)]


def _fmt(x: float | None, pattern: str) -> str:
    return "-" if x is None else pattern.format(x)


def table(result: dict, keep_ratio: float) -> str:
    lines = [f"| scorer | AUC moving vs static | recall of moving groups at keep {keep_ratio:g} | x chance | "
             "x heuristic |", "|---|---|---|---|---|"]
    for name, r in result.items():
        if name == "by_kind":
            continue
        lines.append(f"| {name} | {_fmt(r['auc'], '{:.3f}')} | {_fmt(r['recall'], '{:.1%}')} | "
                     f"{_fmt(r['recall_over_chance'], '{:.2f}x')} | {_fmt(r.get('recall_over_heuristic'), '{:.2f}x')} |")
    return "\n".join(lines)
