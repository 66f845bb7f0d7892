"""The "Batch analysis" tab: where does pruning change the answer, over many videos at once?

A visitor picks the synthetic test set (N questions) or uploads a question table with its videos (or one
zip), chooses scorers and keep ratios, and gets the accuracy / agreement curves, accuracy by question
type, the list of flips (pruned answer differs from the unpruned one) with a keep-mask thumbnail of each,
the failed rows, and a zip of results.jsonl, summary.csv and report.html. The work is
`stts_core.analysis.runner.run_analysis`; this module only checks inputs, bounds the request and renders.

Batch runs queue under their own concurrency id (one at a time), so they never hold the single-video
view's "model" slot. Each run works in a temporary folder removed when it ends, whatever happens; what a
flip needs afterwards (its video, the download) lives in a smaller folder removed with the browser tab's
state, on the tab's next batch, or when too many such folders are kept.

The handlers are plain functions (tests call them without a browser); `build_batch_tab` lays out the
components inside the caller's ``gr.Tabs`` and wires the tab's own events. Opening a flip in the
single-video view is `open_flip`, wired by the page (see `flip_outputs`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import numpy as np
import pandas as pd

from app.batch_local import BENCHMARK, benchmark_status, benchmark_table, load_local_benchmarks
from app.forms import FRAMES_RANGE, MAX_NEW_TOKENS, VIDEO_TYPES
from app.text import SCORERS as SINGLE_VIEW_METHODS
from stts_core.analysis.bench_tables import PAPER_TABLE
from stts_core.analysis.lmms_export import FOLDER as LMMS_FOLDER
from stts_core.analysis.metrics import flips
from stts_core.analysis.records import BASELINE, Analysis, AnalysisSettings, Thumb, decode_mask, default_methods
from stts_core.analysis.report import KIND_TEXT, curve_figure, mask_tiles, type_figure
from stts_core.analysis.runner import run_analysis, run_settings_for
from stts_core.analysis.store import REPORT, RESULTS, SUMMARY, load_thumb
from stts_core.compute_thread import COMPUTE
from stts_core.data.tables import Dataset, DatasetError, load_dataset
from stts_core.methods.frames import frame_count
from stts_core.methods.registry import get_method
from stts_core.models.base import VideoBackend
from stts_core.models.loading import ModelLoadError

SCORERS = default_methods()  # every registered method a batch can run on any model
MAX_EXAMPLES_PER_REQUEST = 200  # the bound a shared server puts on one batch request
BATCH_CONCURRENCY = "batch"  # the queue slot of batch runs; the single-video view uses "model"
SYNTHETIC, UPLOAD = "Synthetic test set", "Upload questions + videos"
KEEP_CHOICES = (0.7, 0.5, 0.3, 0.2, 0.1)
DEFAULT_KEEPS = (0.5, 0.3, 0.2)
BATCH_FRAMES = (4, 64)  # frames per video in a batch; a public server allows at most PUBLIC_MAX_FRAMES
PUBLIC_MAX_FRAMES = 16
DEFAULT_COUNT = 20
TABLE_TYPES = (".csv", ".jsonl")
BUNDLE = "stts-batch-results.zip"
MAX_KEPT = 16  # batches whose flip videos and download stay on disk at once (the oldest go first)
STATE_TTL_S = 2 * 3600
FLIP_COLUMNS = ("example", "question", "gold", "baseline answer", "pruned answer", "scorer", "keep", "change")
FAILED_COLUMNS = ("example", "video", "question", "settings", "error")
FLIP_TARGETS = ("video", "question", "scorer", "frames", "keep", "match_budget")
KIND_ORDER = {"right_to_wrong": 0, "wrong_to_right": 1, "changed": 2}
CHANGE_TEXT = {"right_to_wrong": "right -> wrong", "wrong_to_right": "wrong -> right", "changed": "answer changed"}
NOTHING = "Run a batch to see where pruning changes the answer."

GetBackend = Callable[[str], VideoBackend]
NO_PROGRESS = gr.Progress()  # inert outside an event; Gradio passes a live tracker per event


def _fail(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


# ------------------------------------------------------------------------------------------- state


@dataclass
class BatchResult:
    """What one browser tab keeps of its last batch: the flips in table order (for the preview and for
    opening one in the single-video view) and the folder with their videos, thumbnails and the download
    (thumbnails stay on disk: up to 200 examples x 64 frames would be tens of MB per tab in memory)."""

    model: str  # the Model box value the batch ran with
    settings: AnalysisSettings
    flips: list[dict[str, Any]]
    folder: Path
    videos: dict[str, str] = field(default_factory=dict)  # example id -> kept copy of its video

    def thumb(self, example_id: str) -> Thumb | None:
        return load_thumb(self.folder, example_id)

    def close(self) -> None:
        """Remove the kept videos, thumbnails and the download."""
        _KEPT.discard(self.folder)


class _Kept:
    """Folders kept after a batch, oldest first; beyond `limit` the oldest is removed, so the disk stays
    bounded even when a tab's state is never deleted (sessions evicted without a callback)."""

    def __init__(self, limit: int = MAX_KEPT) -> None:
        self.limit = limit
        self._folders: OrderedDict[Path, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, folder: Path) -> None:
        with self._lock:
            self._folders[folder] = None
            while len(self._folders) > self.limit:
                old, _ = self._folders.popitem(last=False)
                shutil.rmtree(old, ignore_errors=True)

    def discard(self, folder: Path) -> None:
        with self._lock:
            self._folders.pop(folder, None)
        shutil.rmtree(folder, ignore_errors=True)

    def clear(self) -> None:
        """Remove every kept folder (the server is stopping)."""
        with self._lock:
            folders, self._folders = list(self._folders), OrderedDict()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


