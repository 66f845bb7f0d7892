"""The Batch analysis tab's layout and wiring (its logic: `app.batch`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr

from app.batch import (
    BATCH_CONCURRENCY,
    BATCH_FRAMES,
    DEFAULT_COUNT,
    DEFAULT_KEEPS,
    FAILED_COLUMNS,
    FLIP_COLUMNS,
    KEEP_CHOICES,
    MAX_EXAMPLES_PER_REQUEST,
    NO_PROGRESS,
    NOTHING,
    PUBLIC_MAX_FRAMES,
    SCORERS,
    STATE_TTL_S,
    SYNTHETIC,
    TABLE_TYPES,
    UPLOAD,
    BatchOutputs,
    BatchResult,
    GetBackend,
    forget,
    run_batch,
    show_flip,
)
from app.batch_local import BENCHMARK, spec_help
from app.forms import MAX_NEW_TOKENS, VIDEO_TYPES


class BatchTab(NamedTuple):
    """The tab's components the page may wire further (`flip_table` and `state` for `open_flip`)."""

    tab: gr.Tab
    source: gr.Radio
    count: gr.Slider
    files: gr.File
    scorers: gr.CheckboxGroup
    keeps: gr.CheckboxGroup
    frames: gr.Slider
    run_button: gr.Button
    status: gr.Markdown
    accuracy_plot: gr.Plot
    agreement_plot: gr.Plot
    type_plot: gr.Plot
    flip_table: gr.Dataframe
    preview: gr.Image
    preview_info: gr.Markdown
    failed_table: gr.Dataframe
    bundle: gr.File
    benchmark_table: gr.Dataframe
    state: gr.State
    run_event: Any  # the queued batch step (gradio Dependency); chain `.then(...)` on it
    benchmark: gr.Textbox  # the local benchmark folder source: specs (mvbench:/path ...) ...
    subset: gr.Textbox  # ... and the subset to keep


def benchmark_visibility(source: str) -> Any:
    """Show the benchmark folder inputs when that source is chosen."""
    return gr.update(visible=source == BENCHMARK)


def source_visibility(source: str) -> tuple[Any, Any]:
    """Show the question count (synthetic set; a benchmark's cap) or the uploader, whichever the data needs."""
    return gr.update(visible=source in (SYNTHETIC, BENCHMARK)), gr.update(visible=source == UPLOAD)


def _benchmark_inputs() -> tuple[gr.Row, gr.Textbox, gr.Textbox]:
    """The local benchmark folder source's inputs, in a row the source choice shows and hides."""
    with gr.Row(visible=False) as row:
        spec = gr.Textbox(label="Benchmark folders", info=spec_help(), placeholder="mvbench:/data/MVBench",
                          lines=2, scale=3, elem_id="batch-benchmark")
        subset = gr.Textbox(label="Subset (optional)", info="Comma-separated tasks, splits or duration classes.",
                            scale=2, elem_id="batch-subset")
    return row, spec, subset


def _data_inputs(public: bool, allow_folders: bool = False) -> tuple[Any, ...]:
    """source, count, files, the benchmark row, spec and subset, scorers, keeps, frames."""
    sources = [SYNTHETIC, UPLOAD, *([BENCHMARK] if allow_folders else [])]
    source = gr.Radio(sources, value=SYNTHETIC, label="Data", elem_id="batch-source")
    count = gr.Slider(1, MAX_EXAMPLES_PER_REQUEST, value=DEFAULT_COUNT, step=1, elem_id="batch-count",
                      label=f"Questions: how many synthetic ones, or at most this many from the benchmarks (the "
                            f"tasks in turn); at most {MAX_EXAMPLES_PER_REQUEST} per batch")
    files = gr.File(file_count="multiple", file_types=[*TABLE_TYPES, ".zip", *VIDEO_TYPES], visible=False,
                    label="questions.csv or .jsonl (columns video, question, optional answer, type) plus the "
                          f"videos it names, or one .zip of them; at most {MAX_EXAMPLES_PER_REQUEST} questions",
                    elem_id="batch-files")
    bench_row, spec, subset = _benchmark_inputs()
    with gr.Row():
        scorers = gr.CheckboxGroup(list(SCORERS), value=list(SCORERS), label="Scorers", elem_id="batch-scorers",
                                   info="frames = keep x T frames sampled uniformly, nothing pruned (same budget).")
        keeps = gr.CheckboxGroup([(f"{k:g}", k) for k in KEEP_CHOICES], value=list(DEFAULT_KEEPS),
                                 label="Keep ratios", elem_id="batch-keeps")
    hi = PUBLIC_MAX_FRAMES if public else BATCH_FRAMES[1]
    frames = gr.Slider(BATCH_FRAMES[0], hi, value=min(16, hi), step=1, label="Frames per video",
                       elem_id="batch-frames")
    return source, count, files, bench_row, spec, subset, scorers, keeps, frames


