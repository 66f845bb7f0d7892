"""Event functions of the page: check the input, call stts_core, render what it returned.

They are plain methods so tests and scripts can call them without a browser. Every problem a user
can cause ends as one sentence (a `gr.Error` for the API, a toast plus the status line on the page);
the app itself keeps serving and a failed run leaves the previous results in place.

The main event is published as the API endpoint "/run" (see `Handlers.run`), e.g.::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    out = client.predict(handle_file("clip.mp4"), "what colour is the ball ?", "Built-in STTS-tiny (offline, CPU)",
                         "learned", 16, 0.5, False, False, api_name="/run")
    baseline_answer, stts_answer, details = out[5], out[6], out[11]   # details: RunResult.to_json() + extras
    masks_video, bundle_zip = out[13], out[14]
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import gradio as gr
import numpy as np
import pandas as pd
import torch

from app import media, render
from app.models import BUILTIN_LABEL, CACHE, ModelChoices, gpu_seconds, gpu_task, on_zero_gpu
from stts_core.data.video import VideoError, VideoFile, VideoLimits
from stts_core.methods.budget import select_groups, validate_keep_ratio
from stts_core.models.base import VideoBackend
from stts_core.models.loading import ModelLoadError
from stts_core.pipeline.request import STAGES, TTFT_STAGES, RunResult, RunSettings, validate_question
from stts_core.pipeline.request import run as run_pipeline

LIMITS = VideoLimits()  # the library's limits: the app and the CLI accept the same videos
VIDEO_TYPES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
FRAMES_RANGE = (4, 256)
KEEP_RANGE = (0.05, 1.0)
MAX_NEW_TOKENS = 32
PRECISE_PAIRS = 5  # "measure precisely": this many baseline/STTS pairs, medians reported
SETTLE_S = 0.6  # the keep value must rest this long before the models rerun
SCRUB_SIDE = 384  # longest side of the frames the scrubber shows (kept as JPEG)
FLAT_SPREAD = 1e-3  # scores spanning less than this are reported as having no spread
SCORERS = ("learned", "heuristic", "random")
SCORER_INFO = ("learned: the trained STTS scorer; heuristic: 1 - cosine similarity to the previous frame "
               "(training-free); random: the same budget spent on random groups.")
NO_SCORER_INFO = ("This model has no trained STTS scorer weights, so 'learned' is not offered; "
                  "heuristic is the training-free scorer (1 - cosine similarity to the previous frame).")
STALE = ("The video, model, frame count or scorer changed since the last run, so the cached scores no longer "
         "apply: press **Run** to score again.")
BUILTIN_NOTE = ("The built-in model only knows its synthetic world (coloured shapes over textures and photographs): "
                "on real footage it shows the pipeline, masks and timings, not meaningful answers; real videos "
                "want Molmo2-4B.")
STAGE_NAMES = {
    "decode_video": "decode video", "preprocess": "preprocess", "vit_prefix": "ViT blocks 0..k",
    "scoring": "scoring + selection", "vit_suffix": "ViT blocks k+1.. (packed)", "connector": "connector",
    "llm_prefill": "LLM prefill", "decoding": "decoding",
}
CLIPS = media.ClipCache()


def limits_text(limits: VideoLimits = LIMITS) -> str:
    mb = limits.max_bytes / 1024**2
    minutes = limits.max_duration_s / 60
    return (f"Accepted: {', '.join(t[1:] for t in VIDEO_TYPES)}; up to {mb:.0f} MB and {minutes:g} minutes. "
            "Frames are sampled uniformly in time.")


RunKey = tuple[str, str, int, str, bool]
# Default of the progress parameters: Gradio recognises a gr.Progress default and passes a live
# tracker per event; direct calls (tests, scripts) use this inert one.
NO_PROGRESS = gr.Progress()


@dataclass
class Measured:
    """Medians and spread of repeated baseline/STTS pairs ("measure precisely"), in milliseconds."""

    pairs: int
    ttft_ms: dict[str, tuple[float, float, float]]  # run -> (median, min, max)
    model_ms: dict[str, tuple[float, float, float]]
    ttft_speedups: list[float]
    model_speedups: list[float]


@dataclass
class View:
    """What one browser tab keeps of its last run: only what the slider, pages and scrubber redraw from."""

    key: RunKey  # (video path, model source, frames, scorer shown, same-budget switch)
    result: RunResult  # frames replaced by an empty array (the canvas and scrub frames are small copies)
    canvas: render.MaskCanvas
    scrub: list[bytes]  # one JPEG per STTS frame, longest side SCRUB_SIDE
    keep_ratio: float
    model_label: str
    masks_video: str | None = None
    bundle: str | None = None
    measured: Measured | None = None

    @property
    def nbytes(self) -> int:
        r = self.result
        arrays = (r.frames, r.scores, r.keep_mask, r.groups, r.timestamps)
        return self.canvas.nbytes + sum(len(b) for b in self.scrub) + sum(a.nbytes for a in arrays)


class RunOutputs(NamedTuple):
    """Outputs of a full run, in the order of the page's components (and of the "/run" API)."""

    masks: np.ndarray
    masks_info: str
    scores_image: np.ndarray
    heatmap: Any
    kept_bars: Any
    baseline_answer: str
    stts_answer: str
    answer_info: str
    stage_table: pd.DataFrame
    speed_info: str
    stage_chart: Any
    details: dict
    scorer: Any
    masks_video: str | None
    bundle: str | None
    frame_plot: Any
    status: str
    frame: Any  # scrubber slider update (range of frames)
    page: Any  # contact-sheet page slider update
    view: View


