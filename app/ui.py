"""The page: inputs on the left, results in tabs on the right; events wired at the bottom."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from app import batch, batch_tab, compare
from app.examples import REAL_CREDIT, ensure_examples, real_examples
from app.forms import FRAMES_RANGE, KEEP_RANGE, LIMITS, VIDEO_TYPES, limits_text
from app.handlers import PRECISE_PAIRS, Handlers
from app.models import CACHE, ModelChoices
from app.text import SCORER_INFO, SCORERS
from app.views import warm_up_rendering

INTRO = """\
# STTS Studio
**Spatio-Temporal Token Scoring** prunes a video VLM's vision tokens: a small scorer inside the ViT rates every
patch group that becomes one LLM token (3x3 patches of a frame in Molmo2, 2x2 of a two-frame temporal patch in
Qwen-VL), and the lowest-scoring groups (over all frames but the first, which stays whole) skip the later ViT
blocks and the LLM. Drop in a video, ask a question, and compare the pruned answer and its
speed with the unpruned model. Change **keep ratio** (drag, arrow keys or the number box) to see the selection
change at once; answers and timings follow when the value rests.
"""

DEFAULT_FRAMES = 16  # the frames slider's starting value (and the frame count the server warms up with)
STATE_TTL_S = 2 * 3600  # a closed tab's cached scores and pictures are freed after this
CACHE_PURGE = (3600, 2 * 3600)  # every hour, delete uploads and rendered files older than two hours


def build_demo(model: str | None = None, examples_folder: Path | None = None, public: bool = False,
               allow_custom: bool = False) -> gr.Blocks:
    """The Blocks app. `model` is the --model flag (selected at start); examples go to `examples_folder`;
    `public` offers only the listed models unless `allow_custom`."""
    choices = ModelChoices.starting_with(model, public=public, allow_custom=allow_custom)
    handlers = Handlers(choices, LIMITS)
    examples = ensure_examples(examples_folder)
    warm_up_rendering()
    loaded = CACHE.peek(choices.source(choices.selected))
    keep_default = float(loaded.default_keep_ratio) if loaded is not None else 0.5
    with gr.Blocks(title="STTS Studio", delete_cache=CACHE_PURGE) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            p = input_column(choices, keep_default, examples, real_examples())
            p.__dict__.update(vars(result_tabs(p.model_box, handlers, choices.public)))
        p.view = gr.State(None, time_to_live=STATE_TTL_S)
        p.gate = gr.State("")
        wire(handlers, p)
    return demo


def input_column(choices: ModelChoices, keep_default: float, examples: list[tuple[str, str]],
                 real: list[tuple[str, str]]) -> SimpleNamespace:
    """The left column: video, question, model, scorer, frames, keep ratio, switches, Run and examples."""
    model_info = ("Pick one, or type any Hugging Face id or local checkpoint folder." if choices.custom_allowed
                  else "This server runs the listed models only.")
    with gr.Column(scale=4, min_width=340):
        video = gr.Video(label="Video", sources=["upload"], height=260, elem_id="video")
        with gr.Row():
            video_info = gr.Markdown(limits_text(LIMITS), elem_id="video-info")
            upload_any = gr.UploadButton("Upload GIF / other", file_types=list(VIDEO_TYPES), size="sm",
                                         scale=0, min_width=150, elem_id="upload-any")
        question = gr.Textbox(label="Question", lines=2, elem_id="question",
                              placeholder="e.g. what colour is the shape that moves ?")
        model_box = gr.Dropdown(choices.labels, value=choices.selected,
                                allow_custom_value=choices.custom_allowed, label="Model", elem_id="model",
                                info=model_info)
        scorer = gr.Radio(list(SCORERS), value="learned", label="Scorer", info=SCORER_INFO,
                          elem_id="scorer")
        frames = gr.Slider(*FRAMES_RANGE, value=DEFAULT_FRAMES, step=1, label="Frames sampled", elem_id="frames")
        keep = gr.Slider(*KEEP_RANGE, value=keep_default, step=0.01, elem_id="keep",
                         label="Keep ratio (fraction of vision tokens kept)",
                         info="Masks follow at once; answers and timings rerun when the value rests.")
        with gr.Row():
            match_budget = gr.Checkbox(False, label="same token budget as the baseline",
                                       info="STTS then samples frames / keep ratio frames.",
                                       elem_id="match-budget")
            precise = gr.Checkbox(False, label=f"measure precisely ({PRECISE_PAIRS} pairs)",
                                  info="Repeat baseline/STTS and report medians with their range.",
                                  elem_id="precise")
        run_button = gr.Button("Run", variant="primary", elem_id="run")
        status = gr.Markdown("", elem_id="status")
        gr.Examples(examples=[list(e) for e in examples], inputs=[video, question],
                    label="Examples from the built-in model's synthetic world")
        if real:
            gr.Examples(examples=[list(e) for e in real], inputs=[video, question],
                        label="Real footage: a pruning demo (watch the masks and timings; the built-in "
                              "model is not expected to answer it)")
            gr.Markdown(REAL_CREDIT, elem_id="credits")

    return SimpleNamespace(video=video, video_info=video_info, upload_any=upload_any, question=question,
                           model_box=model_box, scorer=scorer, frames=frames, keep=keep, match_budget=match_budget,
                           precise=precise, run_button=run_button, status=status)


def result_tabs(model_box: gr.Dropdown, handlers: Handlers, public: bool = False) -> SimpleNamespace:
    """The right column: masks (video, scrubber, contact sheet), scores, answers, speed, download, the
    methods side by side on this video, and the batch analysis over many videos."""
    with gr.Column(scale=7, min_width=480), gr.Tabs() as tabs:
        with gr.Tab("Keep masks", id="masks"):
            masks_info = gr.Markdown("Run a video to see which patch groups STTS keeps: pruned groups "
                                     "are dimmed, kept groups outlined.", elem_id="masks-info")
            masks_video = gr.Video(label="Original | masked (the run's keep mask)", elem_id="masks-video",
                                   interactive=False, height=300, loop=True, autoplay=False)
            frame = gr.Slider(0, 1, value=0, step=1, label="Frame (hover the picture for group scores)",
                              elem_id="frame", interactive=False)
            frame_plot = gr.Plot(label="One frame", elem_id="frame-plot")
            page = gr.Slider(1, 2, value=1, step=1, label="Contact sheet page (64 frames a page)",
                             elem_id="page", visible=False)
            masks = gr.Image(label="Keep masks", show_label=False, format="jpeg", interactive=False,
                             elem_id="masks", buttons=["download", "fullscreen"])
        with gr.Tab("Temporal scores", id="scores"):
            gr.Markdown("Each frame tinted by its groups' scores (colour bar below the frames: low scores "
                        "are pruned first; frame 0 is kept whatever its scores).")
            scores_image = gr.Image(label="Score overlay", show_label=False, format="jpeg",
                                    interactive=False, elem_id="scores-image",
                                    buttons=["download", "fullscreen"])
            heatmap = gr.Plot(label="Scores, frames x groups", elem_id="heatmap")
            kept_bars = gr.Plot(label="Kept groups per frame", elem_id="kept-bars")
        with gr.Tab("Answers", id="answers"):
            with gr.Row():
                baseline_answer = gr.Textbox(label="Baseline (no pruning)", lines=3,
                                             interactive=False, elem_id="baseline-answer")
                stts_answer = gr.Textbox(label="STTS", lines=3, interactive=False, elem_id="stts-answer")
            answer_info = gr.Markdown(elem_id="answer-info")
        with gr.Tab("Speed", id="speed"):
            speed_info = gr.Markdown(elem_id="speed-info")
            stage_table = gr.Dataframe(label="Measured time per stage", interactive=False,
                                       datatype=["str", "number", "number"], elem_id="stage-table")
            stage_chart = gr.Plot(label="Stage times", elem_id="stage-chart")
        with gr.Tab("Download", id="download"):
            gr.Markdown("One zip per run: `result.json` (settings, scores, keep mask, answers, timings), "
                        "`stts_masks.mp4` (original | masked) and `kept_per_frame.csv`.")
            bundle = gr.File(label="Run bundle (zip)", elem_id="bundle", interactive=False)
            with gr.Accordion("Full result (JSON)", open=False):
                details = gr.JSON(elem_id="details")
        compare_view = compare.build_compare_tab()
        batch_view = batch_tab.build_batch_tab(model_box, handlers.backend_for, public=public,
                                               allow_folders=handlers.choices.custom_allowed)

    return SimpleNamespace(masks_info=masks_info, masks_video=masks_video, frame=frame, frame_plot=frame_plot,
                           page=page, masks=masks, scores_image=scores_image, heatmap=heatmap, kept_bars=kept_bars,
                           baseline_answer=baseline_answer, stts_answer=stts_answer, answer_info=answer_info,
                           speed_info=speed_info, stage_table=stage_table, stage_chart=stage_chart, bundle=bundle,
                           details=details, tabs=tabs, batch_view=batch_view, compare_view=compare_view)


def wire(handlers: Handlers, p: SimpleNamespace) -> None:
    """The events. Run and keep changes share one failure rule: a toast and the status line, no result touched."""
    run_inputs = [p.video, p.question, p.model_box, p.scorer, p.frames, p.keep, p.match_budget, p.precise]
    run_outputs = [p.masks, p.masks_info, p.scores_image, p.heatmap, p.kept_bars, p.baseline_answer, p.stts_answer,
                   p.answer_info, p.stage_table, p.speed_info, p.stage_chart, p.details, p.scorer, p.masks_video,
                   p.bundle, p.frame_plot, p.status, p.frame, p.page, p.view]
    ui_outputs = [*run_outputs, p.gate]
    private = {"api_visibility": "private"}
    unlock = {"fn": lambda: gr.update(interactive=True), "inputs": None, "outputs": p.run_button, "queue": False,
              **private}
    gate_step = {"fn": handlers.gate, "inputs": p.gate, "outputs": None, "concurrency_limit": None,
                 "show_progress": "hidden", **private}

    # Run: check at once (status line only), then the models; a failure is a toast and a status line.
    started = p.run_button.click(handlers.start, run_inputs, [p.status, p.run_button, p.gate], queue=False,
                                 show_progress="hidden", **private)
    ran = started.then(**gate_step).success(handlers.run_ui, run_inputs, ui_outputs, concurrency_id="model",
                                            show_progress_on=[p.status, p.masks], **private)
    ran.then(**gate_step).then(**unlock)

    # A flip of the batch analysis opens in the single-video view: its inputs, then the same Run chain.
    opened = p.batch_view.flip_table.select(batch.open_flip, [p.batch_view.state, p.model_box], batch.flip_outputs(p),
                                            queue=False, **private)
    shown = opened.success(lambda: gr.Tabs(selected="masks"), None, p.tabs, queue=False, **private)
    shown.then(handlers.start, run_inputs, [p.status, p.run_button, p.gate], queue=False, show_progress="hidden",
               **private).then(**gate_step).success(
        handlers.run_ui, run_inputs, ui_outputs, concurrency_id="model", show_progress_on=[p.status, p.masks],
        **private).then(**gate_step).then(**unlock)
    # The same run for scripts: raises its error (gradio_client sees it) instead of a status line.
    api_trigger = gr.Button(visible=False, elem_id="api-run")
    api_trigger.click(handlers.run, run_inputs, run_outputs, api_name="run", concurrency_id="model")

    # Keep: every change (drag, arrow keys, number box) previews at once and reruns once it rests.
    preview_in = [p.keep, p.view, p.video, p.model_box, p.scorer, p.frames, p.match_budget, p.page, p.frame]
    preview_out = [p.masks, p.masks_info, p.heatmap, p.kept_bars, p.frame_plot, p.status]
    moved = p.keep.change(handlers.preview, preview_in, preview_out, trigger_mode="always_last",
                          show_progress="hidden", concurrency_id="preview", concurrency_limit=4, **private)
    rested = moved.then(handlers.settle, None, None, show_progress="hidden", concurrency_limit=None, **private)
    rested.then(handlers.rerun, [*run_inputs, p.view], ui_outputs, concurrency_id="model",
                show_progress_on=[p.status], **private).then(**gate_step)

    p.page.change(handlers.show_page, [p.page, p.keep, p.view], [p.masks, p.scores_image], show_progress="hidden",
                  concurrency_id="preview", **private)
    p.frame.change(handlers.scrub, [p.frame, p.keep, p.view], p.frame_plot, show_progress="hidden",
                   trigger_mode="always_last", concurrency_id="preview", **private)
    p.video.change(handlers.on_upload, [p.video, p.frames], [p.video, p.video_info], concurrency_id="probe",
                   concurrency_limit=2, **private)
    p.frames.change(handlers.describe, [p.video, p.frames], p.video_info, queue=False, show_progress="hidden",
                    **private)
    p.upload_any.upload(handlers.upload_other, [p.upload_any, p.frames], [p.video, p.video_info],
                        concurrency_id="probe", **private)
    p.model_box.change(handlers.model_changed, [p.model_box, p.scorer], [p.scorer, p.keep], queue=False, **private)
    compare.wire_compare(handlers, p, p.compare_view)  # the Compare methods tab: its own methods and keep slider
