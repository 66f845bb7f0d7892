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
from collections.abc import Callable
from typing import Any

import gradio as gr
import torch

from app import media, render
from app.forms import (
    FRAMES_RANGE,
    LIMITS,
    MAX_NEW_TOKENS,
    RunRequest,
    fail,
    limits_text,
    ratio,
    video_path,
    whole_number,
)
from app.models import CACHE, ModelChoices, gpu_seconds, gpu_task, on_zero_gpu
from app.settle import SettleClock
from app.text import STAGE_NAMES, STALE, scorer_update, video_markdown
from app.views import (
    PreviewOutputs,
    RunKey,
    RunOutputs,
    View,
    frame_index,
    frame_plot,
    keep_for,
    make_view,
    measure,
    page_index,
    render_preview,
    render_run,
)
from stts_core.data.video import VideoError, VideoFile, VideoLimits
from stts_core.models.base import VideoBackend
from stts_core.models.loading import ModelLoadError
from stts_core.models.registry import family_of
from stts_core.pipeline import STAGES, RunResult, RunSettings, validate_question
from stts_core.pipeline import run as run_pipeline

PRECISE_PAIRS = 5  # "measure precisely": this many baseline/STTS pairs, medians reported
CLIPS = media.ClipCache()
# Default of the progress parameters: Gradio recognises a gr.Progress default and passes a live
# tracker per event; direct calls (tests, scripts) use this inert one.
NO_PROGRESS = gr.Progress()


def _duration(source: str, video: Any, question: str, settings: RunSettings, limits: VideoLimits,
              pairs: int = 1) -> int:
    return gpu_seconds(settings.stts_frames() + settings.num_frames, pairs, source)


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


class Handlers:
    """The page's events, configured with the model choices and the video limits."""

    def __init__(self, choices: ModelChoices | None = None, limits: VideoLimits = LIMITS) -> None:
        self.choices = choices or ModelChoices()
        self.limits = limits
        self._clock = SettleClock()

    def _key(self, video: Any, model: str, scorer: str, frames: Any, match_budget: bool) -> RunKey | None:
        try:
            return (video_path(video), self.choices.source(model), whole_number(frames, "Frames", *FRAMES_RANGE),
                    str(scorer), bool(match_budget))
        except (gr.Error, ValueError, TypeError):
            return None

    def _clip(self, path: str) -> media.OpenClip:
        try:
            return CLIPS.get(path, self.limits)
        except VideoError as err:
            raise fail(str(err)) from err

    # ---- upload

    def check_video(self, video: Any, frames: Any = None) -> tuple[Any, str]:
        """On upload: read the file's content (not its name) so a bad file is reported at once, and
        convert formats the browser cannot play (GIF, AVI, ...) to H.264 MP4. Returns (video, info)."""
        if not video:
            return gr.skip(), limits_text(self.limits)
        path = video_path(video)
        info = self._clip(path).video.info
        if media.is_playable(info):
            return gr.skip(), video_markdown(info, frames, self.limits, converted=media.converted_from(info) is not None)
        try:
            converted = str(media.convert_to_mp4(path, self.limits))
        except VideoError as err:
            raise fail(str(err)) from err
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
        return (video_path(file) if converted == gr.skip() else converted), info

    def describe(self, video: Any, frames: Any) -> str:
        """The video line again when the frame count changes (says when the clip has fewer frames)."""
        if not video:
            return limits_text(self.limits)
        try:
            return video_markdown(CLIPS.get(video_path(video), self.limits).video.info, frames, self.limits)
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
        path = video_path(video)
        try:
            text = validate_question(question)
            num_frames = whole_number(frames, "Frames", *FRAMES_RANGE)
            settings = RunSettings(keep_ratio=ratio(keep_ratio), scorer=str(scorer or "learned"),
                                   num_frames=num_frames, max_new_tokens=MAX_NEW_TOKENS,
                                   match_budget=bool(match_budget)).validated()
            source = self.choices.source(model if isinstance(model, str) else None)
        except ValueError as err:
            raise fail(str(err)) from err
        self._clip(path)
        return RunRequest(path=path, question=text, source=source, settings=settings, precise=bool(precise))

    def backend_for(self, model: str) -> VideoBackend:
        """The backend for a Model-box value (a listed name, or a hub id / folder where allowed), loaded
        once per process; every problem is a one-sentence gr.Error."""
        try:
            source = self.choices.source(model)
        except ValueError as err:
            raise fail(str(err)) from err
        return self._load(source)

    def _load(self, source: str) -> VideoBackend:
        try:
            return CACHE.get(source, self.choices.builtin_path)
        except ModelLoadError as err:
            others = [s for s in CACHE.sources if s != source]
            hint = (f" The previously loaded model ({self.choices.label(others[-1])}) is still available."
                    if others else "")
            raise fail(f"{self.choices.load_error(source, err)}{hint}") from err

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
            raise fail(str(err)) from err
        except torch.OutOfMemoryError as err:
            raise fail("The GPU ran out of memory for this video; try fewer frames.") from err
        except RuntimeError as err:
            first = str(err).splitlines()[0] if str(err) else repr(err)
            raise fail(f"The model failed on this input: {first}") from err

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
                             measure(results) if pairs > 1 else None, family=family_of(backend).name)
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
            raise fail(message)

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
        return render_preview(view, value, page_index(page), frame_index(frame, view))

    def _touch(self, request: gr.Request | None) -> None:
        self._clock.touch(request)

    def settle(self, request: gr.Request | None = None) -> None:
        """Wait until this session's keep value has rested (`settle.SETTLE_S`)."""
        self._clock.settle(request)

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
        keep = keep_for(view, keep_ratio)
        p = page_index(page)
        return render.draw_masks(view.canvas, keep, p), render.draw_scores(view.canvas, view.result.scores, page=p)

    def scrub(self, frame: Any, keep_ratio: float, view: View | None) -> Any:
        if view is None:
            return gr.skip()
        return frame_plot(view, frame_index(frame, view), keep_for(view, keep_ratio))