class PreviewOutputs(NamedTuple):
    """What the keep-ratio slider redraws at once, from cached scores only."""

    masks: Any
    masks_info: Any
    heatmap: Any
    kept_bars: Any
    frame_plot: Any
    status: Any


@dataclass
class RunRequest:
    """Checked inputs of one run."""

    path: str
    question: str
    source: str
    settings: RunSettings
    precise: bool


def _duration(source: str, video: Any, question: str, settings: RunSettings, limits: VideoLimits,
              pairs: int = 1) -> int:
    return gpu_seconds(settings.stts_frames() + settings.num_frames, pairs)


@gpu_task(_duration)
def run_on_device(source: str, video: str | VideoFile, question: str, settings: RunSettings, limits: VideoLimits,
                  pairs: int = 1, on_stage: Callable[[str, str], None] | None = None) -> list[RunResult]:
    """The model work of one request; the only function that runs on the GPU (spaces.GPU on ZeroGPU).

    Takes plain values (on ZeroGPU the video is a path, decoded inside) and finds the model in the
    process cache, so nothing large crosses into the GPU worker. `pairs` > 1 repeats the
    baseline/STTS pair for precise timing; the video is decoded once for all of them. `on_stage`
    (None on ZeroGPU, where it could not cross into the GPU worker) hears each pipeline stage.
    """
    backend = CACHE.peek(source)
    if backend is None:
        raise ModelLoadError(f"The model '{source}' is not loaded.")
    return [run_pipeline(backend, video, question, settings, limits, on_stage) for _ in range(max(1, pairs))]


def stage_progress(progress: gr.Progress, pairs: int = 1) -> Callable[[str, str], None]:
    """A pipeline `on_stage` callback that moves the progress bar from 0.2 to 0.8 through both runs'
    stages (and through every pair in precise mode), naming the stage that is running."""
    steps = 2 * len(STAGES) * max(1, pairs)
    done = [0]

    def tell(run_name: str, stage: str) -> None:
        done[0] = min(done[0] + 1, steps)
        label = "Baseline" if run_name == "baseline" else "STTS"
        progress(0.2 + 0.6 * done[0] / steps, desc=f"{label}: {STAGE_NAMES.get(stage, stage)}")

    return tell


def scorer_update(has_learned: bool, value: str | None) -> dict[str, Any]:
    """Radio update: 'learned' is only offered by models that have trained scorer weights."""
    if has_learned:
        return gr.update(choices=list(SCORERS), value=value if value in SCORERS else "learned", info=SCORER_INFO)
    rest = [s for s in SCORERS if s != "learned"]
    return gr.update(choices=rest, value=value if value in rest else "heuristic", info=NO_SCORER_INFO)


# --------------------------------------------------------------------------------------- input checks


def _fail(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def whole_number(value: Any, name: str, lo: int, hi: int) -> int:
    """An API or form value as an int in [lo, hi]; 4.5, NaN, None and text are refused with a sentence."""
    try:
        number = float(value) if not isinstance(value, bool) and value is not None else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or not number.is_integer() or not lo <= number <= hi:
        raise ValueError(f"{name} must be a whole number from {lo} to {hi} (got {_shown(value)}).")
    return int(number)


def ratio(value: Any) -> float:
    try:
        number = float(value) if not isinstance(value, bool) and value is not None else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or not KEEP_RANGE[0] <= number <= KEEP_RANGE[1]:
        raise ValueError(f"The keep ratio must be a number from {KEEP_RANGE[0]} to {KEEP_RANGE[1]} "
                         f"(got {_shown(value)}).")
    validate_keep_ratio(number)
    return number


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _video_path(video: Any) -> str:
    """The file path of a gr.Video value (a path, or a FileData-like dict from an API call)."""
    if isinstance(video, dict):
        video = video.get("path") or (video.get("video") or {}).get("path")
    if not video or not isinstance(video, str | Path):
        raise _fail("Please upload a video (or click one of the examples) first.")
    return str(video)


# ------------------------------------------------------------------------------------------- formatting


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 1)


