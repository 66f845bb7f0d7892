"""Event functions of the page: check the input, call stts_core, render what it returned.

They are plain methods so tests and scripts can call them without a browser. Every problem a user
can cause ends as `gr.Error` with a sentence; the app itself keeps serving.

The main event is published as the API endpoint "/run" (see `Handlers.run`), e.g.::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    out = client.predict(handle_file("clip.mp4"), "what colour is the ball ?", "Built-in STTS-tiny (offline, CPU)",
                         "learned", 16, 0.5, False, api_name="/run")
    baseline_answer, stts_answer, details = out[5], out[6], out[11]   # details: RunResult.to_json()
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import gradio as gr
import numpy as np
import pandas as pd
import torch

from app import render
from app.models import BUILTIN_LABEL, CACHE, ModelChoices, gpu_task
from stts_core.backends.molmo2 import ModelLoadError
from stts_core.pipeline import STAGES, RunResult, RunSettings
from stts_core.pipeline import run as run_pipeline
from stts_core.selection import select_groups
from stts_core.video import VideoError, VideoLimits, probe_video

LIMITS = VideoLimits(max_bytes=200 * 1024**2, max_duration_s=10 * 60)
VIDEO_TYPES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
MAX_NEW_TOKENS = 32
SCORERS = ("learned", "heuristic", "random")
SCORER_INFO = ("learned: the trained STTS scorer; heuristic: 1 - cosine similarity to the previous frame "
               "(training-free); random: the same budget spent on random groups.")
NO_SCORER_INFO = ("This model has no trained STTS scorer weights, so 'learned' is not offered; "
                  "heuristic is the training-free scorer (1 - cosine similarity to the previous frame).")
STALE = ("The video, model, frame count or scorer changed since the last run, so the cached scores no longer "
         "apply: press **Run** to score again.")
BUILTIN_NOTE = ("The built-in model only knows its synthetic world (coloured shapes on a textured background) and "
                "is not yet accurate even there (see assets/stts-tiny/README.md): it shows the pipeline, masks and "
                "timings; real videos want Molmo2-4B.")
STAGE_NAMES = {
    "decode_video": "decode video", "preprocess": "preprocess", "vit_prefix": "ViT blocks 0..k",
    "scoring": "scoring + selection", "vit_suffix": "ViT blocks k+1.. (packed)", "connector": "connector",
    "llm_prefill": "LLM prefill", "decoding": "decoding",
}


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
class View:
    """One browser tab's last run: the settings it was computed for and what the slider redraws from."""

    key: RunKey  # (video path, model source, frames, scorer shown, same-budget switch)
    result: RunResult  # frames dropped (the canvas holds the small copies)
    canvas: render.MaskCanvas
    keep_ratio: float
    model_label: str


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
    view: View


class PreviewOutputs(NamedTuple):
    """What the keep-ratio slider redraws while it moves, from cached scores only."""

    masks: Any
    masks_info: Any
    heatmap: Any
    kept_bars: Any


@gpu_task
def run_on_device(source: str, video_path: str, question: str, settings: RunSettings,
                  limits: VideoLimits) -> RunResult:
    """The model work of one request; the only function that runs on the GPU (spaces.GPU on ZeroGPU).

    Takes plain values and finds the model in the process cache, so nothing large crosses into
    the GPU worker.
    """
    backend = CACHE.peek(source)
    if backend is None:
        raise ModelLoadError(f"The model '{source}' is not loaded.")
    return run_pipeline(backend, video_path, question, settings, limits)


def scorer_update(has_learned: bool, value: str | None) -> dict[str, Any]:
    """Radio update: 'learned' is only offered by models that have trained scorer weights."""
    if has_learned:
        return gr.update(choices=list(SCORERS), value=value if value in SCORERS else "learned", info=SCORER_INFO)
    rest = [s for s in SCORERS if s != "learned"]
    return gr.update(choices=rest, value=value if value in rest else "heuristic", info=NO_SCORER_INFO)


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 1)


