"""The records of a batch analysis: what runs (`Setting`, `AnalysisSettings`), what one setting gives
for one question (a results row), and what a whole analysis returns (`Analysis`). The runner, the
store, the metrics and the report all read these; this module imports none of them."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stts_core.data.benchmarks.choices import extract_choice
from stts_core.data.tables import Example
from stts_core.data.video import VideoLimits
from stts_core.methods.budget import validate_keep_ratio
from stts_core.methods.registry import get_method, method_names
from stts_core.pipeline.agreement import matches, normalize_answer
from stts_core.pipeline.stages import MODEL_STAGES, total

BASELINE = "baseline"
THUMB_SIDE = 64  # longest side of a stored thumbnail frame, pixels


@dataclass(frozen=True)
class Setting:
    """One way of running an example: the baseline (``scorer`` None), or a method at a keep ratio."""

    scorer: str | None = None
    keep: float = 1.0

    @property
    def is_baseline(self) -> bool:
        return self.scorer is None

    @property
    def key(self) -> str:
        return BASELINE if self.scorer is None else f"{self.scorer}@{self.keep:g}"


def default_methods() -> tuple[str, ...]:
    """Every registered method except those that need a family capability (the analysis default)."""
    return tuple(m.name for m in (get_method(n) for n in method_names()) if m.stage != "llm")


@dataclass(frozen=True)
class AnalysisSettings:
    keeps: tuple[float, ...] = (0.5, 0.3, 0.2)
    scorers: tuple[str, ...] = field(default_factory=default_methods)  # registered methods
    num_frames: int = 16
    max_new_tokens: int = 8
    seed: int = 0  # video number i uses seed + i for the random scorer
    attention_bias: bool | None = None  # None: each method's own choice, as in pipeline.run
    limits: VideoLimits = VideoLimits()

    def validated(self) -> AnalysisSettings:
        for keep in self.keeps:
            validate_keep_ratio(keep)
        for name in self.scorers:
            get_method(name)
        if not self.keeps or not self.scorers:
            raise ValueError("Give at least one keep ratio and one scorer.")
        if not 1 <= self.num_frames <= self.limits.max_frames:
            raise ValueError(f"The number of frames must be from 1 to {self.limits.max_frames}.")
        return self

    def settings(self) -> list[Setting]:
        """The baseline first, then every method x keep ratio (the order of rows and tables)."""
        keeps = list(dict.fromkeys(float(k) for k in self.keeps))
        scorers = list(dict.fromkeys(self.scorers))
        return [Setting(), *(Setting(s, k) for s in scorers for k in keeps)]

    def manifest(self, model: str) -> dict[str, Any]:
        """What must match for earlier rows in an output folder to be reused."""
        return {"model": model, "num_frames": self.num_frames, "max_new_tokens": self.max_new_tokens,
                "seed": self.seed, "attention_bias": self.attention_bias}


def encode_mask(keep: np.ndarray) -> dict[str, Any]:
    """A (T, G) bool mask as its shape plus base64 of the packed bits (compact in JSONL)."""
    keep = np.asarray(keep, dtype=bool)
    return {"shape": list(keep.shape), "bits": base64.b64encode(np.packbits(keep.reshape(-1))).decode("ascii")}


def decode_mask(mask: dict[str, Any]) -> np.ndarray:
    shape = tuple(int(s) for s in mask["shape"])
    bits = np.unpackbits(np.frombuffer(base64.b64decode(mask["bits"]), dtype=np.uint8))
    return bits[: int(np.prod(shape))].astype(bool).reshape(shape)


def _row_base(ex: Example, setting: Setting) -> dict[str, Any]:
    row = {"id": ex.id, "index": ex.index, "video": ex.video, "path": str(ex.path) if ex.path else None,
           "question": ex.question, "gold": ex.answer, "type": ex.type, "setting": setting.key,
           "scorer": setting.scorer or BASELINE, "keep": setting.keep}
    if ex.benchmark is not None or ex.is_choice:  # a benchmark's question: what its tables group by
        row.update({"benchmark": ex.benchmark, "task": ex.task, "category": ex.category, "duration": ex.duration,
                    "doc_id": ex.doc_id, "options": list(ex.options),
                    "span": list(ex.span) if ex.span is not None else None})
    return row


def answer_key(row: dict[str, Any]) -> str | None:
    """What a row's answer is compared by: the extracted letter of a multiple-choice row, else its text."""
    return row.get("extracted") if row.get("options") else row.get("answer")