def _speedup(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.2f}x" + (" (slower)" if x < 1 else "")


def stage_table(result: RunResult) -> pd.DataFrame:
    """Measured milliseconds per stage for both runs, then model-side TTFT, model total and end to end."""
    base = result.baseline
    rows = [[STAGE_NAMES.get(s, s), _ms(base.timings[s]) if base else None, _ms(result.stts.timings[s])]
            for s in STAGES]
    for name, attr in (("time to first token (model)", "ttft_s"), ("model total", "model_s"),
                       ("end to end", "e2e_s")):
        rows.append([name, _ms(getattr(base, attr)) if base else None, _ms(getattr(result.stts, attr))])
    return pd.DataFrame(rows, columns=["stage", "baseline (ms)", "STTS (ms)"])


def _memory(gb: float | None) -> str:
    return "not tracked on CPU" if gb is None else f"{gb:.2f} GB"


def _spread(stats: tuple[float, float, float]) -> str:
    med, lo, hi = stats
    return f"{med:.0f} ms (range {lo:.0f}-{hi:.0f})"


def measured_markdown(m: Measured) -> str:
    ttft = float(np.median(m.ttft_speedups))
    model = float(np.median(m.model_speedups))
    return (f"**Measured precisely over {m.pairs} baseline/STTS pairs after one warm-up pair (medians, "
            "range = min-max):** "
            f"time to first token {_speedup(ttft)} ({_spread(m.ttft_ms['baseline'])} -> "
            f"{_spread(m.ttft_ms['stts'])}); model total {_speedup(model)} ({_spread(m.model_ms['baseline'])} -> "
            f"{_spread(m.model_ms['stts'])}); per-pair TTFT speedups {min(m.ttft_speedups):.2f}x-"
            f"{max(m.ttft_speedups):.2f}x.")


def speed_markdown(result: RunResult, measured: Measured | None = None) -> str:
    base, stts = result.baseline, result.stts
    lines = []
    if measured is not None:
        lines.append(measured_markdown(measured))
    if base is not None:
        lines.append(f"**Time to first token (model): {_speedup(result.ttft_speedup)}** ({_ms(base.ttft_s):.0f} ms "
                     f"-> {_ms(stts.ttft_s):.0f} ms) &nbsp;|&nbsp; **model total: {_speedup(result.model_speedup)}** "
                     f"({_ms(base.model_s):.0f} ms -> {_ms(stts.model_s):.0f} ms)"
                     + ("" if measured is None else " (the run shown)"))
        lines.append(f"Model side = {' + '.join(STAGE_NAMES[s] for s in TTFT_STAGES)} (+ answer decoding for the "
                     "total). Decoding the video and preprocessing are the same work for both and shown apart: video "
                     f"decoded once for both runs in {_ms(result.decode_s):.0f} ms; end to end "
                     f"{_ms(base.e2e_s):.0f} ms -> {_ms(stts.e2e_s):.0f} ms ({_speedup(result.e2e_speedup)}).")
        if base.peak_mem_gb is None and stts.peak_mem_gb is None:
            lines.append("Peak memory: not tracked on CPU")
        else:
            lines.append(f"Peak GPU memory: {_memory(base.peak_mem_gb)} -> {_memory(stts.peak_mem_gb)}")
    else:
        lines.append(f"STTS: {_ms(stts.model_s):.0f} ms model time (no baseline run)")
    lines.append(f"Device: {result.device} &nbsp;|&nbsp; ViT tokens after pruning per block: "
                 f"{base.vit_suffix_tokens if base else '-'} -> {stts.vit_suffix_tokens}")
    if result.warmup:
        lines.append("**Warm-up run**: the first run after a model loads pays one-off costs; "
                     "run again for steady-state timings.")
    if measured is None:
        lines.append("Times are measured stage by stage during this one run (not estimated); one run varies, tick "
                     "**measure precisely** for medians over repeated pairs.")
    return "\n\n".join(lines)


