"""`python -m stts_core.analyze`: where does pruning change the answer, and why?

Runs the unpruned baseline and every scorer x keep ratio on each example of a dataset and writes into --out:

- ``results.jsonl``: one row per example and setting (answer, correct, agrees with the baseline, keep
  mask, kept groups per frame, score statistics, stage times), streamed as it goes. A rerun skips the
  rows already there and retries failed ones; a bad example (missing or damaged video, empty question)
  is recorded with its error and the batch goes on. The exit code is 1 when any row failed.
- ``summary.csv``: accuracy, agreement and flips per scorer x keep ratio, overall and per question type.
- ``report.html``: the same as charts and tables plus a gallery of flips with keep-mask thumbnails; one
  offline file (plotly.js embedded).

Data (--data): a folder with ``questions.csv`` or ``questions.jsonl`` (columns ``video``, ``question``,
optional ``answer``, ``type``, ``id``) and the videos, one of those files, a .zip of such a folder, or the
built-in synthetic split ``synthetic:test[:N]`` (also ``synthetic:test:N``; ``synthetic-rich:test:N`` for
the rich world over real photographs, ``synthetic-mixed:test:N`` for both in turn).

Scorers: learned, heuristic, random (prune groups of all frames) and frames (sample round(keep x T)
frames uniformly and prune nothing: the same visual-token budget).

Work is shared: each video is decoded and preprocessed once, its ViT prefix runs once, each scorer's
scores are computed once and reused for every keep ratio, and, since the vision side does not read the
question, each setting's visual tokens are computed once per video and shared by its questions. The
frames scorer subsamples the decoded frames and runs its own, shorter ViT pass. ``--compare-naive N``
times this against calling ``pipeline.run`` once per setting on N examples.

Under ``torchrun --nproc_per_node N -m stts_core.analyze ...`` the videos are sharded across ranks
(gloo on the CPU, NCCL on GPUs), each rank streams its own part file and rank 0 merges them.
"""

from __future__ import annotations

import argparse
import base64
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import stat
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stts_core.cli import common as cli
from stts_core.data.video import SampledVideo, VideoLimits, decoding_notes, load_video
from stts_core.methods.budget import validate_keep_ratio
from stts_core.methods.scorers import SCORER_KINDS
from stts_core.models.base import PreparedInputs, VideoBackend, ViTState
from stts_core.pipeline.request import (
    MODEL_STAGES,
    STAGES,
    RunSettings,
    VisualPass,
    compute_scores,
    normalize_answer,
    resolve_scorer,
    validate_question,
    visual_pass,
)
from stts_core.timing import StageTimer

SCORERS = (*SCORER_KINDS, "frames")
BASELINE = "baseline"
RESULTS, SUMMARY, REPORT, MANIFEST = "results.jsonl", "summary.csv", "report.html", "analysis.json"
TABLE_NAMES = ("questions.csv", "questions.jsonl")
MAX_TABLE_BYTES = 20 * 1024**2
MAX_ZIP_MEMBERS = 10_000
MAX_ZIP_BYTES = 4 * 1024**3
NO_SPREAD_STD = 1e-3  # scores whose standard deviation is below this rank groups by noise and tie order
THUMB_SIDE = 64  # longest side of a stored thumbnail frame, pixels
DEFAULT_SYNTHETIC = 200
MAX_EXAMPLES_PER_REQUEST = 200  # the bound a shared server (the app's batch tab) puts on one request

ProgressFn = Callable[[int, int, str], None]


class DatasetError(ValueError):
    """A dataset that cannot be used at all (no question table, missing columns, too many rows);
    ``str(err)`` is one sentence."""


# ------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Example:
    """One question about one video. ``error`` is set when the row cannot be run (it is still recorded)."""

    id: str  # stable key for resuming: the row's own id, else position + a hash of video and question
    index: int  # position in the dataset; results are written in this order
    video: str  # as written in the data
    path: Path | None  # the resolved file
    question: str
    answer: str | None = None
    type: str | None = None
    error: str | None = None