def _result_outputs() -> tuple[gr.Markdown, gr.Plot, gr.Plot, gr.Plot, gr.Dataframe, gr.Image, gr.Markdown,
                               gr.Dataframe, gr.File, gr.Dataframe]:
    status = gr.Markdown(NOTHING, elem_id="batch-status")
    with gr.Row():
        accuracy_plot = gr.Plot(label="Accuracy vs keep ratio", elem_id="batch-accuracy")
        agreement_plot = gr.Plot(label="Agreement with the unpruned answer", elem_id="batch-agreement")
    type_plot = gr.Plot(label="Accuracy by question type", elem_id="batch-types")
    flips_df = gr.Dataframe(headers=list(FLIP_COLUMNS), interactive=False, elem_id="batch-flips", max_height=360,
                            label="Flips (click one to preview it; the page can open it in the single-video view)")
    with gr.Row():
        preview_image = gr.Image(label="Keep mask of the flip (dimmed = pruned)", interactive=False,
                                 elem_id="batch-preview", format="png", scale=3)
        preview_info = gr.Markdown(elem_id="batch-preview-info")
    failed_df = gr.Dataframe(headers=list(FAILED_COLUMNS), interactive=False, label="Failed rows",
                             elem_id="batch-failed", max_height=240)
    bundle = gr.File(label="results.jsonl, summary.csv and report.html (zip; a benchmark run adds paper_table.csv "
                           "and the lmms-eval sample logs)", interactive=False, elem_id="batch-bundle")
    bench_df = gr.Dataframe(interactive=False, elem_id="batch-benchmarks",
                            label="Benchmarks: accuracy (%) per benchmark, the average and its drop (points)")
    return (status, accuracy_plot, agreement_plot, type_plot, flips_df, preview_image, preview_info, failed_df, bundle,
            bench_df)


def build_batch_tab(model_box: gr.components.Component, get_backend: GetBackend, public: bool = False,
                    max_new_tokens: int = MAX_NEW_TOKENS, allow_folders: bool | None = None) -> BatchTab:
    """The "Batch analysis" tab, created inside the caller's gr.Tabs (or Blocks). `model_box` is the page's
    Model dropdown (the batch runs the chosen model) and `get_backend(label)` loads it, raising gr.Error,
    ValueError or ModelLoadError with a sentence. `public` caps frames at PUBLIC_MAX_FRAMES. `allow_folders`
    (default: not `public`) offers the local benchmark folder source, which reads the server's disk."""
    folders = (not public) if allow_folders is None else bool(allow_folders)
    with gr.Tab("Batch analysis", id="batch", elem_id="batch-tab") as tab:
        gr.Markdown("Run the unpruned model and every scorer x keep ratio over many questions, then see where "
                    "pruning changes the answer. The Model box on the left chooses the model.")
        source, count, files, bench_row, spec, subset, scorers, keeps, frames = _data_inputs(public, folders)
        run_button = gr.Button("Run batch", variant="primary", elem_id="batch-run")
        outs = _result_outputs()
        state = gr.State(None, time_to_live=STATE_TTL_S, delete_callback=forget)

    def run_event(model: Any, source_value: str, count_value: Any, files_value: Any, scorer_values: Any,
                  keep_values: Any, frames_value: Any, previous: BatchResult | None, spec_value: Any = None,
                  subset_value: Any = None, progress: gr.Progress = NO_PROGRESS) -> BatchOutputs:
        return run_batch(get_backend, model, source_value, count_value, files_value, scorer_values, keep_values,
                         frames_value, previous, public=public, max_new_tokens=max_new_tokens, progress=progress,
                         benchmark=spec_value, subset=subset_value, allow_folders=folders)

    private = {"api_visibility": "private"}
    source.change(source_visibility, source, [count, files], queue=False, **private)
    source.change(benchmark_visibility, source, bench_row, queue=False, **private)
    locked = run_button.click(lambda: gr.update(interactive=False), None, run_button, queue=False, **private)
    ran = locked.then(run_event, [model_box, source, count, files, scorers, keeps, frames, state, spec, subset],
                      [*outs, state],
                      concurrency_id=BATCH_CONCURRENCY, concurrency_limit=1, api_name="batch",
                      show_progress_on=[outs[0]])
    ran.then(lambda: gr.update(interactive=True), None, run_button, queue=False, **private)
    outs[4].select(show_flip, state, [outs[5], outs[6]], queue=False, **private)
    return BatchTab(tab, source, count, files, scorers, keeps, frames, run_button, *outs, state, ran, spec, subset)