def flat_scores(scores: np.ndarray) -> bool:
    """True when the scorer barely told groups apart: (almost) no spread, or every value tied."""
    s = np.asarray(scores, dtype=np.float64)
    return s.size == 0 or float(s.max() - s.min()) < FLAT_SPREAD or np.unique(s).size <= 1


def selection_markdown(result: RunResult, keep: np.ndarray, keep_ratio: float, preview: bool) -> str:
    t, g = keep.shape
    kept = int(keep.sum())
    base_tokens = result.baseline.visual_tokens if result.baseline is not None else t * g
    text = (f"**Keep {keep_ratio:.2f}**: {kept} of {t * g} groups kept over {t} frames "
            f"(visual tokens {base_tokens} -> {kept}); frame 0 is always kept whole. Pruned groups are dimmed, "
            "kept groups outlined.")
    if flat_scores(result.scores):
        spread = float(np.max(result.scores) - np.min(result.scores))
        text += (f"\n\n**⚠️ The {result.scorer_used} scorer gave (almost) the same score to every group (spread "
                 f"{spread:.2g})**, so which groups are kept here says little about the video: ties are broken by "
                 "position.")
    if preview:
        text += " *Preview from the cached scores: the models rerun when the value rests.*"
        if result.settings.match_budget:
            text += " *With the same-budget switch on, the rerun samples round(frames / keep) frames.*"
    return text


def answer_markdown(result: RunResult, model_label: str) -> str:
    base, stts = result.baseline, result.stts
    empty = [name for name, r in (("baseline", base), ("STTS", stts)) if r is not None and not r.answer.strip()]
    if base is None:
        head = "### STTS answer only (no baseline run)"
    elif empty:
        head = f"### ❔ No answer from {' and '.join(empty)}, so agreement cannot be judged"
    else:
        head = "### ✅ Same answer" if result.agree else "### ⚠️ Answers differ"
    base_tokens = base.visual_tokens if base is not None else "-"
    text = (f"{head}\n\nVisual tokens: **{base_tokens} -> {stts.visual_tokens}** &nbsp;|&nbsp; "
            f"STTS frames: {stts.num_frames} &nbsp;|&nbsp; scorer used: **{result.scorer_used}** "
            f"&nbsp;|&nbsp; keep {result.settings.keep_ratio:.2f} &nbsp;|&nbsp; model: {model_label}")
    notes = list(result.notes) + ([BUILTIN_NOTE] if model_label == BUILTIN_LABEL else [])
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return text


def _answer(text: str) -> str:
    return text if text.strip() else "(no answer: the model produced no text)"


def video_markdown(info: dict[str, Any], frames: Any, limits: VideoLimits, converted: bool = False) -> str:
    total = int(info.get("total_frames") or 0)
    text = (f"{info['duration']:.1f} s, {info['fps']:.3g} fps, {total} frames, {info['width']}x{info['height']}, "
            f"{info['codec']}." + (" Converted to H.264 MP4 for the player." if converted else ""))
    try:
        asked = whole_number(frames, "Frames", *FRAMES_RANGE)
    except ValueError:
        asked = None
    if asked is not None and 0 < total < asked:
        text += f" **The clip has only {total} frames, so a run uses all {total} (not {asked}).**"
    return f"{text} {limits_text(limits)}"


# --------------------------------------------------------------------------------------------- handlers


