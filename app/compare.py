"""The "Compare methods" tab: one video, one question, one keep ratio, 2-6 methods side by side at the same
visual-token budget. Per method: its keep-mask strip (the same frames at the same scale for every method),
its answer, agreement with the unpruned baseline, time to first token and the tokens through the ViT and
into the LLM. The keep slider redraws every mask at once where the method allows it without the model
(vit-stage methods from their cached scores, visual-stage methods from the cached connector tokens, the
frames method by its rule); an llm-stage method (FastV) chooses inside the LLM, so its mask changes when
the models rerun, which they do once the value rests.

Published as the API endpoint "/compare" (see `CompareHandlers.compare`), e.g.::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    strips, table, chart, summary, details, bundle = client.predict(
        handle_file("clip.mp4"), "what colour is the ball ?", "Built-in STTS-tiny (offline, CPU)",
        ["learned", "evs", "fastv"], 16, 0.5, api_name="/compare")
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from app import media, render
from app.forms import FRAMES_RANGE, KEEP_RANGE, fail, ratio, video_path, whole_number
from app.handlers import CLIPS, NO_PROGRESS, Handlers
from app.models import CACHE, gpu_seconds, gpu_task, on_zero_gpu
from app.settle import SettleClock
from stts_core.data.sampling import uniform_subset
from stts_core.data.video import VideoError, VideoFile, VideoLimits, open_video
from stts_core.methods.budget import kept_group_count, select_groups
from stts_core.methods.frames import frame_keep_mask
from stts_core.methods.registry import get_method, method_names, select_tokens
from stts_core.models.base import VideoBackend
from stts_core.pipeline import RunResult, RunSettings, answers_agree, visual_pass
from stts_core.pipeline import run as run_pipeline
from stts_core.pipeline.request import FrameSource
from stts_core.pipeline.stages import TTFT_STAGES, total

METHODS = method_names()
DEFAULT_METHODS = tuple(m for m in ("learned", "evs", "vidcom2", "fastv") if m in METHODS)
MIN_METHODS, MAX_METHODS = 2, 6
STRIP_FRAMES = 16  # frames shown per strip, in one row (evenly spaced, the same for every method)
STRIP_SIDE = 64  # tile side in pixels
ANSWER_CHARS = 60  # of an answer in the table and summary (whole answers: the JSON and the bundle)
LABEL_H = 22
FEATURE_BYTES = 64 * 1024**2  # cached connector tokens per session at most; past this, visual masks wait for reruns
STATE_TTL_S = 2 * 3600
VISION_STAGES = ("vit_prefix", "scoring", "vit_suffix", "connector")
TABLE_COLUMNS = ("method", "stage", "agrees", "TTFT ms", "vs baseline", "ViT tokens (block 0 / after pruning)",
                 "LLM tokens", "kept", "answer")
NOTHING = "Choose 2 to 6 methods and press **Compare**: each runs once on the video, after one unpruned baseline."

CompareKey = tuple[str, str, int, tuple[str, ...]]


@dataclass
class CompareView:
    """What a tab keeps of its last comparison: what the slider redraws from, and the figures shown."""

    key: CompareKey  # (video path, model source, frames, methods asked for)
    keep_ratio: float
    results: list[RunResult]  # one per method, frames dropped; the first also holds the baseline
    names: list[str]  # the method each result ran (the fallback rule may replace "learned")
    canvas: render.MaskCanvas  # the strip frames
    shown: np.ndarray  # which mask rows the strips show
    features: np.ndarray | None  # (T, G, D) float16 connector tokens, for visual-stage redraws
    frame_rows: bool  # one mask row per frame (the frames method can be redrawn by its rule)
    model_label: str
    bundle: str | None = None


class CompareOutputs(NamedTuple):
    """Outputs in the order of the tab's components (and of the "/compare" API)."""

    strips: np.ndarray
    table: pd.DataFrame
    chart: Any
    summary: str
    details: dict
    bundle: str | None


# ------------------------------------------------------------------------------------------- model work


def _duration(source: str, video: Any, question: str, settings: RunSettings, methods: list[str],
              limits: VideoLimits) -> int:
    return gpu_seconds(settings.num_frames, len(methods) + 1)