def _speedup(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.2f}x" + (" (slower)" if x < 1 else "")


def stage_table(result: RunResult) -> pd.DataFrame:
    """Measured milliseconds per stage for both runs, then time to first token and end to end."""
    base = result.baseline
    rows = [[STAGE_NAMES.get(s, s), _ms(base.timings[s]) if base else None, _ms(result.stts.timings[s])]
            for s in STAGES]
    rows.append(["time to first token", _ms(base.ttft_s) if base else None, _ms(result.stts.ttft_s)])
    rows.append(["end to end", _ms(base.total_s) if base else None, _ms(result.stts.total_s)])
    return pd.DataFrame(rows, columns=["stage", "baseline (ms)", "STTS (ms)"])


def _memory(gb: float | None) -> str:
    return "not tracked on CPU" if gb is None else f"{gb:.2f} GB"


def speed_markdown(result: RunResult) -> str:
    base, stts = result.baseline, result.stts
    lines = []
    if base is not None:
        lines.append(f"**End to end: {_speedup(result.e2e_speedup)}** ({_ms(base.total_s):.0f} ms -> "
                     f"{_ms(stts.total_s):.0f} ms) &nbsp;|&nbsp; **time to first token: "
                     f"{_speedup(result.ttft_speedup)}** ({_ms(base.ttft_s):.0f} ms -> {_ms(stts.ttft_s):.0f} ms)")
        if base.peak_mem_gb is None and stts.peak_mem_gb is None:
            lines.append("Peak memory: not tracked on CPU")
        else:
            lines.append(f"Peak GPU memory: {_memory(base.peak_mem_gb)} -> {_memory(stts.peak_mem_gb)}")
    else:
        lines.append(f"STTS: {_ms(stts.total_s):.0f} ms end to end (no baseline run)")
    lines.append(f"Device: {result.device} &nbsp;|&nbsp; ViT tokens after pruning per block: "
                 f"{base.vit_suffix_tokens if base else '-'} -> {stts.vit_suffix_tokens}")
    if result.warmup:
        lines.append("**Warm-up run**: the first run after a model loads pays one-off costs; "
                     "run again for steady-state timings.")
    lines.append("Times are measured stage by stage during this run, not estimated.")
    return "\n\n".join(lines)


def selection_markdown(result: RunResult, keep: np.ndarray, keep_ratio: float, preview: bool) -> str:
    t, g = keep.shape
    kept = int(keep.sum())
    base_tokens = result.baseline.visual_tokens if result.baseline is not None else t * g
    text = (f"**Keep {keep_ratio:.2f}**: {kept} of {t * g} groups kept over {t} frames "
            f"(visual tokens {base_tokens} -> {kept}); frame 0 is always kept whole. Pruned groups are dimmed, "
            "kept groups outlined.")
    if preview:
        text += " *Preview from the cached scores: release the slider to rerun both models.*"
        if result.settings.match_budget:
            text += " *With the same-budget switch on, the rerun samples round(frames / keep) frames.*"
    return text


def answer_markdown(result: RunResult, model_label: str) -> str:
    head = {True: "### ✅ Same answer", False: "### ⚠️ Answers differ",
            None: "### STTS answer only (no baseline run)"}[result.agree]
    base_tokens = result.baseline.visual_tokens if result.baseline is not None else "-"
    text = (f"{head}\n\nVisual tokens: **{base_tokens} -> {result.stts.visual_tokens}** &nbsp;|&nbsp; "
            f"STTS frames: {result.stts.num_frames} &nbsp;|&nbsp; scorer used: **{result.scorer_used}** "
            f"&nbsp;|&nbsp; model: {model_label}")
    notes = list(result.notes) + ([BUILTIN_NOTE] if model_label == BUILTIN_LABEL else [])
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return text


def _answer(text: str) -> str:
    return text if text.strip() else "(empty answer)"