class Handlers:
    """The page's events, configured with the model choices and the video limits."""

    def __init__(self, choices: ModelChoices | None = None, limits: VideoLimits = LIMITS) -> None:
        self.choices = choices or ModelChoices()
        self.limits = limits
        self._changes: OrderedDict[str, float] = OrderedDict()  # session -> time of its last keep change
        self._lock = threading.Lock()

    def _key(self, video: Any, model: str, scorer: str, frames: Any, match_budget: bool) -> RunKey | None:
        try:
            return (_video_path(video), self.choices.source(model), whole_number(frames, "Frames", *FRAMES_RANGE),
                    str(scorer), bool(match_budget))
        except (gr.Error, ValueError, TypeError):
            return None

    def _clip(self, path: str) -> media.OpenClip:
        try:
            return CLIPS.get(path, self.limits)
        except VideoError as err:
            raise _fail(str(err)) from err

    # ---- upload

    def check_video(self, video: Any, frames: Any = None) -> tuple[Any, str]:
        """On upload: read the file's content (not its name) so a bad file is reported at once, and
        convert formats the browser cannot play (GIF, AVI, ...) to H.264 MP4. Returns (video, info)."""
        if not video:
            return gr.skip(), limits_text(self.limits)
        path = _video_path(video)
        info = self._clip(path).video.info
        if media.is_playable(info):
            return gr.skip(), video_markdown(info, frames, self.limits, converted=media.converted_from(info) is not None)
        try:
            converted = str(media.convert_to_mp4(path, self.limits))
        except VideoError as err:
            raise _fail(str(err)) from err
        return converted, video_markdown(self._clip(converted).video.info, frames, self.limits, converted=True)

    def on_upload(self, video: Any, frames: Any = None) -> tuple[Any, str]:
        """The page's upload check: like `check_video`, but a bad file is a toast plus the line under the
        player, so the player and the rest of the page show no error state."""
        try:
            return self.check_video(video, frames)
        except gr.Error as err:
            gr.Warning(err.message)
            return gr.skip(), f"⚠️ {err.message} {limits_text(self.limits)}"

    def upload_other(self, file: Any, frames: Any = None) -> tuple[Any, str]:
        """The "Upload GIF / other" button: the file itself when the player can show it, else an MP4 copy."""
        if not file:
            return gr.skip(), limits_text(self.limits)
        converted, info = self.on_upload(file, frames)
        if info.startswith("⚠️"):
            return gr.skip(), info
        return (_video_path(file) if converted == gr.skip() else converted), info

    def describe(self, video: Any, frames: Any) -> str:
        """The video line again when the frame count changes (says when the clip has fewer frames)."""
        if not video:
            return limits_text(self.limits)
        try:
            return video_markdown(CLIPS.get(_video_path(video), self.limits).video.info, frames, self.limits)
        except (VideoError, gr.Error):
            return gr.skip()

    def model_changed(self, model: str, scorer: str) -> tuple[dict[str, Any], Any]:
        """Offer 'learned' only if the chosen model, when already loaded, has scorer weights; start the
        keep slider at the model's own default ratio."""
        try:
            backend = CACHE.peek(self.choices.source(model))
        except ValueError:
            return gr.update(), gr.skip()
        if backend is None:
            return scorer_update(True, scorer), gr.skip()
        return scorer_update(backend.has_learned_scorer, scorer), float(backend.default_keep_ratio)

    # ---- run

    def check(self, video: Any, question: Any, model: Any, scorer: Any, frames: Any, keep_ratio: Any,
              match_budget: Any, precise: Any = False) -> RunRequest:
        """Every input checked before any model work; raises gr.Error with one sentence."""
        path = _video_path(video)
        try:
            text = validate_question(question)
            num_frames = whole_number(frames, "Frames", *FRAMES_RANGE)
            settings = RunSettings(keep_ratio=ratio(keep_ratio), scorer=str(scorer or "learned"),
                                   num_frames=num_frames, max_new_tokens=MAX_NEW_TOKENS,
                                   match_budget=bool(match_budget)).validated()
            source = self.choices.source(model if isinstance(model, str) else None)
        except ValueError as err:
            raise _fail(str(err)) from err
        self._clip(path)
        return RunRequest(path=path, question=text, source=source, settings=settings, precise=bool(precise))

    def backend_for(self, model: str) -> VideoBackend:
        """The backend for a Model-box value (a listed name, or a hub id / folder where allowed), loaded
        once per process; every problem is a one-sentence gr.Error."""
        try:
            source = self.choices.source(model)
        except ValueError as err:
            raise _fail(str(err)) from err
        return self._load(source)

    def _load(self, source: str) -> VideoBackend:
        try:
            return CACHE.get(source, self.choices.builtin_path)
        except ModelLoadError as err:
            others = [s for s in CACHE.sources if s != source]
            hint = (f" The previously loaded model ({self.choices.label(others[-1])}) is still available."
                    if others else "")
            raise _fail(f"{self.choices.load_error(source, err)}{hint}") from err

    def _infer(self, req: RunRequest, pairs: int, progress: gr.Progress = NO_PROGRESS) -> list[RunResult]:
        clip = self._clip(req.path)
        try:
            with clip.lock:
                try:
                    video: str | VideoFile = req.path if on_zero_gpu() else clip.video
                    on_stage = None if on_zero_gpu() else stage_progress(progress, pairs)
                    return run_on_device(req.source, video, req.question, req.settings, self.limits, pairs,
                                         on_stage)
                finally:
                    clip.video.forget_samples()  # between runs only the probe stays in memory
        except (VideoError, ValueError) as err:
            raise _fail(str(err)) from err
        except torch.OutOfMemoryError as err:
            raise _fail("The GPU ran out of memory for this video; try fewer frames.") from err
        except RuntimeError as err:
            first = str(err).splitlines()[0] if str(err) else repr(err)
            raise _fail(f"The model failed on this input: {first}") from err

    def run(self, video: Any, question: str, model: str, scorer: str, frames: float, keep_ratio: float,
            match_budget: bool, precise: bool = False, progress: gr.Progress = NO_PROGRESS) -> RunOutputs:
        """Run the unpruned baseline and STTS on the video and question; return every view of the result.

        API "/run" inputs: video file, question, model (a listed name; hub ids or local paths where the
        server allows custom models), scorer (learned / heuristic / random), frames (whole number 4-256),
        keep ratio (0.05-1), same-token-budget switch, measure-precisely switch (PRECISE_PAIRS pairs).
        Outputs: keep-mask grid image (page 1), selection summary, score-tinted grid, score heatmap,
        kept-per-frame bars, baseline answer, STTS answer, answer summary, stage table (ms), speed summary,
        stage chart, the full result as JSON (RunResult.to_json(): settings, scores, keep mask, answers,
        timings), the scorer actually offered, the masks video (original | masked, MP4), the download
        bundle (zip), the frame-scrubber figure, a status line, and two slider updates.
        """
        req = self.check(video, question, model, scorer, frames, keep_ratio, match_budget, precise)
        progress(0.05, desc=f"Loading {self.choices.label(req.source)}" if CACHE.peek(req.source) is None
                 else "Model ready")
        backend = self._load(req.source)
        pairs = PRECISE_PAIRS + 1 if req.precise else 1  # precise: one warm-up pair, then the measured ones
        progress(0.2, desc="Decoding the video once, then the baseline and STTS"
                 + (f" ({pairs} pairs)" if pairs > 1 else ""))
        results = self._infer(req, pairs, progress)
        progress(0.8, desc="Rendering the masks video and the download")
        # The run shown is the last pair; the video was decoded once, for the first pair, and shared after.
        result = dataclasses.replace(results[-1], decode_s=results[0].decode_s)
        key: RunKey = (req.path, req.source, req.settings.num_frames, result.scorer_used, req.settings.match_budget)
        new_view = make_view(key, result, req.settings.keep_ratio, self.choices.label(req.source),
                             measure(results) if pairs > 1 else None)
        del results, result
        media.release_memory()
        progress(0.95, desc="Drawing")
        return render_run(new_view, backend.has_learned_scorer)

    def run_ui(self, video: Any, question: str, model: str, scorer: str, frames: float, keep_ratio: float,
               match_budget: bool, precise: bool = False, progress: gr.Progress = NO_PROGRESS) -> tuple:
        """The page's Run: like `run`, but a failure leaves every result as it was and returns its
        sentence as the status line and the gate (which the next step shows as a toast)."""
        try:
            out = self.run(video, question, model, scorer, frames, keep_ratio, match_budget, precise, progress)
        except gr.Error as err:
            return (*[gr.skip()] * (len(RunOutputs._fields) - 4), f"⚠️ {err.message}", gr.skip(), gr.skip(),
                    gr.skip(), str(err.message))
        return (*out, "")

    def start(self, *inputs: Any) -> tuple[str, Any, str]:
        """Run pressed: check the inputs at once. Returns (status line, Run button, gate message)."""
        try:
            self.check(*inputs)
        except gr.Error as err:
            return f"⚠️ {err.message}", gr.skip(), str(err.message)
        return "Running: the first run after a model loads takes longer.", gr.update(interactive=False), ""

    @staticmethod
    def gate(message: str) -> None:
        """Raises the failure sentence (a toast) so the chain stops; outputs none, so no component shows an error."""
        if message:
            raise _fail(message)

    # ---- keep slider

    def preview(self, keep_ratio: float, view: View | None, video: Any, model: str, scorer: str, frames: float,
                match_budget: bool, page: Any = 1, frame: Any = 0,
                request: gr.Request | None = None) -> PreviewOutputs:
        """Any keep change: redo only the selection from the cached scores and redraw (no model work)."""
        self._touch(request)
        skip = gr.skip()
        if view is None:
            return PreviewOutputs(skip, skip, skip, skip, skip, skip)
        if self._key(video, model, scorer, frames, match_budget) != view.key:
            return PreviewOutputs(skip, STALE, skip, skip, skip, skip)
        try:
            value = ratio(keep_ratio)
        except ValueError as err:
            return PreviewOutputs(skip, skip, skip, skip, skip, f"⚠️ {err}")
        return render_preview(view, value, _page_index(page), _frame_index(frame, view))

    def _touch(self, request: gr.Request | None) -> None:
        session = getattr(request, "session_hash", None) or "-"
        with self._lock:
            self._changes[session] = time.monotonic()
            self._changes.move_to_end(session)
            while len(self._changes) > 1024:
                self._changes.popitem(last=False)

    def settle(self, request: gr.Request | None = None) -> None:
        """Wait until this session's keep value has rested SETTLE_S (at most a few seconds)."""
        session = getattr(request, "session_hash", None) or "-"
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            with self._lock:
                rest = self._changes.get(session, 0.0) + SETTLE_S - time.monotonic()
            if rest <= 0:
                return
            time.sleep(min(rest, 0.2))

    def rerun(self, video: Any, question: str, model: str, scorer: str, frames: float, keep_ratio: float,
              match_budget: bool, precise: bool = False, view: View | None = None,
              progress: gr.Progress = NO_PROGRESS) -> tuple:
        """Keep value settled: rerun both models at it, when there was a run and only the keep ratio changed."""
        try:
            wanted = view is not None and self._key(video, model, scorer, frames, match_budget) == view.key
            wanted = wanted and abs(view.keep_ratio - ratio(keep_ratio)) >= 1e-9
        except ValueError:
            wanted = False
        if not wanted:  # no run yet, nothing changed, or other settings changed too (the page says: press Run)
            return tuple(gr.skip() for _ in range(len(RunOutputs._fields) + 1))
        return self.run_ui(video, question, model, scorer, frames, keep_ratio, match_budget, precise, progress)

    # ---- pages and scrubber

    def show_page(self, page: Any, keep_ratio: float, view: View | None) -> tuple[Any, Any]:
        if view is None:
            return gr.skip(), gr.skip()
        keep = _keep_for(view, keep_ratio)
        p = _page_index(page)
        return render.draw_masks(view.canvas, keep, p), render.draw_scores(view.canvas, view.result.scores, page=p)

    def scrub(self, frame: Any, keep_ratio: float, view: View | None) -> Any:
        if view is None:
            return gr.skip()
        return frame_plot(view, _frame_index(frame, view), _keep_for(view, keep_ratio))