_KEPT = _Kept()
atexit.register(_KEPT.clear)


def forget(result: BatchResult | None) -> None:
    """gr.State delete callback: the tab closed or its state expired."""
    if isinstance(result, BatchResult):
        result.close()


class BatchOutputs(NamedTuple):
    """Outputs of a batch run, in the order of the tab's components (`BatchTab` from status to state)."""

    status: str
    accuracy_plot: Any
    agreement_plot: Any
    type_plot: Any
    flip_table: pd.DataFrame
    preview: np.ndarray | None
    preview_info: str
    failed_table: pd.DataFrame
    bundle: str
    benchmark_table: pd.DataFrame  # the paper-style table of a benchmark run (empty otherwise)
    state: BatchResult


class FlipTarget(NamedTuple):
    """Values for the single-video view's inputs that reproduce one flip (names as in `FLIP_TARGETS`)."""

    video: str
    question: str
    scorer: str
    frames: int
    keep: float
    match_budget: bool


# ------------------------------------------------------------------------------------------- checks


def batch_settings(scorers: Any, keeps: Any, frames: Any, public: bool = False,
                   max_new_tokens: int = MAX_NEW_TOKENS) -> AnalysisSettings:
    """The request's settings, refused with one sentence when out of bounds (API calls skip the form)."""
    hi = PUBLIC_MAX_FRAMES if public else BATCH_FRAMES[1]
    chosen = [str(s) for s in scorers or []]
    unknown = [s for s in chosen if s not in SCORERS]
    if unknown or not chosen:
        raise _fail(f"Choose at least one scorer from {', '.join(SCORERS)}.")
    try:
        ratios = sorted({float(k) for k in keeps or []}, reverse=True)
        count = float(frames)
    except (TypeError, ValueError):
        raise _fail("Keep ratios and frames must be numbers.") from None
    if not ratios or any(k not in KEEP_CHOICES for k in ratios):
        raise _fail(f"Choose at least one keep ratio from {', '.join(f'{k:g}' for k in KEEP_CHOICES)}.")
    if not count.is_integer() or not BATCH_FRAMES[0] <= count <= hi:
        raise _fail(f"Frames must be a whole number from {BATCH_FRAMES[0]} to {hi} for a batch.")
    return AnalysisSettings(keeps=tuple(ratios), scorers=tuple(chosen), num_frames=int(count),
                            max_new_tokens=max_new_tokens, seed=0).validated()


def _file_path(item: Any) -> Path:
    """A gr.File value (a path, or a FileData-like dict from an API call) as a path."""
    if isinstance(item, dict):
        item = item.get("path")
    if not isinstance(item, str | Path) or not str(item):
        raise _fail("An uploaded file could not be read; upload it again.")
    return Path(item)