@gpu_task(_duration)
def compare_on_device(source: str, video: str | VideoFile, question: str, settings: RunSettings,
                      methods: list[str], limits: VideoLimits) -> tuple[list[RunResult], np.ndarray | None]:
    """The model work of one comparison; the only function that runs on the GPU (spaces.GPU on ZeroGPU,
    where the video arrives as a path and is opened here once, so every run shares one decode)."""
    backend = CACHE.peek(source)
    if backend is None:
        raise ValueError(f"The model '{source}' is not loaded.")
    if isinstance(video, VideoFile):
        return compare_runs(backend, video, question, settings, methods, limits)
    opened = open_video(video, limits)
    try:
        return compare_runs(backend, opened, question, settings, methods, limits)
    finally:
        opened.close()


def compare_runs(backend: VideoBackend, video: VideoFile, question: str, settings: RunSettings, methods: list[str],
                 limits: VideoLimits) -> tuple[list[RunResult], np.ndarray | None]:
    """Baseline once, then each method once on the same decoded frames (each run timed on its own), plus
    the unpruned connector tokens when a visual-stage method is among them (untimed, for the slider)."""
    results = [run_pipeline(backend, video, question, dataclasses.replace(settings, scorer=m, run_baseline=i == 0),
                            limits) for i, m in enumerate(methods)]
    if not any(get_method(r.scorer_used).stage == "visual" for r in results):
        return results, None
    sampled, _ = FrameSource(video, limits).frames(settings.num_frames)
    with torch.no_grad():
        inputs = backend.prepare(sampled.frames, question, sampled.metadata())
        visual = visual_pass(backend, inputs, 1.0, None).visual[:, :backend.llm_hidden_size]
    t, g = inputs.num_frames, int(inputs.groups.shape[0])
    if visual.shape[0] != t * g or visual.numel() * 2 > FEATURE_BYTES:
        return results, None
    return results, visual.reshape(t, g, -1).to(torch.float16).cpu().numpy()


# ------------------------------------------------------------------------------------------- masks and pictures


def masks_at(view: CompareView, keep_ratio: float) -> list[np.ndarray]:
    """Every method's (T, G) mask at `keep_ratio`: recomputed where that needs no model, else the run's own."""
    same = abs(keep_ratio - view.keep_ratio) < 1e-9
    out = []
    for result, name in zip(view.results, view.names, strict=True):
        stage = get_method(name).stage
        if same or stage == "llm":
            out.append(result.keep_mask)
        elif stage == "vit" and result.scores is not None:
            out.append(select_groups(torch.from_numpy(result.scores), keep_ratio).numpy())
        elif stage == "visual" and view.features is not None:
            out.append(select_tokens(name, torch.from_numpy(view.features.astype(np.float32)), keep_ratio).numpy())
        elif stage == "frames" and view.frame_rows:
            out.append(frame_keep_mask(*result.keep_mask.shape, keep_ratio).numpy())
        else:
            out.append(result.keep_mask)
    return out