def _page_index(page: Any) -> int:
    try:
        return max(0, int(float(page)) - 1)
    except (TypeError, ValueError, OverflowError):
        return 0


def _frame_index(frame: Any, view: View) -> int:
    try:
        t = int(float(frame))
    except (TypeError, ValueError, OverflowError):
        t = 0
    return min(max(t, 0), view.result.keep_mask.shape[0] - 1)


def _keep_for(view: View, keep_ratio: Any) -> np.ndarray:
    try:
        value = ratio(keep_ratio)
    except ValueError:
        value = view.keep_ratio
    if abs(value - view.keep_ratio) < 1e-9:
        return view.result.keep_mask
    return select_groups(torch.from_numpy(view.result.scores), value).numpy()


def measure(results: list[RunResult]) -> Measured:
    """Medians and range of model-side TTFT and total over repeated pairs (the first pair is a warm-up and
    excluded when there are more than two)."""
    runs = results[1:] if len(results) > 2 else results

    def stats(values: list[float]) -> tuple[float, float, float]:
        ms = [v * 1e3 for v in values]
        return float(np.median(ms)), float(min(ms)), float(max(ms))

    def both(attr: str) -> dict[str, tuple[float, float, float]]:
        return {"baseline": stats([getattr(r.baseline, attr) for r in runs if r.baseline is not None]),
                "stts": stats([getattr(r.stts, attr) for r in runs])}

    return Measured(pairs=len(runs), ttft_ms=both("ttft_s"), model_ms=both("model_s"),
                    ttft_speedups=[r.ttft_speedup for r in runs if r.ttft_speedup is not None],
                    model_speedups=[r.model_speedup for r in runs if r.model_speedup is not None])