def _place(src: Path, dest: Path) -> None:
    """A hard link where possible (no copy, and the path resolves inside the dataset folder), else a copy."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def gather_upload(files: Any, folder: Path) -> Path:
    """The uploaded files as one dataset: a lone zip as it is, or one question table plus its videos
    placed side by side in `folder` (the table names videos relative to itself). Returns what to load."""
    paths = [_file_path(f) for f in (files if isinstance(files, list | tuple) else [files] if files else [])]
    if not paths:
        raise _fail("Upload a questions.csv or .jsonl with its videos, or one .zip holding them.")
    zips = [p for p in paths if p.suffix.lower() == ".zip"]
    if zips:
        if len(paths) > 1:
            raise _fail("Upload either one .zip or a question table with its videos, not both.")
        return zips[0]
    tables = [p for p in paths if p.suffix.lower() in TABLE_TYPES]
    if len(tables) != 1:
        raise _fail(f"Upload exactly one question table (.csv or .jsonl); got {len(tables)}.")
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        if p.suffix.lower() not in (*TABLE_TYPES, *VIDEO_TYPES):
            raise _fail(f"'{p.name}' is neither a question table, a zip nor a video ({', '.join(VIDEO_TYPES)}).")
        if (folder / p.name).exists():
            raise _fail(f"Two uploaded files are named '{p.name}'; rename one.")
        _place(p, folder / p.name)
    return folder / tables[0].name


def synthetic_count(count: Any, max_examples: int = MAX_EXAMPLES_PER_REQUEST) -> int:
    """The slider's question count, checked again for API calls that skip the slider's bounds."""
    try:
        n = float(count)
    except (TypeError, ValueError):
        n = float("nan")
    if not n.is_integer() or not 1 <= n <= max_examples:
        raise _fail(f"The synthetic test set can give 1 to {max_examples} questions in one batch.")
    return int(n)


def load_batch_dataset(source: str, count: Any, files: Any, num_frames: int, workdir: Path,
                       max_examples: int = MAX_EXAMPLES_PER_REQUEST, benchmark: Any = None, subset: Any = None,
                       allow_folders: bool = False) -> Dataset:
    """The request's examples (at most `max_examples`), unpacked or generated under `workdir`, or read from
    the benchmark folders `benchmark` names (where the server allows folders; `count` caps them)."""
    if source == BENCHMARK:
        return load_local_benchmarks(benchmark, subset, synthetic_count(count, max_examples), allow_folders)
    if source not in (SYNTHETIC, UPLOAD):
        raise _fail(f"Choose the data: {SYNTHETIC} or {UPLOAD}.")
    try:
        if source == SYNTHETIC:
            spec = f"synthetic:test:{synthetic_count(count, max_examples)}"
            return load_dataset(spec, workdir=workdir / "data", num_frames=num_frames)
        table = gather_upload(files, workdir / "upload")
        return load_dataset(table, workdir=workdir / "data", max_examples=max_examples, num_frames=num_frames,
                            allow_outside=False)
    except DatasetError as err:
        raise _fail(str(err)) from err
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise _fail("The zip could not be unpacked; it may be damaged.") from err
    except OSError as err:
        raise _fail(f"The uploaded files could not be read ({err.strerror or type(err).__name__}).") from err


def _backend(get_backend: GetBackend, model: Any) -> VideoBackend:
    try:
        return get_backend(model if isinstance(model, str) else "")
    except gr.Error:
        raise
    except (ValueError, ModelLoadError) as err:
        raise _fail(str(err).splitlines()[0] if str(err) else "The model could not be loaded.") from err


# ------------------------------------------------------------------------------------------- tables


def ordered_flips(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flips worst first: right -> wrong, then wrong -> right, then other changed answers; lower keep first."""
    return sorted(flips(rows), key=lambda f: (KIND_ORDER[f["kind"]], f["row"]["keep"], f["row"]["index"]))


