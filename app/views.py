"""What a browser tab keeps of its last run (`View`) and every picture, chart and table drawn from it:
the full run's outputs and the keep slider's instant preview (no model work)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import gradio as gr
import numpy as np
import pandas as pd
import torch

from app import media, render
from app.forms import ratio
from app.reference import at_scale_markdown
from app.text import (
    STAGE_NAMES,
    Measured,
    answer_markdown,
    answer_text,
    flat_scores,
    ms,
    scorer_update,
    selection_markdown,
    speed_markdown,
    stage_table,
    unit_words,
)
from stts_core.data.video import VideoError
from stts_core.methods.budget import select_groups
from stts_core.pipeline import STAGES, RunResult

SCRUB_SIDE = 384  # longest side of the frames the scrubber shows (kept as JPEG)
RunKey = tuple[str, str, int, str, bool]

@dataclass
class View:
    """What one browser tab keeps of its last run: only what the slider, pages and scrubber redraw from."""

    key: RunKey  # (video path, model source, frames, scorer shown, same-budget switch)
    result: RunResult  # frames replaced by an empty array (the canvas and scrub frames are small copies)
    canvas: render.MaskCanvas
    scrub: Sequence[bytes]  # one JPEG per STTS frame, longest side SCRUB_SIDE (a `render.JpegFile` on disk)
    keep_ratio: float
    model_label: str
    masks_video: str | None = None
    bundle: str | None = None
    measured: Measured | None = None
    family: str | None = None  # the model family's name (the Speed tab's recorded reference at scale)

    @property
    def nbytes(self) -> int:
        r = self.result
        arrays = (r.frames, r.scores, r.keep_mask, r.groups, r.timestamps)
        return self.canvas.nbytes + render.held_bytes(self.scrub) + sum(a.nbytes for a in arrays)


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


def page_index(page: Any) -> int:
    try:
        return max(0, int(float(page)) - 1)
    except (TypeError, ValueError, OverflowError):
        return 0


def frame_index(frame: Any, view: View) -> int:
    try:
        t = int(float(frame))
    except (TypeError, ValueError, OverflowError):
        t = 0
    return min(max(t, 0), view.result.keep_mask.shape[0] - 1)


def keep_for(view: View, keep_ratio: Any) -> np.ndarray:
    try:
        value = ratio(keep_ratio)
    except ValueError:
        value = view.keep_ratio
    if abs(value - view.keep_ratio) < 1e-9 or view.result.scores is None:
        return view.result.keep_mask  # a method without scores: its mask only changes when it reruns
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

    shares = [x.cpu_share for r in runs for x in (r.baseline, r.stts) if x is not None and x.cpu_share is not None]
    return Measured(pairs=len(runs), ttft_ms=both("ttft_s"), model_ms=both("model_s"),
                    ttft_speedups=[r.ttft_speedup for r in runs if r.ttft_speedup is not None],
                    model_speedups=[r.model_speedup for r in runs if r.model_speedup is not None],
                    disturbed=sum(r.contended_share is not None for r in runs), lowest_share=min(shares, default=None))


def _jpeg(frame: np.ndarray) -> bytes:
    h, w = frame.shape[:2]
    scale = min(1.0, SCRUB_SIDE / max(h, w))
    small = cv2.resize(frame, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    return render.encode_jpeg(small, 85)


def row_times(result: RunResult) -> np.ndarray:
    """What labels each mask row: its frame's time, or (Qwen-VL's temporal patches) both frames' times."""
    return result.timestamps if result.row_times is None else result.row_times


def make_view(key: RunKey, result: RunResult, keep_ratio: float, model_label: str,
              measured: Measured | None = None, family: str | None = None) -> View:
    """Cache what the slider, pages and scrubber need (their pictures as files in the run's folder), write
    the masks video and the bundle; the decoded frames are dropped (replaced by a real empty array, not
    a view that would keep them alive)."""
    r = result
    folder = media.new_folder()
    # The pictures go to disk in the run's folder: a session keeps their offsets, not their bytes.
    canvas = render.build_canvas(r.frames, row_times(r), r.groups, r.patch_grid, store=folder / "tiles.jpegs")
    scrub = render.JpegFile.write(folder / "scrub.jpegs", (_jpeg(f) for f in r.frames))
    try:
        video = str(media.write_masks_video(folder, r.frames, r.keep_mask, r.groups, r.patch_grid, row_times(r)))
    except VideoError:
        video = None
    slim = dataclasses.replace(r, frames=np.zeros((r.frames.shape[0], 0, 0, 3), dtype=np.uint8))
    details = run_details(slim, measured)
    bundle = str(media.write_bundle(folder, details, Path(video) if video else None, r.keep_mask, r.timestamps))
    return View(key=key, result=slim, canvas=canvas, scrub=scrub, keep_ratio=keep_ratio, model_label=model_label,
                masks_video=video, bundle=bundle, measured=measured, family=family)


def run_details(result: RunResult, measured: Measured | None) -> dict[str, Any]:
    details = result.to_json()
    details["scores_flat"] = flat_scores(result.scores)
    if measured is not None:
        details["measured"] = dataclasses.asdict(measured)
    return details


def frame_plot(view: View, t: int, keep: np.ndarray) -> Any:
    r = view.result
    image = render.decode_jpeg(view.scrub[t])
    return render.frame_figure(image, t, r.scores, keep, r.groups, r.patch_grid, row_times(r)[t])


def render_preview(view: View, keep_ratio: float, page: int = 0, frame: int = 0) -> PreviewOutputs:
    r = view.result
    keep = keep_for(view, keep_ratio)
    return PreviewOutputs(
        masks=render.draw_masks(view.canvas, keep, page),
        masks_info=selection_markdown(r, keep, keep_ratio, preview=True),
        heatmap=render.scores_heatmap(r.scores, keep, row_times(r)),
        kept_bars=render.kept_bars(keep, row_times(r)),
        frame_plot=frame_plot(view, frame, keep),
        status=f"Keep {keep_ratio:.2f}: masks previewed; answers and timings are for keep {view.keep_ratio:.2f} "
               "until the models rerun (when the value rests).",
    )


def _stage_chart(r: RunResult) -> Any:
    runs = {"STTS": [ms(r.stts.timings[s]) for s in STAGES]}
    if r.baseline is not None:
        runs = {"baseline": [ms(r.baseline.timings[s]) for s in STAGES], **runs}
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
        heatmap=render.scores_heatmap(r.scores, r.keep_mask, row_times(r)),
        kept_bars=render.kept_bars(r.keep_mask, row_times(r)),
        baseline_answer=answer_text(base.answer) if base is not None else "(baseline not run)",
        stts_answer=answer_text(r.stts.answer),
        answer_info=answer_markdown(r, view.model_label),
        stage_table=stage_table(r),
        speed_info="\n\n".join(x for x in (speed_markdown(r, view.measured),
                                             at_scale_markdown(r.stts.num_frames, view.keep_ratio, view.family)) if x),
        stage_chart=_stage_chart(r),
        details=run_details(r, view.measured),
        scorer=scorer_update(has_learned_scorer, r.scorer_used),
        masks_video=view.masks_video,
        bundle=view.bundle,
        frame_plot=frame_plot(view, 0, r.keep_mask),
        status=f"Done: keep {view.keep_ratio:.2f}, {t} {unit_words(r)[0]}, scorer {r.scorer_used}. Every tab shows this "
               "run.",
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