def _label(width: int, text: str, color: str) -> np.ndarray:
    bar = np.empty((LABEL_H, width, 3), dtype=np.uint8)
    bar[:] = render.BACKGROUND
    rgb = tuple(int(color.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))
    cv2.rectangle(bar, (0, 0), (5, LABEL_H), rgb, -1)
    cv2.putText(bar, text, (10, LABEL_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
    return bar


def draw_strips(view: CompareView, masks: list[np.ndarray], keep_ratio: float) -> np.ndarray:
    """One strip per method, stacked: the same frames at the same scale, pruned groups dimmed."""
    pictures = []
    for name, keep in zip(view.names, masks, strict=True):
        picture = render.draw_masks(view.canvas, keep[view.shown])
        stage = get_method(name).stage
        if _redraws(view, name) or abs(keep_ratio - view.keep_ratio) < 1e-9:
            text = f"{name} ({stage}): {int(keep.sum())} of {keep.size} groups at keep {keep_ratio:.2f}"
        else:
            text = (f"{name} ({stage}): {int(keep.sum())} of {keep.size} groups, still the run at keep "
                    f"{view.keep_ratio:.2f} (chosen inside the model)")
        pictures += [_label(picture.shape[1], text, get_method(name).color), picture,
                     np.full((render.PAD, picture.shape[1], 3), 255, dtype=np.uint8)]
    return np.concatenate(pictures[:-1], axis=0)


def _redraws(view: CompareView, name: str) -> bool:
    stage = get_method(name).stage
    return (stage == "vit" or (stage == "visual" and view.features is not None)
            or (stage == "frames" and view.frame_rows))


def _ttft(run: Any) -> float:
    return total(run.timings, TTFT_STAGES)


def _short(answer: str | None) -> str:
    text = (answer or "").strip() or "(no answer)"
    return text if len(text) <= ANSWER_CHARS else text[:ANSWER_CHARS - 3] + "..."


def method_table(view: CompareView, whole_answers: bool = False) -> pd.DataFrame:
    """The baseline and one line per method (the runs' own figures, at the keep ratio they ran at); answers
    shortened for the page unless `whole_answers`."""
    base = view.results[0].baseline
    assert base is not None
    short = (lambda a: a or "") if whole_answers else _short
    rows = [["baseline", "-", "-", round(1e3 * _ttft(base), 1), "1.00x", f"{base.vit_tokens} / {base.vit_suffix_tokens}",
             base.visual_tokens, "all", short(base.answer)]]
    for result, name in zip(view.results, view.names, strict=True):
        run = result.stts
        rows.append([name, get_method(name).stage, "yes" if answers_agree(base.answer, run.answer) else "no",
                     round(1e3 * _ttft(run), 1), f"{_ttft(base) / max(_ttft(run), 1e-12):.2f}x",
                     f"{run.vit_tokens} / {run.vit_suffix_tokens}", run.visual_tokens,
                     f"{int(result.keep_mask.sum())} / {result.keep_mask.size}", short(run.answer)])
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def speed_chart(view: CompareView) -> go.Figure:
    """TTFT per run, split into the vision side (ViT, scoring, connector) and the LLM prefill."""
    base = view.results[0].baseline
    runs = [("baseline", base, render.BASELINE_COLOR)] + [
        (n, r.stts, get_method(n).color) for r, n in zip(view.results, view.names, strict=True)]
    names = [n for n, _, _ in runs]
    fig = go.Figure()
    fig.add_bar(x=names, y=[1e3 * total(r.timings, VISION_STAGES) for _, r, _ in runs], name="vision side (ViT)",
                marker_color=[c for _, _, c in runs])
    fig.add_bar(x=names, y=[1e3 * r.timings.get("llm_prefill", 0.0) for _, r, _ in runs], name="LLM prefill",
                marker_color="#b0bec5")
    fig.update_layout(barmode="stack", title="Time to first token per method (ms): vision side + LLM prefill",
                      height=340, margin={"l": 50, "r": 20, "t": 50, "b": 40}, template="plotly_white",
                      yaxis_title="ms", legend={"orientation": "h", "y": -0.2})
    return fig


def summary_markdown(view: CompareView, keep_ratio: float, preview: bool) -> str:
    first = view.results[0]
    base = first.baseline
    t, g = first.keep_mask.shape
    waits = [n for n in view.names if not _redraws(view, n)]
    lines = [f"**Keep {keep_ratio:.2f}**, {t} {first.frame_unit}s x {g} groups: every method gives the LLM "
             f"{kept_group_count(t, g, keep_ratio)} of {t * g} visual tokens (FastV: after its pruning layer; "
             "frames: round(keep x T) whole frames). Only a vit-stage method also saves inside the ViT: compare "
             "the ViT-token column and the chart.", f"Model: {view.model_label}. Baseline answer: "
             f"**{_short(base.answer if base else '')}**."]
    fallback = [f"{asked} ran as {used}" for asked, used in zip(view.key[3], view.names, strict=True) if asked != used]
    if fallback:
        lines.append("Fallback: " + ", ".join(fallback) + " (the model has no trained scorer weights).")
    if first.warmup:
        lines.append("**Warm-up**: this is the first run after the model loaded, so the first runs pay one-off costs; "
                     "press **Compare** again for steady-state timings.")
    if preview:
        lines.append(f"*Masks previewed at keep {keep_ratio:.2f}; answers, timings and "
                     f"{', '.join(waits) or 'every mask'} follow when the models rerun (when the value rests).*")
    elif waits:
        lines.append(f"The slider redraws every mask at once except {', '.join(waits)} (chosen inside the model).")
    return "\n\n".join(lines)


def details_json(view: CompareView) -> dict[str, Any]:
    out: dict[str, Any] = {"keep_ratio": view.keep_ratio, "model": view.model_label, "methods": []}
    for i, (result, name) in enumerate(zip(view.results, view.names, strict=True)):
        data = result.to_json()
        if i:
            data.pop("baseline", None)
        out["methods"].append({"method": name, "stage": get_method(name).stage, **data})
    out["baseline"] = view.results[0].baseline.to_json() if view.results[0].baseline is not None else None
    return out


def write_compare_bundle(view: CompareView, strips: np.ndarray) -> str:
    """compare.zip: compare.json (every run), methods.csv (the table) and strips.png (the masks)."""
    folder = media.new_folder()
    out = folder / "stts_compare.zip"
    ok, png = cv2.imencode(".png", np.ascontiguousarray(strips[..., ::-1]))
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("compare.json", json.dumps(details_json(view), indent=1))
        buf = io.StringIO()
        method_table(view, whole_answers=True).to_csv(buf, index=False)
        zf.writestr("methods.csv", buf.getvalue())
        if ok:
            zf.writestr("strips.png", png.tobytes())
    return str(out)


def render_compare(view: CompareView) -> CompareOutputs:
    strips = draw_strips(view, [r.keep_mask for r in view.results], view.keep_ratio)
    view.bundle = write_compare_bundle(view, strips)
    return CompareOutputs(strips=strips, table=method_table(view), chart=speed_chart(view),
                          summary=summary_markdown(view, view.keep_ratio, preview=False), details=details_json(view),
                          bundle=view.bundle)


def make_compare_view(key: CompareKey, results: list[RunResult], features: np.ndarray | None, keep_ratio: float,
                      model_label: str) -> CompareView:
    first = results[0]
    shown = uniform_subset(first.keep_mask.shape[0], min(STRIP_FRAMES, first.keep_mask.shape[0]))
    canvas = render.build_canvas(first.frames[shown], first.timestamps[shown], first.groups, first.patch_grid,
                                 side=STRIP_SIDE, page_frames=len(shown))
    canvas.cols = len(shown)  # one row per method
    slim = [dataclasses.replace(r, frames=np.zeros((r.keep_mask.shape[0], 0, 0, 3), dtype=np.uint8)) for r in results]
    return CompareView(key=key, keep_ratio=keep_ratio, results=slim, names=[r.scorer_used for r in results],
                       canvas=canvas, shown=shown, features=features, frame_rows=first.frame_unit == "frame",
                       model_label=model_label)


# ------------------------------------------------------------------------------------------- events


class CompareHandlers:
    """The tab's events; they reuse the page's checks, model cache and clip cache (`app.handlers`)."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers
        self._clock = SettleClock()

    @staticmethod
    def methods(value: Any) -> list[str]:
        """The chosen methods, checked: 2-6 distinct registered names, in the registry's order."""
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list | tuple):
            raise fail(f"Choose {MIN_METHODS} to {MAX_METHODS} methods to compare.")
        names = list(dict.fromkeys(str(v) for v in values))
        unknown = [n for n in names if n not in METHODS]
        if unknown:
            raise fail(f"Unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
        if not MIN_METHODS <= len(names) <= MAX_METHODS:
            raise fail(f"Choose {MIN_METHODS} to {MAX_METHODS} methods to compare (got {len(names)}).")
        return [m for m in METHODS if m in names]  # the registry's order, whatever order they were ticked in

    def _key(self, video: Any, model: Any, methods: Any, frames: Any) -> CompareKey | None:
        try:
            return (video_path(video), self.handlers.choices.source(model),
                    whole_number(frames, "Frames", *FRAMES_RANGE), tuple(self.methods(methods)))
        except (gr.Error, ValueError, TypeError):
            return None

    def _infer(self, source: str, path: str, question: str, settings: RunSettings, names: list[str]
               ) -> tuple[list[RunResult], np.ndarray | None]:
        limits = self.handlers.limits
        try:
            clip = CLIPS.get(path, limits)
            with clip.lock:
                try:
                    video: str | VideoFile = path if on_zero_gpu() else clip.video
                    return compare_on_device(source, video, question, settings, names, limits)
                finally:
                    clip.video.forget_samples()
        except (VideoError, ValueError) as err:
            raise fail(str(err)) from err
        except torch.OutOfMemoryError as err:
            raise fail("The GPU ran out of memory for this video; try fewer frames or fewer methods.") from err
        except RuntimeError as err:
            raise fail(f"The model failed on this input: {(str(err).splitlines() or [repr(err)])[0]}") from err

    def _compare(self, video: Any, question: Any, model: Any, methods: Any, frames: Any, keep_ratio: Any,
                 progress: gr.Progress = NO_PROGRESS) -> tuple[CompareOutputs, CompareView]:
        names = self.methods(methods)
        req = self.handlers.check(video, question, model, names[0], frames, keep_ratio, False)
        progress(0.05, desc="Loading the model")
        backend = self.handlers.backend_for(model)
        for name in names:
            if get_method(name).stage == "llm" and "llm_prune" not in backend.capabilities:
                raise fail(f"The {backend.name} model family cannot prune inside its LLM, so {name!r} is not "
                           "available for it; choose other methods.")
        progress(0.2, desc=f"Baseline, then {len(names)} methods on the same frames")
        results, features = self._infer(req.source, req.path, req.question, req.settings, names)
        key: CompareKey = (req.path, req.source, req.settings.num_frames, tuple(names))
        view = make_compare_view(key, results, features, req.settings.keep_ratio, self.handlers.choices.label(req.source))
        del results
        media.release_memory()
        progress(0.9, desc="Drawing")
        return render_compare(view), view

    def compare(self, video: Any, question: str, model: str, methods: list[str], frames: float, keep_ratio: float,
                progress: gr.Progress = NO_PROGRESS) -> CompareOutputs:
        """Run the unpruned baseline and each chosen method on the video and question at one keep ratio.

        API "/compare" inputs: video file, question, model (a listed name), methods (2-6 of the registered
        ones), frames (whole number 4-256), keep ratio (0.05-1). Outputs: the stacked keep-mask strips (PNG),
        the per-method table (answer, agreement, TTFT, tokens through the ViT and into the LLM), the TTFT
        chart, a summary, every run as JSON, and the download bundle (zip)."""
        return self._compare(video, question, model, methods, frames, keep_ratio, progress)[0]

    def compare_ui(self, video: Any, question: Any, model: Any, methods: Any, frames: Any, keep_ratio: Any,
                   progress: gr.Progress = NO_PROGRESS) -> tuple:
        """The tab's Compare: a failure is a toast and the status line; the last comparison stays."""
        try:
            outputs, view = self._compare(video, question, model, methods, frames, keep_ratio, progress)
        except gr.Error as err:
            gr.Warning(err.message)
            return (*[gr.skip()] * len(CompareOutputs._fields), gr.skip(), f"⚠️ {err.message}")
        return (*outputs, view, f"Done: keep {view.keep_ratio:.2f}, {len(view.names)} methods after one baseline.")

    # ---- keep slider

    def preview(self, keep_ratio: Any, view: CompareView | None, video: Any, model: Any, methods: Any, frames: Any,
                request: gr.Request | None = None) -> tuple[Any, Any, Any]:
        """Any keep change: every mask that needs no model is redrawn at once (strips, summary, status)."""
        self._touch(request)
        skip = gr.skip()
        if view is None:
            return skip, skip, skip
        if self._key(video, model, methods, frames) != view.key:
            return skip, skip, ("The video, model, frame count or methods changed since the last comparison: "
                                "press **Compare**.")
        try:
            value = ratio(keep_ratio)
        except ValueError as err:
            return skip, skip, f"⚠️ {err}"
        strips = draw_strips(view, masks_at(view, value), value)
        return (strips, summary_markdown(view, value, preview=True),
                f"Keep {value:.2f}: masks previewed; the models rerun when the value rests.")

    def _touch(self, request: gr.Request | None) -> None:
        self._clock.touch(request)

    def settle(self, request: gr.Request | None = None) -> None:
        """Wait until this session's keep value has rested (`settle.SETTLE_S`)."""
        self._clock.settle(request)

    def rerun(self, video: Any, question: Any, model: Any, methods: Any, frames: Any, keep_ratio: Any,
              view: CompareView | None = None, progress: gr.Progress = NO_PROGRESS) -> tuple:
        """Keep value settled: compare again at it, when only the keep ratio changed since the last comparison."""
        try:
            wanted = (view is not None and self._key(video, model, methods, frames) == view.key
                      and abs(view.keep_ratio - ratio(keep_ratio)) >= 1e-9)
        except ValueError:
            wanted = False
        if not wanted:
            return tuple(gr.skip() for _ in range(len(CompareOutputs._fields) + 2))
        return self.compare_ui(video, question, model, methods, frames, keep_ratio, progress)


# ------------------------------------------------------------------------------------------- layout


class CompareTab(NamedTuple):
    tab: gr.Tab
    methods: gr.CheckboxGroup
    keep: gr.Slider
    run_button: gr.Button
    status: gr.Markdown
    strips: gr.Image
    table: gr.Dataframe
    chart: gr.Plot
    summary: gr.Markdown
    details: gr.JSON
    bundle: gr.File
    state: gr.State

    @property
    def outputs(self) -> list[Any]:
        """The components of `CompareOutputs`, in its order."""
        return [self.strips, self.table, self.chart, self.summary, self.details, self.bundle]


def build_compare_tab(keep_default: float = 0.5) -> CompareTab:
    """The tab, created inside the caller's gr.Tabs; video, question, model and frames come from the page."""
    info = "; ".join(f"{m}: {get_method(m).stage}" for m in METHODS)
    with gr.Tab("Compare methods", id="compare", elem_id="compare-tab") as tab:
        gr.Markdown("The video, question, model and frame count on the left, every chosen method at the same "
                    "keep ratio: the same number of visual tokens reaches the LLM for each. The masks follow the "
                    "slider at once where the method allows it; answers and timings follow when the value rests.")
        methods = gr.CheckboxGroup(list(METHODS), value=list(DEFAULT_METHODS), elem_id="compare-methods",
                                   label=f"Methods ({MIN_METHODS}-{MAX_METHODS})", info=f"Stages: {info}.")
        keep = gr.Slider(*KEEP_RANGE, value=keep_default, step=0.01, elem_id="compare-keep",
                         label="Keep ratio (the same budget for every method)")
        run_button = gr.Button("Compare", variant="primary", elem_id="compare-run")
        status = gr.Markdown(NOTHING, elem_id="compare-status")
        gr.Markdown("**Keep masks**, one strip per method: the same frames at the same scale; pruned groups "
                    "dimmed, kept groups outlined.")
        strips = gr.Image(label="Keep masks per method", show_label=False, format="png", interactive=False,
                          elem_id="compare-strips", buttons=["download", "fullscreen"])
        summary = gr.Markdown(elem_id="compare-summary")
        table = gr.Dataframe(headers=list(TABLE_COLUMNS), interactive=False, elem_id="compare-table", wrap=True,
                             label="Per method: agrees = same answer as the unpruned baseline; TTFT = model-side "
                                   "time to first token; LLM tokens = visual tokens the LLM works on (FastV: after "
                                   "its pruning layer)")
        chart = gr.Plot(label="Time to first token per method", elem_id="compare-chart")
        bundle = gr.File(label="compare.json, methods.csv and strips.png (zip)", interactive=False,
                         elem_id="compare-bundle")
        with gr.Accordion("Every run (JSON)", open=False):
            details = gr.JSON(elem_id="compare-details")
        state = gr.State(None, time_to_live=STATE_TTL_S)
    return CompareTab(tab, methods, keep, run_button, status, strips, table, chart, summary, details, bundle, state)


def wire_compare(handlers: Handlers, p: Any, tab: CompareTab) -> CompareHandlers:
    """The tab's events; `p` holds the page's video, question, model box and frames slider."""
    ch = CompareHandlers(handlers)
    private = {"api_visibility": "private"}
    inputs = [p.video, p.question, p.model_box, tab.methods, p.frames, tab.keep]
    ui_outputs = [*tab.outputs, tab.state, tab.status]
    locked = tab.run_button.click(lambda: gr.update(interactive=False), None, tab.run_button, queue=False, **private)
    ran = locked.then(ch.compare_ui, inputs, ui_outputs, concurrency_id="model", show_progress_on=[tab.status],
                      **private)
    ran.then(lambda: gr.update(interactive=True), None, tab.run_button, queue=False, **private)
    api_trigger = gr.Button(visible=False, elem_id="api-compare")
    api_trigger.click(ch.compare, inputs, tab.outputs, api_name="compare", concurrency_id="model")
    moved = tab.keep.change(ch.preview, [tab.keep, tab.state, p.video, p.model_box, tab.methods, p.frames],
                            [tab.strips, tab.summary, tab.status], trigger_mode="always_last", show_progress="hidden",
                            concurrency_id="preview", concurrency_limit=4, **private)
    rested = moved.then(ch.settle, None, None, show_progress="hidden", concurrency_limit=None, **private)
    rested.then(ch.rerun, [*inputs, tab.state], ui_outputs, concurrency_id="model", show_progress_on=[tab.status],
                **private)
    return ch