def _video_path(video: Any) -> str:
    """The file path of a gr.Video value (a path, or a FileData-like dict from an API call)."""
    if isinstance(video, dict):
        video = video.get("path") or (video.get("video") or {}).get("path")
    if not video:
        raise gr.Error("Please upload a video (or click one of the examples) first.", print_exception=False)
    return str(video)


def _fail(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


class Handlers:
    """The page's events, configured with the model choices and the video limits."""

    def __init__(self, choices: ModelChoices | None = None, limits: VideoLimits = LIMITS) -> None:
        self.choices = choices or ModelChoices()
        self.limits = limits

    def _key(self, video: Any, model: str, scorer: str, frames: float, match_budget: bool) -> RunKey | None:
        try:
            return (_video_path(video), self.choices.source(model), int(frames), str(scorer), bool(match_budget))
        except (gr.Error, ValueError, TypeError):
            return None

    def check_video(self, video: Any) -> str:
        """On upload: read the file's content (not its name) so a bad file is reported at once."""
        if not video:
            return limits_text(self.limits)
        try:
            info = probe_video(_video_path(video), self.limits)
        except VideoError as err:
            raise _fail(str(err)) from err
        return (f"{info['duration']:.1f} s, {info['fps']:.3g} fps, {info['width']}x{info['height']}, "
                f"{info['codec']}. {limits_text(self.limits)}")

    def model_changed(self, model: str, scorer: str) -> dict[str, Any]:
        """Offer 'learned' only if the chosen model, when already loaded, has scorer weights."""
        try:
            backend = CACHE.peek(self.choices.source(model))
        except ValueError:
            return gr.update()
        return scorer_update(True if backend is None else backend.has_learned_scorer, scorer)

    def _load(self, source: str) -> Any:
        try:
            return CACHE.get(source, self.choices.builtin_path)
        except ModelLoadError as err:
            others = [s for s in CACHE.sources if s != source]
            hint = (f" The previously loaded model ({self.choices.label(others[-1])}) is still available."
                    if others else "")
            raise _fail(f"{err}{hint}") from err

    def run(self, video: Any, question: str, model: str, scorer: str, frames: float, keep_ratio: float,
            match_budget: bool, progress: gr.Progress = NO_PROGRESS) -> RunOutputs:
        """Run the unpruned baseline and STTS on the video and question; return every view of the result.

        API "/run" inputs: video file, question, model (a listed name, hub id or local path), scorer
        (learned / heuristic / random), frames (4-256), keep ratio (0.05-1), same-token-budget switch.
        Outputs: keep-mask grid image, selection summary, score-tinted grid, score heatmap, kept-per-frame
        bars, baseline answer, STTS answer, answer summary, stage table (ms), speed summary, stage chart,
        the full result as JSON (RunResult.to_json()), and the scorer actually offered.
        """
        path = _video_path(video)
        if not isinstance(question, str) or not question.strip():
            raise _fail("Please type a question about the video.")
        try:
            settings = RunSettings(keep_ratio=float(keep_ratio), scorer=str(scorer or "learned"),
                                   num_frames=int(frames), max_new_tokens=MAX_NEW_TOKENS,
                                   match_budget=bool(match_budget)).validated()
            progress(0.05, desc="Checking the video")
            probe_video(path, self.limits)
            source = self.choices.source(model)
        except (VideoError, ValueError, TypeError) as err:
            raise _fail(str(err)) from err
        if CACHE.peek(source) is None:
            progress(0.1, desc=f"Loading {self.choices.label(source)} (once per process)")
        backend = self._load(source)
        progress(0.3, desc="Running the baseline and STTS")
        try:
            result = run_on_device(source, path, question, settings, self.limits)
        except (VideoError, ValueError) as err:
            raise _fail(str(err)) from err
        except torch.OutOfMemoryError as err:
            raise _fail("The GPU ran out of memory for this video; try fewer frames.") from err
        except RuntimeError as err:
            raise _fail(f"The model failed on this input: {str(err).splitlines()[0] if str(err) else err!r}") from err
        progress(0.9, desc="Drawing")
        key: RunKey = (path, source, int(frames), result.scorer_used, bool(match_budget))
        new_view = make_view(key, result, float(keep_ratio), self.choices.label(source))
        return render_run(new_view, backend.has_learned_scorer)

    def preview(self, keep_ratio: float, view: View | None, video: Any, model: str, scorer: str, frames: float,
                match_budget: bool) -> PreviewOutputs:
        """Slider move: redo only the selection from the cached scores and redraw (no model work)."""
        if view is None:
            return PreviewOutputs(gr.skip(), gr.skip(), gr.skip(), gr.skip())
        if self._key(video, model, scorer, frames, match_budget) != view.key:
            return PreviewOutputs(gr.skip(), STALE, gr.skip(), gr.skip())
        return render_preview(view, float(keep_ratio))

    def rerun(self, video: Any, question: str, model: str, scorer: str, frames: float, keep_ratio: float,
              match_budget: bool, view: View | None = None, progress: gr.Progress = NO_PROGRESS) -> RunOutputs | tuple:
        """Slider release: rerun both models at the new ratio, if there was a run and anything changed."""
        unchanged = (view is not None and self._key(video, model, scorer, frames, match_budget) == view.key
                     and abs(view.keep_ratio - float(keep_ratio)) < 1e-9)
        if view is None or unchanged:
            return tuple(gr.skip() for _ in RunOutputs._fields)
        return self.run(video, question, model, scorer, frames, keep_ratio, match_budget, progress)


def make_view(key: RunKey, result: RunResult, keep_ratio: float, model_label: str) -> View:
    """Cache what the slider needs; the full-size frames are not kept (the canvas has small copies)."""
    canvas = render.build_canvas(result.frames, result.timestamps, result.groups, result.patch_grid)
    slim = dataclasses.replace(result, frames=result.frames[:, :0, :0])
    return View(key=key, result=slim, canvas=canvas, keep_ratio=keep_ratio, model_label=model_label)


def render_preview(view: View, keep_ratio: float) -> PreviewOutputs:
    r = view.result
    keep = select_groups(torch.from_numpy(r.scores), keep_ratio).numpy()
    return PreviewOutputs(
        masks=render.draw_masks(view.canvas, keep),
        masks_info=selection_markdown(r, keep, keep_ratio, preview=True),
        heatmap=render.scores_heatmap(r.scores, keep, r.timestamps),
        kept_bars=render.kept_bars(keep, r.timestamps),
    )


def render_run(view: View, has_learned_scorer: bool) -> RunOutputs:
    r = view.result
    base = r.baseline
    return RunOutputs(
        masks=render.draw_masks(view.canvas, r.keep),
        masks_info=selection_markdown(r, r.keep, view.keep_ratio, preview=False),
        scores_image=render.draw_scores(view.canvas, r.scores),
        heatmap=render.scores_heatmap(r.scores, r.keep, r.timestamps),
        kept_bars=render.kept_bars(r.keep, r.timestamps),
        baseline_answer=_answer(base.answer) if base is not None else "(baseline not run)",
        stts_answer=_answer(r.stts.answer),
        answer_info=answer_markdown(r, view.model_label),
        stage_table=stage_table(r),
        speed_info=speed_markdown(r),
        stage_chart=render.stage_chart([STAGE_NAMES.get(s, s) for s in STAGES],
                                       [_ms(base.timings[s]) for s in STAGES] if base is not None else None,
                                       [_ms(r.stts.timings[s]) for s in STAGES], r.warmup),
        details=r.to_json(),
        scorer=scorer_update(has_learned_scorer, r.scorer_used),
        view=view,
    )


def warm_up_rendering() -> None:
    """Build each chart once so the first slider move does not pay plotly's lazy imports."""
    scores = np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 4)
    keep = np.ones((2, 4), dtype=bool)
    stamps = np.arange(2, dtype=np.float64)
    render.scores_heatmap(scores, keep, stamps).to_json()
    render.kept_bars(keep, stamps).to_json()
    render.stage_chart(["a"], [1.0], [1.0], False).to_json()