def error_row(ex: Example, setting: Setting, message: str) -> dict[str, Any]:
    return {**_row_base(ex, setting), "error": message}


@dataclass
class Outcome:
    """What one setting produced for one question; turned into a results row by `outcome_row`."""

    answer: str
    token_ids: list[int]
    keep: np.ndarray  # (T, G) over the T decoded frames (frames not used by the frames scorer: all False)
    visual_tokens: int
    timings: dict[str, float]
    shared: list[str]
    scorer_used: str
    stats: dict[str, Any] | None
    seed: int
    frames_used: list[int]
    notes: list[str]
    vit_tokens: int = 0  # patches ViT block 0 ran on
    suffix_tokens: int = 0  # patches each ViT block after the pruning point ran on
    prompt: str | None = None  # the text the model was asked (a multiple-choice question with its options)


def _judged(ex: Example, setting: Setting, answer: str, baseline: str | None) -> dict[str, Any]:
    """no_answer, correct, agrees: by the answer text (free-form), or by the letter read from it (multiple
    choice; ``baseline`` is then the baseline's letter), with the letter and the rule that read it."""
    if not ex.is_choice:
        return {"no_answer": not normalize_answer(answer), "correct": matches(answer, ex.answer),
                "agrees": None if setting.is_baseline else matches(answer, baseline)}
    choice = extract_choice(answer, ex.options)
    letter = choice.letter
    return {"no_answer": letter is None, "correct": None if ex.answer is None else letter == ex.answer,
            "agrees": None if setting.is_baseline else (letter is not None and letter == baseline),
            "extracted": letter, "extracted_by": choice.rule}


def outcome_row(ex: Example, setting: Setting, out: Outcome, baseline: str | None) -> dict[str, Any]:
    """One results row. ``answer`` is the model's raw response, kept beside the letter read from it
    (``extracted``) for a multiple-choice question; ``baseline`` is the baseline's `answer_key`."""
    keep = out.keep
    model_s = total(out.timings, MODEL_STAGES)
    return {
        **_row_base(ex, setting), "error": None, "scorer_used": out.scorer_used, "answer": out.answer,
        "prompt": out.prompt if out.prompt is not None else ex.question,
        **_judged(ex, setting, out.answer, baseline),
        "baseline_answer": baseline, "token_ids": out.token_ids, "num_frames": len(out.frames_used),
        "frames_used": out.frames_used, "visual_tokens": out.visual_tokens,
        "vit_tokens": out.vit_tokens, "vit_suffix_tokens": out.suffix_tokens,
        "kept_groups": int(keep.sum()), "total_groups": int(keep.size),
        "kept_per_frame": [int(x) for x in keep.sum(1)], "keep_mask": encode_mask(keep), "scores": out.stats,
        "seed": out.seed, "timings_s": out.timings, "shared_stages": out.shared, "model_s": model_s,
        "notes": out.notes,
    }


@dataclass
class Thumb:
    """Small frames of one example plus the geometry that maps a keep mask onto them."""

    frames: np.ndarray  # (T, h, w, 3) uint8, longest side THUMB_SIDE
    groups: np.ndarray  # (G, P) patch indices per group, -1 = padding
    patch_grid: tuple[int, int]


@dataclass
class Analysis:
    """What `runner.run_analysis` returns. On ranks other than 0 under torchrun: only that rank's new rows."""

    rows: list[dict[str, Any]]  # every example x setting of this request, in dataset order
    summary: list[dict[str, Any]]
    settings: AnalysisSettings
    examples: int  # examples in this request (this rank's share under torchrun)
    computed: int  # rows computed now; the others were already in the output folder
    wall_s: float
    thumbs: dict[str, Thumb] = field(default_factory=dict)  # example id -> thumbnail, examples that flipped
    out_dir: Path | None = None
    examples_computed: int = 0  # examples with at least one row computed now (the rate counts these)
    benchmarks: list[dict[str, Any]] = field(default_factory=list)  # paper-style cells (analysis.bench_tables)
    exports: list[Path] = field(default_factory=list)  # lmms-eval sample logs written (analysis.lmms_export)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("error")]

    @property
    def examples_per_s(self) -> float:
        return self.examples_computed / max(self.wall_s, 1e-9)