@dataclass
class Dataset:
    examples: list[Example]
    source: str
    root: Path | None  # folder the videos were resolved against
    notes: list[str] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def close(self) -> None:
        """Remove files this dataset extracted or generated into its own temporary folder."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


_SYNTHETIC = re.compile(r"^synthetic(?:-(plain|rich|mixed))?:(train|val|test)(?::(\d+)|\[:(\d+)\])?$")


def load_dataset(
    source: str | Path,
    workdir: str | Path | None = None,
    video_dir: str | Path | None = None,
    limit: int | None = None,
    max_examples: int | None = None,
    num_frames: int = 16,
    allow_outside: bool = True,
) -> Dataset:
    """Examples from ``synthetic:test[:N]``, a questions.csv / .jsonl file, a folder holding one, or a .zip.

    ``workdir`` receives generated clips and extracted zips (a temporary folder removed by
    ``Dataset.close()`` when None). Videos are looked up relative to ``video_dir`` (default: the
    question table's folder); with ``allow_outside=False`` (uploads) a path that leaves that folder is
    refused for its row. ``limit`` keeps the first N rows; more than ``max_examples`` rows is an error.
    """
    text = str(source).strip()
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="stts-analyze-")
        workdir = tmp.name
    try:
        if text.startswith(("synthetic:", "synthetic-")):
            table, base = _synthetic_table(text, Path(workdir), limit, num_frames), None
        else:
            table, base = _find_table(Path(text).expanduser(), Path(workdir))
        records = _read_table(table)
        if limit is not None:
            records = records[:limit]
        if max_examples is not None and len(records) > max_examples:
            raise DatasetError(f"The dataset has {len(records)} questions; at most {max_examples} can be "
                               "analysed in one run (ask for fewer).")
        if not records:
            raise DatasetError(f"'{table.name}' has no questions in it.")
        root = Path(video_dir) if video_dir is not None else (base or table.parent)
        examples = [_example(i, rec, root, allow_outside) for i, rec in enumerate(records)]
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    return Dataset(examples=examples, source=text, root=root, _tmp=tmp)


def _synthetic_table(spec: str, workdir: Path, limit: int | None, num_frames: int) -> Path:
    match = _SYNTHETIC.match(spec)
    if match is None:
        raise DatasetError(f"'{spec}' is not a synthetic split; write synthetic:test or synthetic:test:N.")
    world, split = match.group(1) or "plain", match.group(2)
    count = int(match.group(3) or match.group(4) or DEFAULT_SYNTHETIC)
    if limit is not None:
        count = min(count, limit)
    if count < 1:
        raise DatasetError("A synthetic split needs at least one question.")
    folder = workdir / (f"synthetic-{split}-{num_frames}f" if world == "plain" else f"synthetic-{world}-{split}-{num_frames}f")
    return synthetic_split(folder, split, count, num_frames, world)


def synthetic_split(out_dir: Path, split: str, num_questions: int, num_frames: int, world: str = "plain") -> Path:
    """Clips of a synthetic split written as mp4 (read back through the app's decoder) with at least
    ``num_questions`` questions; an existing folder with enough questions is reused. Returns the JSONL,
    whose rows are truncated to exactly ``num_questions``."""
    from stts_core.data.synthetic import write_split

    out_dir = Path(out_dir)
    jsonl = out_dir / f"{split}.jsonl"
    if _enough_rows(jsonl, num_questions):
        return _first_rows(jsonl, num_questions)
    clips = max(1, num_questions // 2 + 8)
    while True:
        written = write_split(out_dir, split, clips, num_frames=num_frames, world=world)
        if _enough_rows(written, num_questions):
            return _first_rows(written, num_questions)
        clips = int(clips * 1.3) + 1


def _enough_rows(jsonl: Path, n: int) -> bool:
    if not jsonl.exists():
        return False
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return len(rows) >= n and all((jsonl.parent / r["video"]).exists() for r in rows[:n])


def _first_rows(jsonl: Path, n: int) -> Path:
    lines = [line for line in jsonl.read_text().splitlines() if line.strip()][:n]
    out = jsonl.with_name(f"{jsonl.stem}-{n}.jsonl")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)  # atomic: other ranks may read it at the same time
    return out


def _find_table(path: Path, workdir: Path) -> tuple[Path, Path | None]:
    """The question table for a file, folder or zip, and the folder videos are relative to."""
    if not path.exists():
        raise DatasetError(f"There is no dataset at '{path}': give a folder with questions.csv or "
                           "questions.jsonl, one of those files, a .zip, or synthetic:test[:N].")
    if path.is_file() and path.suffix.lower() == ".zip":
        if not zipfile.is_zipfile(path):
            raise DatasetError(f"'{path.name}' is not a readable zip file.")
        path = extract_zip(path, workdir / f"zip-{path.stem}")
    if path.is_file():
        if path.suffix.lower() not in (".csv", ".jsonl"):
            raise DatasetError(f"'{path.name}' is not a question table; use a .csv or .jsonl file.")
        return path, None
    for folder in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
        found = [folder / n for n in TABLE_NAMES if (folder / n).is_file()]
        if len(found) > 1:
            raise DatasetError(f"'{folder.name}' has both questions.csv and questions.jsonl; keep one.")
        if found:
            return found[0], folder
    raise DatasetError(f"'{path.name}' has no questions.csv or questions.jsonl.")


def extract_zip(path: Path, dest: Path, max_bytes: int = MAX_ZIP_BYTES) -> Path:
    """Extract a zip safely: no absolute or escaping paths, no links, bounded member count and size
    (counted while copying, so a lying header cannot get past the bound)."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise DatasetError(f"The zip has {len(members)} files; at most {MAX_ZIP_MEMBERS} are accepted.")
        budget = max_bytes
        for member in members:
            if stat.S_ISLNK(member.external_attr >> 16):
                raise DatasetError(f"The zip holds a link ('{member.filename}'); only plain files are accepted.")
            target = (root / member.filename).resolve()
            if not target.is_relative_to(root) or Path(member.filename).is_absolute():
                raise DatasetError(f"The zip holds an unsafe path ('{member.filename}').")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, target.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    budget -= len(chunk)
                    if budget < 0:
                        raise DatasetError(f"The zip unpacks to more than {max_bytes / 1024**3:g} GB.")
                    dst.write(chunk)
    return root


def _read_table(table: Path) -> list[dict[str, Any]]:
    """Rows of a CSV or JSONL question table as dicts with lower-case keys. A JSONL line that is not a
    JSON object becomes a row with an ``_error`` so it is reported, not silently dropped."""
    if table.stat().st_size > MAX_TABLE_BYTES:
        raise DatasetError(f"'{table.name}' is larger than {MAX_TABLE_BYTES // 1024**2} MB.")
    try:
        text = table.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"'{table.name}' is not UTF-8 text.") from None
    if table.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        fields = [(f or "").strip().lower() for f in reader.fieldnames or []]
        records = [{(k or "").strip().lower(): v for k, v in row.items()} for row in reader]
    else:
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                records.append(_json_record(line, number))
        fields = sorted({k for r in records for k in r if not k.startswith("_")})
    missing = [c for c in ("video", "question") if c not in fields]
    if missing:
        raise DatasetError(f"'{table.name}' needs the columns video and question (missing: {', '.join(missing)}).")
    return records


def _json_record(line: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        return {"_error": f"Line {number} is not valid JSON ({err.msg})."}
    if not isinstance(value, dict):
        return {"_error": f"Line {number} is not a JSON object."}
    return {str(k).strip().lower(): v for k, v in value.items()}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _example(index: int, rec: dict[str, Any], root: Path, allow_outside: bool) -> Example:
    video = _text(rec.get("video")) or ""
    raw_question = rec.get("question")
    error = rec.get("_error")
    try:
        question = validate_question(raw_question if isinstance(raw_question, str) else str(raw_question or ""))
    except ValueError as err:
        question, error = str(raw_question or ""), error or str(err)
    path, path_error = _resolve_video(video, root, allow_outside)
    digest = hashlib.sha1(f"{video}\n{question}".encode("utf-8", "replace")).hexdigest()[:8]
    return Example(id=_text(rec.get("id")) or f"{index:05d}-{digest}", index=index, video=video, path=path,
                   question=question, answer=_text(rec.get("answer")),
                   type=_text(rec.get("type")) or _text(rec.get("qtype")), error=error or path_error)


def _resolve_video(video: str, root: Path, allow_outside: bool) -> tuple[Path | None, str | None]:
    if not video:
        return None, "No video file is named in this row."
    given = Path(video).expanduser()
    path = (given if given.is_absolute() else root / given).resolve()
    if not allow_outside and not path.is_relative_to(root.resolve()):
        return None, f"The video path '{video}' leaves the dataset folder."
    return path, None


# ------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    """One way of running an example: the baseline, or a scorer at a keep ratio."""

    scorer: str
    keep: float = 1.0

    @property
    def key(self) -> str:
        return BASELINE if self.scorer == BASELINE else f"{self.scorer}@{self.keep:g}"


@dataclass(frozen=True)
class AnalysisSettings:
    keeps: tuple[float, ...] = (0.5, 0.3, 0.2)
    scorers: tuple[str, ...] = SCORERS
    num_frames: int = 16
    max_new_tokens: int = 8
    seed: int = 0  # video number i uses seed + i for the random scorer
    attention_bias: bool | None = None  # None: on for the learned scorer only, as in pipeline.run
    limits: VideoLimits = VideoLimits()

    def validated(self) -> AnalysisSettings:
        for keep in self.keeps:
            validate_keep_ratio(keep)
        unknown = [s for s in self.scorers if s not in SCORERS]
        if unknown:
            raise ValueError(f"Unknown scorer {unknown[0]!r}; choose from {', '.join(SCORERS)}.")
        if not self.keeps or not self.scorers:
            raise ValueError("Give at least one keep ratio and one scorer.")
        if not 1 <= self.num_frames <= self.limits.max_frames:
            raise ValueError(f"The number of frames must be from 1 to {self.limits.max_frames}.")
        return self

    def settings(self) -> list[Setting]:
        """The baseline first, then every scorer x keep ratio (the order of rows and tables)."""
        keeps = list(dict.fromkeys(float(k) for k in self.keeps))
        scorers = list(dict.fromkeys(self.scorers))
        return [Setting(BASELINE), *(Setting(s, k) for s in scorers for k in keeps)]

    def manifest(self, model: str) -> dict[str, Any]:
        """What must match for earlier rows in an output folder to be reused."""
        return {"model": model, "num_frames": self.num_frames, "max_new_tokens": self.max_new_tokens,
                "seed": self.seed, "attention_bias": self.attention_bias}


def frame_subset(num_frames: int, keep: float) -> np.ndarray:
    """Positions of the round(keep x T) frames the frames scorer uses, at least one: the frame nearest
    each slice centre when the T frames are cut into that many equal slices (ties to the earlier
    frame), the rule ``video.load_video`` applies to a clip of T frames."""
    n = min(num_frames, max(1, round(keep * num_frames)))
    centres = (np.arange(n) + 0.5) * num_frames / n
    return np.clip(np.ceil(centres - 0.5).astype(np.int64), 0, num_frames - 1)


def subsample(video: SampledVideo, positions: np.ndarray) -> SampledVideo:
    return dataclasses.replace(video, frames=video.frames[positions], timestamps=video.timestamps[positions],
                               indices=video.indices[positions])


# ------------------------------------------------------------------------------------------- rows


def encode_mask(keep: np.ndarray) -> dict[str, Any]:
    """A (T, G) bool mask as its shape plus base64 of the packed bits (compact in JSONL)."""
    keep = np.asarray(keep, dtype=bool)
    return {"shape": list(keep.shape), "bits": base64.b64encode(np.packbits(keep.reshape(-1))).decode("ascii")}


def decode_mask(mask: dict[str, Any]) -> np.ndarray:
    shape = tuple(int(s) for s in mask["shape"])
    bits = np.unpackbits(np.frombuffer(base64.b64decode(mask["bits"]), dtype=np.uint8))
    return bits[: int(np.prod(shape))].astype(bool).reshape(shape)


def score_stats(scores: torch.Tensor | None) -> dict[str, Any] | None:
    """min / median / max / std of a (T, G) score map, and whether it has (almost) no spread, in which
    case the selection is decided by ties and the scorer says nothing about this video."""
    if scores is None:
        return None
    s = scores.detach().float().cpu().numpy().reshape(-1)
    std = float(s.std())
    return {"min": float(s.min()), "median": float(np.median(s)), "max": float(s.max()), "std": std,
            "no_spread": bool(std < NO_SPREAD_STD)}


def agrees(answer: str, baseline: str | None) -> bool | None:
    """Same normalised answer as the baseline; an empty answer never agrees (it is no answer)."""
    if baseline is None:
        return None
    return bool(normalize_answer(answer)) and normalize_answer(answer) == normalize_answer(baseline)


def is_correct(answer: str, gold: str | None) -> bool | None:
    if gold is None:
        return None
    return bool(normalize_answer(answer)) and normalize_answer(answer) == normalize_answer(gold)


def _row_base(ex: Example, setting: Setting) -> dict[str, Any]:
    return {"id": ex.id, "index": ex.index, "video": ex.video, "path": str(ex.path) if ex.path else None,
            "question": ex.question, "gold": ex.answer, "type": ex.type, "setting": setting.key,
            "scorer": setting.scorer, "keep": setting.keep}


def error_row(ex: Example, setting: Setting, message: str) -> dict[str, Any]:
    return {**_row_base(ex, setting), "error": message}


@dataclass
class _Outcome:
    """What one setting produced for one question; turned into a results row by `_row`."""

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


def _row(ex: Example, setting: Setting, out: _Outcome, baseline: str | None) -> dict[str, Any]:
    keep = out.keep
    model_s = sum(out.timings.get(s, 0.0) for s in MODEL_STAGES)
    return {
        **_row_base(ex, setting), "error": None, "scorer_used": out.scorer_used, "answer": out.answer,
        "no_answer": not normalize_answer(out.answer), "correct": is_correct(out.answer, ex.answer),
        "agrees": None if setting.scorer == BASELINE else agrees(out.answer, baseline),
        "baseline_answer": baseline, "token_ids": out.token_ids, "num_frames": len(out.frames_used),
        "frames_used": out.frames_used, "visual_tokens": out.visual_tokens,
        "kept_groups": int(keep.sum()), "total_groups": int(keep.size),
        "kept_per_frame": [int(x) for x in keep.sum(1)], "keep_mask": encode_mask(keep), "scores": out.stats,
        "seed": out.seed, "timings_s": out.timings, "shared_stages": out.shared, "model_s": model_s,
        "notes": out.notes,
    }


# ------------------------------------------------------------------------------------------- per video


@dataclass
class _Video:
    """One video's shared work: decoded frames, inputs per question, the ViT prefix, what they took,
    and the per-scorer scores and per-frame-count inputs computed so far."""

    sampled: SampledVideo
    questions: list[str]
    inputs: list[PreparedInputs]
    prefix: ViTState
    times: dict[str, float]  # decode_video, preprocess, vit_prefix
    seed: int
    notes: list[str]
    scores: dict[str, tuple[torch.Tensor, float]] = field(default_factory=dict)
    subsets: dict[int, tuple[list[PreparedInputs], dict[str, float]]] = field(default_factory=dict)


def _prepare(backend: VideoBackend, video: SampledVideo, questions: list[str], prefix: bool = True
             ) -> tuple[list[PreparedInputs], ViTState | None, dict[str, float]]:
    timer = StageTimer(backend.device)
    with timer.stage("preprocess"):
        inputs = backend.prepare_questions(video.frames, questions, video.metadata())
    state = None
    if prefix:
        with timer.stage("vit_prefix"):
            state = backend.vit_prefix(inputs[0])
    return inputs, state, {"preprocess": timer.get("preprocess"), "vit_prefix": timer.get("vit_prefix")}


@torch.no_grad()
def _open_video(backend: VideoBackend, path: Path, questions: list[str], cfg: AnalysisSettings, seed: int) -> _Video:
    timer = StageTimer(None)
    with timer.stage("decode_video"):
        sampled = load_video(path, cfg.num_frames, cfg.limits)
    inputs, prefix, times = _prepare(backend, sampled, questions)
    notes = []
    if sampled.frames.shape[0] < cfg.num_frames:
        notes.append(f"The clip has only {sampled.frames.shape[0]} frames, so all were used "
                     f"(asked for {cfg.num_frames}).")
    notes += decoding_notes(sampled)
    assert prefix is not None
    return _Video(sampled, questions, inputs, prefix, {"decode_video": timer.get("decode_video"), **times}, seed, notes)


def _answers(backend: VideoBackend, inputs: list[PreparedInputs], vp: VisualPass, max_new_tokens: int
             ) -> list[tuple[Any, dict[str, float]]]:
    """Greedy answers for several questions from one shared visual pass, with each one's LLM times."""
    out = []
    for inp in inputs:
        timer = StageTimer(backend.device)
        with timer.stage("llm_prefill"):
            llm = backend.llm_inputs(inp, vp.prune)
        gen = backend.generate(inp, vp.visual, vp.prune, max_new_tokens, True, llm=llm)
        out.append((gen, {"llm_prefill": timer.get("llm_prefill") + gen.prefill_s, "decoding": gen.decode_s}))
    return out


def _outcomes(gens: list[tuple[Any, dict[str, float]]], times: dict[str, float], keep: np.ndarray,
              shared: list[str], **fields: Any) -> list[_Outcome]:
    return [_Outcome(answer=gen.text, token_ids=list(gen.token_ids), keep=keep, shared=shared,
                     timings={s: float({**times, **llm}.get(s, 0.0)) for s in STAGES}, **fields)
            for gen, llm in gens]


def _pass_times(timer: StageTimer, *names: str) -> dict[str, float]:
    return {name: timer.get(name) for name in names}


def _run_baseline(backend: VideoBackend, v: _Video, sel: list[int], cfg: AnalysisSettings) -> list[_Outcome]:
    timer = StageTimer(backend.device)
    vp = visual_pass(backend, v.inputs[0], 1.0, "none", v.seed, cfg.attention_bias, timer, prefix=v.prefix)
    times = {**v.times, **_pass_times(timer, "vit_suffix", "connector")}
    t, g = v.inputs[0].num_frames, v.inputs[0].groups.shape[0]
    shared = ["decode_video", "preprocess", "vit_prefix"] + (["vit_suffix", "connector"] if len(v.inputs) > 1 else [])
    gens = _answers(backend, [v.inputs[i] for i in sel], vp, cfg.max_new_tokens)
    return _outcomes(gens, times, np.ones((t, g), dtype=bool), shared, visual_tokens=int(vp.visual.shape[0]),
                     scorer_used="none", stats=None, seed=v.seed, frames_used=list(range(t)), notes=[])


def _run_pruned(backend: VideoBackend, v: _Video, setting: Setting, sel: list[int], cfg: AnalysisSettings
                ) -> list[_Outcome]:
    """A pruning scorer at one keep ratio; the scorer's scores are computed once per video."""
    used, notes = resolve_scorer(backend, setting.scorer)
    if used not in v.scores:
        timer = StageTimer(backend.device)
        with timer.stage("scoring"):
            scores = compute_scores(backend, used, v.prefix, v.inputs[0], v.seed)
        v.scores[used] = (scores, timer.get("scoring"))
    scores, score_s = v.scores[used]
    timer = StageTimer(backend.device)
    vp = visual_pass(backend, v.inputs[0], setting.keep, used, v.seed, cfg.attention_bias, timer,
                     prefix=v.prefix, scores=scores)
    times = {**v.times, **_pass_times(timer, "vit_suffix", "connector"), "scoring": score_s + timer.get("scoring")}
    shared = ["decode_video", "preprocess", "vit_prefix", "scoring"]
    shared += ["vit_suffix", "connector"] if len(v.inputs) > 1 else []
    assert vp.keep_mask is not None
    gens = _answers(backend, [v.inputs[i] for i in sel], vp, cfg.max_new_tokens)
    return _outcomes(gens, times, vp.keep_mask.cpu().numpy(), shared, visual_tokens=int(vp.visual.shape[0]),
                     scorer_used=used, stats=score_stats(scores), seed=v.seed,
                     frames_used=list(range(v.inputs[0].num_frames)), notes=notes)


def _run_frames(backend: VideoBackend, v: _Video, setting: Setting, sel: list[int], cfg: AnalysisSettings
                ) -> list[_Outcome]:
    """round(keep x T) uniformly spaced frames of the decoded ones, nothing pruned. Inputs are cached per
    frame count (two keep ratios can round to the same count)."""
    t = v.sampled.frames.shape[0]
    positions = frame_subset(t, setting.keep)
    if len(positions) not in v.subsets:
        inputs, _, times = _prepare(backend, subsample(v.sampled, positions), v.questions, prefix=False)
        v.subsets[len(positions)] = (inputs, times)
    inputs, times = v.subsets[len(positions)]
    timer = StageTimer(backend.device)
    vp = visual_pass(backend, inputs[0], 1.0, "none", v.seed, cfg.attention_bias, timer)
    times = {"decode_video": v.times["decode_video"], **times,
             **_pass_times(timer, "vit_prefix", "vit_suffix", "connector")}
    keep = np.zeros((t, inputs[0].groups.shape[0]), dtype=bool)
    keep[positions] = True
    shared = ["decode_video"] + (["preprocess", "vit_prefix", "vit_suffix", "connector"] if len(inputs) > 1 else [])
    gens = _answers(backend, [inputs[i] for i in sel], vp, cfg.max_new_tokens)
    return _outcomes(gens, times, keep, shared, visual_tokens=int(vp.visual.shape[0]), scorer_used="frames",
                     stats=None, seed=v.seed, frames_used=[int(p) for p in positions], notes=[])


@torch.no_grad()
def _setting_outcomes(backend: VideoBackend, v: _Video, setting: Setting, sel: list[int], cfg: AnalysisSettings
                      ) -> list[_Outcome]:
    if setting.scorer == BASELINE:
        return _run_baseline(backend, v, sel, cfg)
    if setting.scorer == "frames":
        return _run_frames(backend, v, setting, sel, cfg)
    return _run_pruned(backend, v, setting, sel, cfg)


# ------------------------------------------------------------------------------------------- per group


@dataclass
class _Group:
    """The examples that share one video (decoded and run through the ViT once), or one bad example."""

    ordinal: int  # the video's number in the dataset: its random-scorer seed is settings.seed + ordinal
    examples: list[Example]


def group_by_video(examples: Iterable[Example]) -> list[_Group]:
    groups: dict[tuple[str, str], _Group] = {}
    for ex in examples:
        key = ("error", ex.id) if ex.error is not None or ex.path is None else ("video", str(ex.path))
        if key not in groups:
            groups[key] = _Group(len(groups), [])
        groups[key].examples.append(ex)
    return list(groups.values())


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(err, ValueError) and message else f"{type(err).__name__}: {message}".rstrip(": ")


def _group_rows(backend: VideoBackend, group: _Group, todo: dict[str, list[Setting]], cfg: AnalysisSettings,
                baselines: dict[str, str], keep: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """Rows for the settings still to do of one group's examples; a failure turns every row not yet
    produced into an error row and the batch goes on."""
    exs = [e for e in group.examples if todo.get(e.id)]
    produced: set[tuple[str, str]] = set()
    try:
        if exs and (exs[0].error is not None or exs[0].path is None):
            raise ValueError(exs[0].error or "No video file is named in this row.")
        if not exs:
            return
        video = _open_video(backend, exs[0].path, [e.question for e in exs], cfg, cfg.seed + group.ordinal)
        keep["video"] = video
        for setting in cfg.settings():
            sel = [i for i, e in enumerate(exs) if setting in todo[e.id]]
            if not sel:
                continue
            for i, out in zip(sel, _setting_outcomes(backend, video, setting, sel, cfg), strict=True):
                out.notes = video.notes + out.notes
                row = _row(exs[i], setting, out, baselines.get(exs[i].id))
                if setting.scorer == BASELINE:
                    baselines[exs[i].id] = out.answer
                produced.add((exs[i].id, setting.key))
                yield row
    except Exception as err:  # noqa: BLE001 - any failure is recorded on its rows; the batch goes on
        message = _one_line(err)
        for e in exs:
            for setting in todo[e.id]:
                if (e.id, setting.key) not in produced:
                    yield error_row(e, setting, message)


# ------------------------------------------------------------------------------------------- thumbnails


@dataclass
class Thumb:
    """Small frames of one example plus the geometry that maps a keep mask onto them."""

    frames: np.ndarray  # (T, h, w, 3) uint8, longest side THUMB_SIDE
    groups: np.ndarray  # (G, P) patch indices per group, -1 = padding
    patch_grid: tuple[int, int]


def make_thumb(video: _Video) -> Thumb:
    import cv2

    frames = video.sampled.frames
    h, w = frames.shape[1:3]
    scale = min(1.0, THUMB_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    inputs = video.inputs[0]
    return Thumb(frames=small, groups=inputs.groups.cpu().numpy(), patch_grid=tuple(inputs.patch_grid))


def thumb_path(out_dir: Path, example_id: str) -> Path:
    return Path(out_dir) / "thumbs" / f"{hashlib.sha1(example_id.encode('utf-8', 'replace')).hexdigest()[:16]}.npz"


def save_thumb(out_dir: Path, example_id: str, thumb: Thumb) -> None:
    path = thumb_path(out_dir, example_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, frames=thumb.frames, groups=thumb.groups, patch_grid=np.asarray(thumb.patch_grid))


def load_thumb(out_dir: Path, example_id: str) -> Thumb | None:
    path = thumb_path(out_dir, example_id)
    if not path.exists():
        return None
    with np.load(path) as data:
        grid = tuple(int(x) for x in data["patch_grid"])
        return Thumb(frames=data["frames"], groups=data["groups"], patch_grid=(grid[0], grid[1]))


def flagged(rows: Iterable[dict[str, Any]]) -> bool:
    """An example worth a thumbnail: some setting disagrees with the baseline or flips correctness."""
    rows = [r for r in rows if not r.get("error")]
    base = next((r for r in rows if r["setting"] == BASELINE), None)
    for r in rows:
        if r["setting"] == BASELINE:
            continue
        if r.get("agrees") is False or (base is not None and r.get("correct") != base.get("correct")):
            return True
    return False


# ------------------------------------------------------------------------------------------- storage


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a results file; a line cut short by an interrupted run is skipped (it is redone)."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row and "setting" in row:
            rows.append(row)
    return rows


def dedupe(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """One row per (example id, setting): a successful row wins over a failed one, a later over an earlier."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (str(row["id"]), str(row["setting"]))
        if key not in best or best[key].get("error") or not row.get("error"):
            best[key] = row
    return best


def ordered(rows: Iterable[dict[str, Any]], plan: Sequence[Setting]) -> list[dict[str, Any]]:
    """Dataset order, then the settings' order (the baseline first)."""
    rank = {s.key: i for i, s in enumerate(plan)}
    return sorted(rows, key=lambda r: (int(r.get("index", 0)), rank.get(r["setting"], len(rank)), r["setting"]))


class _Store:
    """An output folder: the manifest, this rank's streamed part file, and the merge into results.jsonl."""

    def __init__(self, out_dir: Path, rank: int, world: int) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.part = self.dir / (RESULTS if world == 1 else f"results.rank{rank}.jsonl")
        self.rank = rank
        self._fh: io.TextIOWrapper | None = None

    def check_manifest(self, manifest: dict[str, Any]) -> None:
        path = self.dir / MANIFEST
        if path.exists():
            old = json.loads(path.read_text())
            diff = [f"{k} {old.get(k)!r} (now {v!r})" for k, v in manifest.items() if old.get(k) != v]
            if diff:
                raise DatasetError(f"'{self.dir}' holds results made with {'; '.join(diff)}; use another "
                                   "output folder or remove it.")
        elif self.rank == 0:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(manifest, indent=2))
            os.replace(tmp, path)  # atomic: the other ranks may be reading it

    def files(self) -> list[Path]:
        return [self.dir / RESULTS, *sorted(self.dir.glob("results.rank*.jsonl"))]

    def done(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Rows already computed successfully (a failed row is retried)."""
        rows = dedupe(r for f in self.files() for r in read_rows(f))
        return {k: r for k, r in rows.items() if not r.get("error")}

    def write(self, row: dict[str, Any]) -> None:
        if self._fh is None:
            if self.part.exists() and self.part.stat().st_size and not self.part.read_bytes().endswith(b"\n"):
                with self.part.open("a", encoding="utf-8") as fh:
                    fh.write("\n")  # close a line an interrupted run left unfinished
            self._fh = self.part.open("a", encoding="utf-8")
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def merge(self, plan: Sequence[Setting]) -> list[dict[str, Any]]:
        """Every rank's rows into results.jsonl in dataset order (atomically); returns all rows kept."""
        rows = ordered(dedupe(r for f in self.files() for r in read_rows(f)).values(), plan)
        tmp = self.dir / f".{RESULTS}.tmp"
        with tmp.open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        os.replace(tmp, self.dir / RESULTS)
        for part in self.dir.glob("results.rank*.jsonl"):
            part.unlink()
        return rows


# ------------------------------------------------------------------------------------------- summary

SUMMARY_FIELDS = ("setting", "scorer", "keep", "type", "n", "failed", "with_gold", "correct", "accuracy", "agree",
                  "agreement", "no_answer", "right_to_wrong", "wrong_to_right", "visual_tokens", "kept_fraction",
                  "no_spread", "model_s")


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _cell(setting: Setting, qtype: str, rows: list[dict[str, Any]], base: dict[str, dict[str, Any]]
          ) -> dict[str, Any]:
    ok = [r for r in rows if not r.get("error")]
    gold = [r for r in ok if r.get("correct") is not None]
    pruned = setting.scorer != BASELINE
    voted = [bool(r["agrees"]) for r in ok if r.get("agrees") is not None]
    pairs = [(bool(base[r["id"]]["correct"]), bool(r["correct"])) for r in gold
             if pruned and r["id"] in base and base[r["id"]].get("correct") is not None]
    scored = [r["scores"] for r in ok if r.get("scores")]
    return {
        "setting": setting.key, "scorer": setting.scorer, "keep": setting.keep, "type": qtype, "n": len(ok),
        "failed": len(rows) - len(ok), "with_gold": len(gold), "correct": sum(bool(r["correct"]) for r in gold),
        "accuracy": _mean([float(r["correct"]) for r in gold]),
        "agree": sum(voted) if pruned else None, "agreement": _mean([float(v) for v in voted]) if pruned else None,
        "no_answer": sum(bool(r["no_answer"]) for r in ok),
        "right_to_wrong": sum(b and not p for b, p in pairs) if pruned else None,
        "wrong_to_right": sum(p and not b for b, p in pairs) if pruned else None,
        "visual_tokens": _mean([r["visual_tokens"] for r in ok]),
        "kept_fraction": _mean([r["kept_groups"] / max(1, r["total_groups"]) for r in ok]),
        "no_spread": sum(bool(s["no_spread"]) for s in scored) if scored else None,
        "model_s": _mean([r["model_s"] for r in ok]),
    }


def summarize(rows: Sequence[dict[str, Any]], plan: Sequence[Setting]) -> list[dict[str, Any]]:
    """One line per setting over all examples ("all"), then one per question type."""
    base = {r["id"]: r for r in rows if r["setting"] == BASELINE and not r.get("error")}
    types = sorted({str(r["type"]) for r in rows if r.get("type")})
    out = []
    for setting in plan:
        mine = [r for r in rows if r["setting"] == setting.key]
        for qtype in ("all", *types):
            sub = mine if qtype == "all" else [r for r in mine if r.get("type") == qtype]
            if sub:
                out.append(_cell(setting, qtype, sub, base))
    return out


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_summary(path: Path, summary: Sequence[dict[str, Any]]) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(SUMMARY_FIELDS)
        writer.writerows([_csv_value(cell.get(k)) for k in SUMMARY_FIELDS] for cell in summary)


def flips(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pruned rows whose outcome differs from the baseline's: "right_to_wrong" / "wrong_to_right" where a
    gold answer is known and correctness changed, else "changed" (a different or no answer, e.g. one wrong
    answer for another). Each comes with its baseline row."""
    base = {r["id"]: r for r in rows if r["setting"] == BASELINE and not r.get("error")}
    out = []
    for r in rows:
        b = base.get(r["id"])
        if r["setting"] == BASELINE or r.get("error") or b is None:
            continue
        if r.get("correct") is not None and b.get("correct") is not None and r["correct"] != b["correct"]:
            kind = "right_to_wrong" if b["correct"] else "wrong_to_right"
        elif r.get("agrees") is False:
            kind = "changed"
        else:
            continue
        out.append({"kind": kind, "row": r, "baseline": b})
    return out


# ------------------------------------------------------------------------------------------- runner


@dataclass
class Analysis:
    """What `run_analysis` returns. On ranks other than 0 under torchrun: only that rank's new rows."""

    rows: list[dict[str, Any]]  # every example x setting of this request, in dataset order
    summary: list[dict[str, Any]]
    settings: AnalysisSettings
    examples: int  # examples in this request (this rank's share under torchrun)
    computed: int  # rows computed now; the others were already in the output folder
    wall_s: float
    thumbs: dict[str, Thumb] = field(default_factory=dict)  # example id -> thumbnail, examples that flipped
    out_dir: Path | None = None
    examples_computed: int = 0  # examples with at least one row computed now (the rate counts these)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("error")]

    @property
    def examples_per_s(self) -> float:
        return self.examples_computed / max(self.wall_s, 1e-9)


def _keep_thumbs(group: _Group, video: _Video | None, rows: dict[str, list[dict[str, Any]]],
                 thumbs: dict[str, Thumb], out_dir: Path | None) -> None:
    if video is None:
        return
    thumb = None
    for ex in group.examples:
        if flagged(rows.get(ex.id, [])):
            thumb = thumb or make_thumb(video)
            thumbs[ex.id] = thumb
            if out_dir is not None:
                save_thumb(out_dir, ex.id, thumb)


def _work(backend: VideoBackend, groups: list[_Group], cfg: AnalysisSettings, done: dict[tuple[str, str], Any],
          store: _Store | None, bar: Any, progress: ProgressFn | None) -> tuple[list[dict[str, Any]], dict, int]:
    plan = cfg.settings()
    baselines = {k[0]: r["answer"] for k, r in done.items() if k[1] == BASELINE}
    new_rows: list[dict[str, Any]] = []
    thumbs: dict[str, Thumb] = {}
    total, finished, failed, computed = sum(len(g.examples) for g in groups), 0, 0, 0
    if progress is not None:
        progress(0, total, "starting")
    for group in groups:
        todo = {e.id: [s for s in plan if (e.id, s.key) not in done] for e in group.examples}
        computed += sum(bool(t) for t in todo.values())
        keep: dict[str, Any] = {}
        by_id: dict[str, list[dict[str, Any]]] = {}
        for key, row in done.items():
            if key[0] in todo:
                by_id.setdefault(key[0], []).append(row)
        for row in _group_rows(backend, group, todo, cfg, baselines, keep):
            new_rows.append(row)
            by_id.setdefault(row["id"], []).append(row)
            failed += bool(row.get("error"))
            if store is not None:
                store.write(row)
        _keep_thumbs(group, keep.get("video"), by_id, thumbs, store.dir if store else None)
        finished += len(group.examples)
        bar.update(len(group.examples))
        bar.set_postfix(failed_rows=failed, refresh=False)
        if progress is not None:
            progress(finished, total, f"{finished}/{total} examples")
    return new_rows, thumbs, computed


def run_analysis(
    backend: VideoBackend,
    examples: Sequence[Example],
    settings: AnalysisSettings | None = None,
    out_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    show_bar: bool = False,
    report: bool = True,
    model_name: str | None = None,
    rank: int = 0,
    world: int = 1,
) -> Analysis:
    """Run the baseline and every setting on every example; see the module docstring.

    With ``out_dir``: rows stream to results.jsonl (a rerun skips rows there), then summary.csv and
    (``report``) report.html are written. ``progress(done, total, text)`` is called after each video.
    Under torchrun (``world`` > 1) this rank takes every world-th video and rank 0 merges after a barrier.
    """
    from tqdm import tqdm

    cfg = (settings or AnalysisSettings()).validated()
    if world > 1 and out_dir is None:
        raise ValueError("Sharding across processes needs an output folder to merge the ranks' rows in.")
    start = time.perf_counter()
    store = _Store(Path(out_dir), rank, world) if out_dir is not None else None
    if store is not None:
        store.check_manifest(cfg.manifest(model_name or backend.source))
    done = store.done() if store is not None else {}
    groups = group_by_video(examples)[rank::world]
    bar = tqdm(total=sum(len(g.examples) for g in groups), unit="ex", desc="analyze", disable=not show_bar,
               dynamic_ncols=True, smoothing=0.05, file=sys.stderr)
    try:
        new_rows, thumbs, computed = _work(backend, groups, cfg, done, store, bar, progress)
    finally:
        bar.close()
        if store is not None:
            store.close()
    backend.warm = True
    mine = sum(len(g.examples) for g in groups)
    if world > 1:
        print(f"rank {rank}: {mine} examples, {len(new_rows)} rows computed", file=sys.stderr)
    counts = _total((computed, len(new_rows)), world)  # also the barrier before rank 0 merges
    if rank != 0:
        return Analysis(new_rows, [], cfg, mine, len(new_rows), time.perf_counter() - start, thumbs,
                        store.dir if store is not None else None, computed)
    plan = cfg.settings()
    every = store.merge(plan) if store is not None else ordered(dedupe(new_rows).values(), plan)
    wanted = {(e.id, s.key) for e in examples for s in plan}
    rows = [r for r in every if (r["id"], r["setting"]) in wanted]
    summary = summarize(rows, plan)
    result = Analysis(rows, summary, cfg, len(examples), counts[1], time.perf_counter() - start, thumbs,
                      store.dir if store is not None else None, counts[0])
    if store is not None:
        write_summary(store.dir / SUMMARY, summary)
        if report:
            from stts_core.analysis.report import write_report

            write_report(store.dir / REPORT, result, model_name or backend.source)
    return result


# ------------------------------------------------------------------------------------------- naive timing


def run_settings_for(row: dict[str, Any], settings: AnalysisSettings, run_baseline: bool = False) -> RunSettings:
    """The `pipeline.run` settings that reproduce one results row from its video (the single-video view
    opening a flip). Baseline and frames rows become keep 1 (nothing pruned) on T, resp. round(keep x T),
    frames; their run_baseline is off (the frames scorer's baseline is the T-frame baseline row)."""
    t = int(row["keep_mask"]["shape"][0]) if row.get("keep_mask") else settings.num_frames
    common = {"max_new_tokens": settings.max_new_tokens, "seed": int(row.get("seed") or 0),
              "attention_bias": settings.attention_bias}
    if row["scorer"] in (BASELINE, "frames"):
        n = t if row["scorer"] == BASELINE else len(frame_subset(t, float(row["keep"])))
        return RunSettings(keep_ratio=1.0, scorer="random", num_frames=n, run_baseline=False, **common)
    return RunSettings(keep_ratio=float(row["keep"]), scorer=row["scorer"], num_frames=t, run_baseline=run_baseline,
                       **common)


def compare_naive(backend: VideoBackend, examples: Sequence[Example], settings: AnalysisSettings,
                  count: int) -> dict[str, Any]:
    """Time the shared path against one `pipeline.run` per example and setting (same seeds, frames and
    tokens) on the first `count` usable examples, and check that both give the same answers."""
    from stts_core.pipeline.request import run

    cfg = settings.validated()
    chosen = [e for e in examples if e.error is None][:count]
    if not chosen:
        return {}
    start = time.perf_counter()
    shared = run_analysis(backend, chosen, cfg)
    shared_s = time.perf_counter() - start
    good = [r for r in shared.rows if not r.get("error")]
    start = time.perf_counter()
    same = sum(run(backend, r["path"], r["question"], run_settings_for(r, cfg), cfg.limits).stts.answer == r["answer"]
               for r in good)
    naive_s = time.perf_counter() - start
    return {"examples": len(chosen), "videos": len(group_by_video(chosen)), "settings": len(cfg.settings()),
            "shared_s": shared_s, "naive_s": naive_s, "speedup": naive_s / max(shared_s, 1e-9),
            "saving": 1.0 - shared_s / max(naive_s, 1e-9), "same_answers": same, "answers_compared": len(good),
            "failed_rows": len(shared.rows) - len(good)}


# ------------------------------------------------------------------------------------------- torchrun


def _total(values: tuple[int, ...], world: int) -> tuple[int, ...]:
    """Counts summed over every rank (rank 0 reports the whole run); a collective, so also a barrier."""
    if world <= 1:
        return values
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, values)
    return tuple(sum(int(p[i]) for p in parts) for i in range(len(values)))


def _broadcast(value: Any, world: int) -> Any:
    """Rank 0's value on every rank."""
    if world <= 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ------------------------------------------------------------------------------------------- command line


def _out_dir(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty string")
    return Path(text)


def stts_arguments(keep: Sequence[float] = (0.5, 0.3, 0.2), scorer: Sequence[str] = SCORERS,
                   new_tokens: int = 8) -> argparse.ArgumentParser:
    """The shared --keep/--scorer/--frames/--max-new-tokens, with --scorer also taking "frames"."""
    stts = cli.stts_options(keep=keep, scorer=scorer, new_tokens=new_tokens)
    for action in stts._actions:
        if action.dest == "scorer":
            action.choices = SCORERS
            action.help = (f"scorer(s): {', '.join(SCORERS)}; frames = round(keep x T) frames, nothing pruned "
                           f"(default: {' '.join(scorer)})")
    return stts


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m stts_core.analyze", __doc__,
                   [cli.model_options(), stts_arguments(), cli.output_options()])
    g = p.add_argument_group("analysis")
    g.add_argument("--data", default=f"synthetic:test:{DEFAULT_SYNTHETIC}",
                   help="folder with questions.csv/.jsonl, one of those files, a .zip, or synthetic:test[:N]")
    g.add_argument("--out", type=_out_dir, required=True, help="output folder; rerunning into it resumes")
    g.add_argument("--limit", type=cli.whole_number(1), default=None, help="use only the first N questions")
    g.add_argument("--seed", type=cli.whole_number(0), default=0, help="random scorer seed (video i uses seed + i)")
    g.add_argument("--compare-naive", type=cli.whole_number(1), default=None, metavar="N",
                   help="afterwards, time the shared path against pipeline.run per setting on N examples")
    g.add_argument("--no-report", action="store_true", help="skip report.html")
    return p


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_summary(analysis: Analysis) -> str:
    lines = [f"{'setting':<16}{'n':>6}{'accuracy':>10}{'agree':>9}{'R->W':>6}{'W->R':>6}{'no ans':>8}"
             f"{'tokens':>8}{'model ms':>10}"]
    for c in (c for c in analysis.summary if c["type"] == "all"):
        lines.append(f"{c['setting']:<16}{c['n']:>6}{_pct(c['accuracy']):>10}{_pct(c['agreement']):>9}"
                     f"{'-' if c['right_to_wrong'] is None else c['right_to_wrong']:>6}"
                     f"{'-' if c['wrong_to_right'] is None else c['wrong_to_right']:>6}{c['no_answer']:>8}"
                     f"{(c['visual_tokens'] or 0):>8.0f}{1e3 * (c['model_s'] or 0):>10.1f}")
    failed = analysis.failed
    lines.append(f"{analysis.examples} examples ({analysis.examples_computed} run now), {len(analysis.rows)} rows "
                 f"({analysis.computed} computed now, {len(failed)} failed) in {analysis.wall_s:.1f} s, "
                 f"{analysis.examples_per_s:.2f} examples/s")
    seen: set[str] = set()
    for row in failed:
        if row["id"] not in seen:
            seen.add(row["id"])
            lines.append(f"failed: {row['id']} ({row['video'] or 'no video'}): {row['error']}")
    return "\n".join(lines)


def load_backend_from_args(args: argparse.Namespace, device: str | None = None) -> VideoBackend:
    """The backend the shared model options name (`device` overrides --device: a rank's own GPU)."""
    from stts_core.models.loading import ModelLoadError, load_backend

    device = device or args.device
    kind = torch.device(device).type if device else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return load_backend(args.model, device=device, dtype=cli.torch_dtype(args.dtype, kind),
                            trust_remote_code=args.trust_remote_code)
    except ModelLoadError as err:
        cli.exit_with_error(str(err))


def _dataset(args: argparse.Namespace, rank: int, world: int) -> Dataset:
    """Rank 0 loads (and writes generated clips) first; the others then reuse what it wrote."""
    dataset, error = None, None
    if rank == 0:
        try:
            dataset = load_dataset(args.data, workdir=args.out / "data", limit=args.limit, num_frames=args.frames)
        except DatasetError as err:
            error = str(err)
    error = _broadcast(error, world)
    if error:
        cli.exit_with_error(error)
    if dataset is None:
        dataset = load_dataset(args.data, workdir=args.out / "data", limit=args.limit, num_frames=args.frames)
    return dataset


def _finish(args: argparse.Namespace, backend: VideoBackend, analysis: Analysis, dataset: Dataset) -> int:
    print(format_summary(analysis))
    naive = None
    if args.compare_naive:
        naive = compare_naive(backend, dataset.examples, analysis.settings, args.compare_naive)
        (args.out / "naive_comparison.json").write_text(json.dumps(naive, indent=2))
        if naive:
            print(f"sharing: {naive['shared_s']:.1f} s vs {naive['naive_s']:.1f} s with pipeline.run per setting "
                  f"on {naive['examples']} examples x {naive['settings']} settings: {naive['speedup']:.2f}x faster "
                  f"({100 * naive['saving']:.0f}% less time); {naive['same_answers']}/{naive['answers_compared']} "
                  "answers identical")
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": analysis.summary, "examples": analysis.examples,
                                         "rows": len(analysis.rows), "failed_rows": len(analysis.failed),
                                         "wall_s": analysis.wall_s, "examples_per_s": analysis.examples_per_s,
                                         "naive": naive, "model": args.model}, indent=2))
    print(f"wrote {args.out / RESULTS}, {args.out / SUMMARY}" + ("" if args.no_report else f", {args.out / REPORT}"))
    return 1 if analysis.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    from stts_core.distributed import start_ranks

    args = build_parser().parse_args(argv)
    ranks = start_ranks(args.device)
    rank, world = ranks.rank, ranks.world
    try:
        backend = load_backend_from_args(args, ranks.device)
        cfg = AnalysisSettings(keeps=tuple(args.keep), scorers=tuple(args.scorer), num_frames=args.frames,
                               max_new_tokens=args.max_new_tokens, seed=args.seed)
        if rank == 0:
            for scorer in dict.fromkeys(s for s in cfg.scorers if s in SCORER_KINDS):
                for note in resolve_scorer(backend, scorer)[1]:
                    print(f"note: {note}", file=sys.stderr)
        dataset = _dataset(args, rank, world)
        try:
            analysis = run_analysis(backend, dataset.examples, cfg, args.out, show_bar=rank == 0,
                                    report=not args.no_report, model_name=args.model, rank=rank, world=world)
        except DatasetError as err:
            cli.exit_with_error(str(err))
        if rank != 0:
            return 0
        return _finish(args, backend, analysis, dataset)
    finally:
        ranks.close()


if __name__ == "__main__":
    raise SystemExit(main())
