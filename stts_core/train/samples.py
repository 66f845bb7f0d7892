"""What a training step reads: endless clips with their questions, from the synthetic world or a
JSONL file of {"video", "question", "answer"}, and the small held-out sets training reports on."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VALIDATION_CLIPS = 48


@dataclass
class Sample:
    frames: np.ndarray  # (T, H, W, 3) uint8
    question: str
    answer: str
    metadata: dict | None = None
    more: list[tuple[str, str]] = field(default_factory=list)  # further (question, answer) pairs on the same clip
    grounding: list[tuple[str, str]] = field(default_factory=list)  # training-only one-step questions (--grounding)
    labels: np.ndarray | None = None  # (T, rows * cols, heads) per-group classes for --dense-weight (synthetic)

    @property
    def qas(self) -> list[tuple[str, str]]:
        return [(self.question, self.answer), *self.more]


def synthetic_samples(start: int, num_frames: int, grounding: int = 0,
                      grid: tuple[int, int] | None = None, max_objects: int = 3,
                      world: str = "plain") -> Iterator[Sample]:
    """Endless training samples: clip i has train-split seed i, with all of its questions,
    `grounding` one-step questions (seeded by the clip too) and per-group labels on a `grid`."""
    from stts_core.data.synthetic import SPLIT_SEEDS, grounding_questions, group_labels, make_clip

    index = start
    while True:
        seed = SPLIT_SEEDS["train"] + index
        clip = make_clip(seed, num_frames=num_frames, max_objects=max_objects, world=world)
        first, *rest = clip.qas
        extra = grounding_questions(clip.scene, np.random.default_rng([seed, 1]), grounding) if grounding else []
        yield Sample(clip.frames, first.question, first.answer, more=[(q.question, q.answer) for q in rest],
                     grounding=[(q.question, q.answer) for q in extra],
                     labels=group_labels(clip.scene, *grid) if grid else None)
        index += 1


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a training JSONL, each checked for video, question and answer."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} holds no samples.")
    for row in rows:
        if not isinstance(row, dict) or not {"video", "question", "answer"} <= row.keys():
            raise ValueError(f"Every line of {path} needs video, question and answer; got {row!r:.80}.")
    return rows


def jsonl_samples(path: Path, num_frames: int, seed: int, start: int) -> Iterator[Sample]:
    """Endless passes over a JSONL file of {"video", "question", "answer"}, shuffled per pass.

    The file is read and every video's presence checked now, so a bad file fails before training starts."""
    rows = read_jsonl(path)
    videos = [Path(r["video"]) if Path(r["video"]).is_absolute() else path.parent / r["video"] for r in rows]
    missing = sorted({str(v) for v in videos if not v.is_file()})
    if missing:
        raise ValueError(f"{len(missing)} video(s) named in {path} do not exist, e.g. {missing[0]}.")
    return _jsonl_stream(rows, videos, num_frames, seed, start)


def _jsonl_stream(rows: list[dict], videos: list[Path], num_frames: int, seed: int, start: int) -> Iterator[Sample]:
    from stts_core.data.video import load_video

    epoch, offset = divmod(start, len(rows))
    while True:
        order = list(range(len(rows)))
        random.Random(seed + epoch).shuffle(order)
        for i in order[offset:]:
            sampled = load_video(videos[i], num_frames)
            yield Sample(sampled.frames, rows[i]["question"], rows[i]["answer"], sampled.metadata())
        epoch, offset = epoch + 1, 0


def synthetic_validation(num_frames: int, grounding: bool, world: str = "plain") -> tuple[list[Sample], list[Sample]]:
    """Held-out clips of the validation split: their first question each, and (with `grounding`) one
    grounding question each."""
    from stts_core.data.synthetic import SPLIT_SEEDS, grounding_questions, make_clip

    clips = [make_clip(SPLIT_SEEDS["val"] + i, num_frames=num_frames, world=world) for i in range(VALIDATION_CLIPS)]
    val = [Sample(c.frames, c.qas[0].question, c.qas[0].answer) for c in clips]
    if not grounding:
        return val, []
    return val, [Sample(c.frames, qa.question, qa.answer) for c in clips
                 for qa in grounding_questions(c.scene, np.random.default_rng([c.seed, 1]), 1)]
