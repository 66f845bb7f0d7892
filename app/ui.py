"""The page: inputs on the left, results in tabs on the right; events wired at the bottom."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from app.examples import ensure_examples
from app.handlers import LIMITS, SCORER_INFO, SCORERS, VIDEO_TYPES, Handlers, limits_text, warm_up_rendering
from app.models import ModelChoices

INTRO = """\
# STTS Studio
**Spatio-Temporal Token Scoring** prunes a video VLM's vision tokens: a small scorer inside the ViT rates every
3x3 patch group of every frame, and the lowest-scoring groups (over all frames but the first, which stays whole)
skip the later ViT blocks and the LLM. Drop in a video, ask a question, and compare the pruned answer and its
speed with the unpruned model. Drag **keep ratio** to see the selection change at once; answers and timings
follow when you let go.
"""

STATE_TTL_S = 2 * 3600  # a closed tab's cached scores and pictures are freed after this
CACHE_PURGE = (3600, 2 * 3600)  # every hour, delete uploads and rendered files older than two hours


def build_demo(model: str | None = None, examples_folder: Path | None = None) -> gr.Blocks:
    """The Blocks app. `model` is the --model flag (selected at start); examples go to `examples_folder`."""
    choices = ModelChoices.starting_with(model)
    handlers = Handlers(choices, LIMITS)
    examples = ensure_examples(examples_folder)
    warm_up_rendering()

    with gr.Blocks(title="STTS Studio", delete_cache=CACHE_PURGE) as demo:
        gr.Markdown(INTRO)
        view = gr.State(None, time_to_live=STATE_TTL_S)
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=340):
                video = gr.Video(label="Video", sources=["upload"], height=260, elem_id="video")
                with gr.Row():
                    video_info = gr.Markdown(limits_text(LIMITS), elem_id="video-info")
                    upload_any = gr.UploadButton("Upload GIF / other", file_types=list(VIDEO_TYPES), size="sm",
                                                 scale=0, min_width=150, elem_id="upload-any")
                question = gr.Textbox(label="Question", lines=2, elem_id="question",
                                      placeholder="e.g. what colour is the shape that moves ?")
                model_box = gr.Dropdown(choices.labels, value=choices.selected, allow_custom_value=True,
                                        label="Model", elem_id="model",
                                        info="Pick one, or type any Hugging Face id or local checkpoint folder.")
                scorer = gr.Radio(list(SCORERS), value="learned", label="Scorer", info=SCORER_INFO,
                                  elem_id="scorer")
                frames = gr.Slider(4, 256, value=16, step=1, label="Frames sampled", elem_id="frames")
                keep = gr.Slider(0.05, 1.0, value=0.5, step=0.01, elem_id="keep",
                                 label="Keep ratio (fraction of vision tokens kept)")
                match_budget = gr.Checkbox(False, label="same token budget as the baseline (test-time scaling)",
                                           info="STTS then samples frames / keep ratio frames.",
                                           elem_id="match-budget")
                run_button = gr.Button("Run", variant="primary", elem_id="run")
                gr.Examples(examples=[list(e) for e in examples], inputs=[video, question],
                            label="Examples from the built-in model's synthetic world")

            with gr.Column(scale=7, min_width=480), gr.Tabs():
                with gr.Tab("Keep masks", id="masks"):
                    masks_info = gr.Markdown("Run a video to see which patch groups STTS keeps: pruned groups "
                                             "are dimmed, kept groups outlined.", elem_id="masks-info")
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
                    with gr.Accordion("Full result (JSON)", open=False):
                        details = gr.JSON(elem_id="details")

        run_inputs = [video, question, model_box, scorer, frames, keep, match_budget]
        run_outputs = [masks, masks_info, scores_image, heatmap, kept_bars, baseline_answer, stts_answer,
                       answer_info, stage_table, speed_info, stage_chart, details, scorer, view]

        run_button.click(handlers.run, run_inputs, run_outputs, api_name="run", concurrency_id="model")
        keep.change(handlers.preview, [keep, view, video, model_box, scorer, frames, match_budget],
                    [masks, masks_info, heatmap, kept_bars], trigger_mode="always_last", show_progress="hidden",
                    concurrency_id="preview", concurrency_limit=2, api_visibility="private")
        keep.release(handlers.rerun, [*run_inputs, view], run_outputs, concurrency_id="model",
                     api_visibility="private")
        video.change(handlers.check_video, video, video_info, concurrency_id="probe", concurrency_limit=2,
                     api_visibility="private")
        upload_any.upload(lambda f: f, upload_any, video, queue=False, api_visibility="private")
        model_box.change(handlers.model_changed, [model_box, scorer], scorer, queue=False, api_visibility="private")
    return demo