def flip_table(items: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One line per flip, in the order of `items` (the state keeps the same order)."""
    lines = [(str(f["row"]["id"]), f["row"]["question"], f["row"].get("gold") or "",
              f["baseline"]["answer"] or "(no answer)", f["row"]["answer"] or "(no answer)", f["row"]["scorer"],
              float(f["row"]["keep"]), CHANGE_TEXT[f["kind"]]) for f in items]
    return pd.DataFrame(lines, columns=list(FLIP_COLUMNS))


def failed_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Failed rows grouped by example and error (a bad video fails every setting with one reason)."""
    groups: OrderedDict[tuple[str, str], list[dict[str, Any]]] = OrderedDict()
    for r in rows:
        if r.get("error"):
            groups.setdefault((str(r["id"]), str(r["error"])), []).append(r)
    total = len({r["setting"] for r in rows})
    lines = []
    for (example, error), failed in groups.items():
        first = failed[0]
        settings = "all" if len(failed) == total else ", ".join(r["setting"] for r in failed)
        lines.append((example, first.get("video") or "", first.get("question") or "", settings, error))
    return pd.DataFrame(lines, columns=list(FAILED_COLUMNS))


def status_markdown(analysis: Analysis, model: str, items: Sequence[dict[str, Any]]) -> str:
    """What ran, how long it took, and how to read the numbers."""
    cfg = analysis.settings
    failed = len({r["id"] for r in analysis.failed})
    used = {r["scorer"]: r.get("scorer_used") for r in analysis.rows if r.get("scorer_used")}
    fallback = [f"**{s}** ran as **{u}** (this model has no trained scorer weights)"
                for s, u in used.items() if u not in (s, BASELINE)]
    kinds = {k: sum(f["kind"] == k for f in items) for k in KIND_ORDER}
    lines = [
        f"**{analysis.examples} example{'' if analysis.examples == 1 else 's'}** x {len(cfg.settings())} settings (the unpruned baseline, then "
        f"{', '.join(cfg.scorers)} at keep {', '.join(f'{k:g}' for k in cfg.keeps)}) on **{model}**, "
        f"{cfg.num_frames} frames, answers up to {cfg.max_new_tokens} tokens: {analysis.wall_s:.1f} s, "
        f"{analysis.examples_per_s:.2f} examples/s (one run, this server).",
        f"Flips: {kinds['right_to_wrong']} right -> wrong, {kinds['wrong_to_right']} wrong -> right, "
        f"{kinds['changed']} other changed answers." if items
        else "No example changed its outcome under pruning.",
        f"{failed} example(s) failed; they are listed below and the rest ran." if failed else "Every example ran.",
        "Correct = the answer equals the gold answer after lower-casing and removing periods; agreement = the same "
        "answer as the unpruned baseline (no answer never agrees). Random-scorer seeds differ per video.",
    ]
    if fallback:
        lines.append("Scorer fallback: " + "; ".join(fallback) + ".")
    return "\n\n".join(lines)


# ------------------------------------------------------------------------------------------- flips


def preview(result: BatchResult | None, index: int) -> tuple[np.ndarray | None, str]:
    """Keep-mask thumbnails of one flip (pruned groups dimmed) and its answers."""
    if result is None or not 0 <= index < len(result.flips):
        return None, NOTHING if result is None else "No flip selected."
    flip = result.flips[index]
    row, base = flip["row"], flip["baseline"]
    keep = decode_mask(row["keep_mask"])
    thumb = result.thumb(str(row["id"]))
    image = mask_tiles(thumb, keep) if thumb is not None and thumb.frames.shape[0] == keep.shape[0] else None
    stats = row.get("scores")
    spread = ""
    if stats:
        spread = (f" Scores min {stats['min']:.3g}, median {stats['median']:.3g}, max {stats['max']:.3g}"
                  + (" (no spread: the selection is decided by tie order)." if stats["no_spread"] else "."))
    text = (f"**{KIND_TEXT[flip['kind']]}** at **{row['setting']}**: {row['kept_groups']}/{row['total_groups']} "
            f"groups kept over {row['num_frames']} frames (dimmed = pruned).{spread}\n\n"
            f"`{row['id']}` · {row['video']} · Q: {row['question']}\n\n"
            f"gold **{row.get('gold') or '-'}** · baseline **{base['answer'] or '(no answer)'}** · "
            f"pruned **{row['answer'] or '(no answer)'}**")
    return image, text if image is not None else text + "\n\n(No thumbnail was kept for this example.)"


def selected_flip(result: BatchResult | None, evt: gr.SelectData | None) -> int:
    """The state's index of the clicked table line: matched on its example, scorer and keep ratio (so a
    table sorted in the browser still opens the right flip), else its position."""
    if result is None or evt is None:
        return -1
    line = evt.row_value
    if isinstance(line, list | tuple) and len(line) >= len(FLIP_COLUMNS):
        key = dict(zip(FLIP_COLUMNS, line, strict=False))
        for i, f in enumerate(result.flips):
            row = f["row"]
            try:
                same_keep = abs(float(row["keep"]) - float(key["keep"])) < 1e-9
            except (TypeError, ValueError):
                same_keep = False
            if str(row["id"]) == str(key["example"]) and row["scorer"] == key["scorer"] and same_keep:
                return i
    index = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
    return int(index) if isinstance(index, int) else -1


def show_flip(result: BatchResult | None, evt: gr.SelectData) -> tuple[np.ndarray | None, str]:
    """A click on the flip table: that flip's thumbnails and answers."""
    return preview(result, selected_flip(result, evt))


def flip_target(result: BatchResult, index: int, model: Any = None) -> FlipTarget:
    """The single-video view's inputs that rerun flip `index`: its video (the kept copy), question, method,
    frames and keep ratio. The view runs the methods that score at ViT block k; a frames-method row becomes
    its round(keep x T) frames with nothing pruned (keep 1), which the view can only show from its smallest
    frame count up. `model` (the Model box now) must be the batch's model: the page's model change resets
    the keep ratio, so it is not set from here."""
    if model is not None and model != result.model:
        raise _fail(f"This batch ran on {result.model}; choose it in the Model box to open its flips.")
    row = result.flips[index]["row"]
    run = run_settings_for(row, result.settings, run_baseline=True)
    video = result.videos.get(str(row["id"]))
    if video is None or not Path(video).is_file():
        raise _fail("This flip's video is no longer kept on the server; run the batch again.")
    scorer, frames, keep = run.scorer, run.num_frames, float(run.keep_ratio)
    if get_method(scorer).stage == "frames":
        scorer, frames, keep = "random", frame_count(run.num_frames, keep), 1.0
    elif scorer not in SINGLE_VIEW_METHODS:
        raise _fail(f"This flip's method ({scorer}) does not run in the single-video view; its keep mask is "
                    "shown here.")
    if not FRAMES_RANGE[0] <= frames <= FRAMES_RANGE[1]:
        raise _fail(f"This flip used {frames} frame(s) ({row['setting']}) and the single-video view takes "
                    f"{FRAMES_RANGE[0]} to {FRAMES_RANGE[1]}; its keep mask is shown here instead.")
    return FlipTarget(video=video, question=row.get("prompt") or row["question"], scorer=scorer, frames=frames, keep=keep,
                      match_budget=False)


def open_flip(result: BatchResult | None, model: Any, evt: gr.SelectData) -> FlipTarget:
    """A click on the flip table, for the single-video view (inputs: the tab's state and the Model box):
    see `flip_target`. Outputs in the order of `FLIP_TARGETS` (use `flip_outputs`)."""
    index = selected_flip(result, evt)
    if result is None or not 0 <= index < len(result.flips):
        raise _fail("Run a batch and click one of its flips first.")
    return flip_target(result, index, model)


def flip_outputs(view: Any) -> list[Any]:
    """The single-video view's components `open_flip` fills, from an object with attributes named as in
    `FLIP_TARGETS` (the page's input namespace)."""
    return [getattr(view, name) for name in FLIP_TARGETS]


# ------------------------------------------------------------------------------------------- run


def _keep_flip_videos(items: Sequence[dict[str, Any]], folder: Path) -> dict[str, str]:
    """Copies (hard links where possible) of the flipped examples' videos, which outlive the run's folder."""
    kept: dict[str, str] = {}
    by_path: dict[str, str] = {}
    for f in items:
        row = f["row"]
        src = row.get("path")
        if str(row["id"]) in kept or not src or not Path(src).is_file():
            continue
        if src not in by_path:
            dest = folder / "videos" / f"{len(by_path):04d}-{Path(src).name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            _place(Path(src), dest)
            by_path[src] = str(dest)
        kept[str(row["id"])] = by_path[src]
    return kept


def _bundle(out_dir: Path, folder: Path) -> str:
    target = folder / BUNDLE
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in (RESULTS, SUMMARY, REPORT, PAPER_TABLE):
            if (out_dir / name).is_file():
                archive.write(out_dir / name, arcname=name)
        for log in sorted((out_dir / LMMS_FOLDER).glob("*/*.jsonl")):  # lmms-eval sample logs of a benchmark run
            archive.write(log, arcname=str(log.relative_to(out_dir)))
    return str(target)


def _analyse(backend: VideoBackend, dataset: Dataset, cfg: AnalysisSettings, out_dir: Path, model: str,
             progress: gr.Progress) -> Analysis:
    total = len(dataset.examples)

    def tell(done: int, all_: int, text: str) -> None:
        progress(done / max(1, all_), desc=f"Analysing: {text}" if done else f"Analysing {total} examples")

    try:
        return run_analysis(backend, dataset.examples, cfg, out_dir, progress=tell, model_name=model)
    except DatasetError as err:
        raise _fail(str(err)) from err
    except (MemoryError, RuntimeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise _fail(f"The batch stopped: {first}") from err


def _results(analysis: Analysis, model: str, cfg: AnalysisSettings, keep_dir: Path) -> BatchOutputs:
    items = ordered_flips(analysis.rows)
    if analysis.out_dir is not None and (analysis.out_dir / "thumbs").is_dir():
        shutil.move(analysis.out_dir / "thumbs", keep_dir / "thumbs")  # the layout `load_thumb` reads
    result = BatchResult(model=model, settings=cfg, flips=items, folder=keep_dir,
                         videos=_keep_flip_videos(items, keep_dir))
    image, info = preview(result, 0) if items else (None, "No example changed its outcome under pruning.")
    return BatchOutputs(
        status=status_markdown(analysis, model, items) + benchmark_status(analysis.benchmarks),
        accuracy_plot=curve_figure(analysis.summary, "accuracy", "Accuracy vs keep ratio"),
        agreement_plot=curve_figure(analysis.summary, "agreement", "Agreement with the unpruned answer"),
        type_plot=type_figure(analysis.summary), flip_table=flip_table(items), preview=image, preview_info=info,
        failed_table=failed_table(analysis.rows), bundle=_bundle(analysis.out_dir or keep_dir, keep_dir),
        benchmark_table=benchmark_table(analysis.benchmarks), state=result)


def run_batch(get_backend: GetBackend, model: Any, source: str, count: Any, files: Any, scorers: Any, keeps: Any,
              frames: Any, previous: BatchResult | None = None, public: bool = False,
              max_new_tokens: int = MAX_NEW_TOKENS, max_examples: int = MAX_EXAMPLES_PER_REQUEST,
              temp_dir: str | Path | None = None, progress: gr.Progress = NO_PROGRESS, benchmark: Any = None,
              subset: Any = None, allow_folders: bool = False) -> BatchOutputs:
    """Check the request, run every example through the baseline and every scorer x keep ratio, and
    return what the tab shows. Raises gr.Error with one sentence for a request that cannot run; a bad
    example only fails its own rows. The run's folder (data, results) is removed before returning; the
    flips' videos and the download stay in a kept folder until the tab's next batch or its state ends.
    `benchmark` / `subset`: the specs and subset of the local benchmark folder source (`allow_folders`)."""
    cfg = batch_settings(scorers, keeps, frames, public, max_new_tokens)
    label = model if isinstance(model, str) else ""
    work = Path(tempfile.mkdtemp(prefix="stts-batch-", dir=temp_dir))
    keep_dir = Path(tempfile.mkdtemp(prefix="stts-batch-kept-", dir=temp_dir))
    try:
        progress(0.0, desc="Drawing the synthetic clips" if source == SYNTHETIC else "Reading the data")
        dataset = load_batch_dataset(source, count, files, cfg.num_frames, work, max_examples, benchmark, subset,
                                     allow_folders)
        if dataset.limits is not None:  # a benchmark's long videos
            cfg = replace(cfg, limits=replace(dataset.limits, max_frames=cfg.limits.max_frames))
        try:
            progress(0.02, desc="Loading the model")
            backend = _backend(get_backend, model)
            analysis = COMPUTE.run(_analyse, backend, dataset, cfg, work / "out", label, progress)
            outputs = _results(analysis, label, cfg, keep_dir)
        finally:
            dataset.close()
    except BaseException:
        shutil.rmtree(keep_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _KEPT.add(keep_dir)
    if previous is not None and previous.folder != keep_dir:
        forget(previous)
    return outputs
