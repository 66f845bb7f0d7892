"""The synthetic video world: scenes (`scene`), the rich world over real photographs (`rich`), the
questions and per-group labels (`questions`), and clips and splits written to disk (here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stts_core.data.synthetic.footage import FootageStyle, draw_footage_style, render_footage
from stts_core.data.synthetic.questions import (
    LABEL_HEADS,
    POSITION_BINS,
    answer_for,
    applicable_types,
    grounding_questions,
    group_labels,
    questions_for,
)
from stts_core.data.synthetic.rich import (
    TRAIN_PHOTOS,
    WORLDS,
    RichStyle,
    draw_rich_style,
    photo,
    render_rich,
)
from stts_core.data.synthetic.scene import (
    ANSWERS,
    BEHAVIOURS,
    COLORS,
    COUNT_WORDS,
    DIRECTIONS,
    GROUNDING_ANSWERS,
    GROUNDING_TEMPLATES,
    QA,
    QUESTION_TYPES,
    SHAPES,
    SPLIT_SEEDS,
    TEMPLATES,
    VOCABULARY,
    Clip,
    Scene,
    SceneObject,
    draw_object,
    make_scene,
    render_background,
    render_scene,
)


def make_clip(seed: int, num_frames: int = 16, size: int = 252, max_objects: int = 3, world: str = "plain") -> Clip:
    """Scene, frames and questions for ``seed``; the same seed always gives the same clip.

    ``world`` "plain" is the static textured background; "rich" renders the same scene and questions
    (a mover may also stop part-way) over a real photograph with camera pans, hard cuts, static
    distractors, noise and brightness flicker (see `RichStyle`); "mixed" is rich for odd seeds and
    plain for even ones, so a model trained on it keeps both. "footage" films the scene like real video
    (camera motion and zoom, textured non-rigid movers, lighting, blur, compression; `FootageStyle`);
    "blend" is footage for even seeds and rich or plain for odd ones."""
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; expected one of {WORLDS}")
    if world == "mixed":
        world = "rich" if seed % 2 else "plain"
    if world == "blend":
        world = "footage" if seed % 2 == 0 else ("rich" if seed % 4 == 1 else "plain")
    rng = np.random.default_rng(seed)
    scene = make_scene(rng, num_frames=num_frames, size=size, max_objects=max_objects)
    qas = questions_for(scene, rng)
    if world == "plain":
        return Clip(frames=render_scene(scene), scene=scene, qas=qas, seed=seed)
    if world == "footage":
        filming = draw_footage_style(np.random.default_rng([seed, 11]), scene)
        return Clip(frames=render_footage(scene, filming), scene=scene, qas=qas, seed=seed)
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
    from stts_core.data.video_encode import write_video

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
    from stts_core.data.video_encode import write_video

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


__all__ = [
    "ANSWERS",
    "BEHAVIOURS",
    "COLORS",
    "COUNT_WORDS",
    "Clip",
    "DIRECTIONS",
    "FootageStyle",
    "GROUNDING_ANSWERS",
    "GROUNDING_TEMPLATES",
    "LABEL_HEADS",
    "POSITION_BINS",
    "QA",
    "QUESTION_TYPES",
    "RichStyle",
    "SHAPES",
    "SPLIT_SEEDS",
    "Scene",
    "SceneObject",
    "TEMPLATES",
    "TRAIN_PHOTOS",
    "VOCABULARY",
    "WORLDS",
    "answer_for",
    "applicable_types",
    "draw_footage_style",
    "draw_object",
    "draw_rich_style",
    "example_clips",
    "grounding_questions",
    "group_labels",
    "iter_split",
    "make_clip",
    "make_scene",
    "photo",
    "questions_for",
    "render_background",
    "render_footage",
    "render_rich",
    "render_scene",
    "write_split",
]