def _jpeg(frame: np.ndarray) -> bytes:
    h, w = frame.shape[:2]
    scale = min(1.0, SCRUB_SIDE / max(h, w))
    small = cv2.resize(frame, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    return render.encode_jpeg(small, 85)


def make_view(key: RunKey, result: RunResult, keep_ratio: float, model_label: str,
              measured: Measured | None = None) -> View:
    """Cache what the slider, pages and scrubber need, write the masks video and the bundle; the decoded
    frames are dropped (replaced by a real empty array, not a view that would keep them alive)."""
    r = result
    canvas = render.build_canvas(r.frames, r.timestamps, r.groups, r.patch_grid)
    scrub = [_jpeg(f) for f in r.frames]
    folder = media.new_folder()
    try:
        video = str(media.write_masks_video(folder, r.frames, r.keep_mask, r.groups, r.patch_grid, r.timestamps))
    except VideoError:
        video = None
    slim = dataclasses.replace(r, frames=np.zeros((r.frames.shape[0], 0, 0, 3), dtype=np.uint8))
    details = run_details(slim, measured)
    bundle = str(media.write_bundle(folder, details, Path(video) if video else None, r.keep_mask, r.timestamps))
    return View(key=key, result=slim, canvas=canvas, scrub=scrub, keep_ratio=keep_ratio, model_label=model_label,
                masks_video=video, bundle=bundle, measured=measured)


def run_details(result: RunResult, measured: Measured | None) -> dict[str, Any]:
    details = result.to_json()
    details["scores_flat"] = flat_scores(result.scores)
    if measured is not None:
        details["measured"] = dataclasses.asdict(measured)
    return details


def frame_plot(view: View, t: int, keep: np.ndarray) -> Any:
    r = view.result
    image = render.decode_jpeg(view.scrub[t])
    return render.frame_figure(image, t, r.scores, keep, r.groups, r.patch_grid, float(r.timestamps[t]))


def render_preview(view: View, keep_ratio: float, page: int = 0, frame: int = 0) -> PreviewOutputs:
    r = view.result
    keep = _keep_for(view, keep_ratio)
    return PreviewOutputs(
        masks=render.draw_masks(view.canvas, keep, page),
        masks_info=selection_markdown(r, keep, keep_ratio, preview=True),
        heatmap=render.scores_heatmap(r.scores, keep, r.timestamps),
        kept_bars=render.kept_bars(keep, r.timestamps),
        frame_plot=frame_plot(view, frame, keep),
        status=f"Keep {keep_ratio:.2f}: masks previewed; answers and timings are for keep {view.keep_ratio:.2f} "
               "until the models rerun (when the value rests).",
    )


def _stage_chart(r: RunResult) -> Any:
    runs = {"STTS": [_ms(r.stts.timings[s]) for s in STAGES]}
    if r.baseline is not None:
        runs = {"baseline": [_ms(r.baseline.timings[s]) for s in STAGES], **runs}
    title = "Measured time per stage (ms, stacked per run)" + (", warm-up run" if r.warmup else "")
    return render.stage_chart([STAGE_NAMES.get(s, s) for s in STAGES], runs, title)


def render_run(view: View, has_learned_scorer: bool) -> RunOutputs:
    r = view.result
    base = r.baseline
    t = r.keep_mask.shape[0]
    pages = view.canvas.pages
    return RunOutputs(
        masks=render.draw_masks(view.canvas, r.keep_mask),
        masks_info=selection_markdown(r, r.keep_mask, view.keep_ratio, preview=False),
        scores_image=render.draw_scores(view.canvas, r.scores),
        heatmap=render.scores_heatmap(r.scores, r.keep_mask, r.timestamps),
        kept_bars=render.kept_bars(r.keep_mask, r.timestamps),
        baseline_answer=_answer(base.answer) if base is not None else "(baseline not run)",
        stts_answer=_answer(r.stts.answer),
        answer_info=answer_markdown(r, view.model_label),
        stage_table=stage_table(r),
        speed_info=speed_markdown(r, view.measured),
        stage_chart=_stage_chart(r),
        details=run_details(r, view.measured),
        scorer=scorer_update(has_learned_scorer, r.scorer_used),
        masks_video=view.masks_video,
        bundle=view.bundle,
        frame_plot=frame_plot(view, 0, r.keep_mask),
        status=f"Done: keep {view.keep_ratio:.2f}, {t} frames, scorer {r.scorer_used}. Every tab shows this run.",
        frame=gr.update(maximum=max(1, t - 1), value=0, interactive=t > 1),
        page=gr.update(maximum=max(2, pages), value=1, visible=pages > 1),
        view=view,
    )


def warm_up_rendering() -> None:
    """Build each chart once so the first slider move does not pay plotly's lazy imports."""
    scores = np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 4)
    keep = np.ones((2, 4), dtype=bool)
    stamps = np.arange(2, dtype=np.float64)
    render.scores_heatmap(scores, keep, stamps).to_json()
    render.kept_bars(keep, stamps).to_json()
    render.stage_chart(["a"], {"run": [1.0]}, "t").to_json()
