"""The web app's event functions, called directly (no browser) on generated clips with a micro checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import gradio as gr
import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from app import render
from app.examples import MANIFEST, ensure_examples
from app.forms import LIMITS
from app.handlers import Handlers
from app.models import BUILTIN_LABEL, CACHE, HUB_MODELS, ModelCache, ModelChoices
from app.text import STAGE_NAMES, STALE
from app.views import PreviewOutputs, RunOutputs
from stts_core.data.synthetic import make_clip
from stts_core.data.video import VideoLimits, load_video
from stts_core.data.video_encode import write_video
from stts_core.pipeline import STAGES

QUESTION = "what colour is the square ?"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    return str(write_video(path, make_clip(3).frames, fps=8))


@pytest.fixture(scope="module")
def first_run(handlers: Handlers, clip: str, micro_checkpoint: Path) -> RunOutputs:
    return handlers.run(clip, QUESTION, str(micro_checkpoint), "learned", 12, 0.5, False)


def settings_of(out: RunOutputs, clip: str, model: str) -> tuple:
    """The inputs the preview handler compares with the cached run (video, model, scorer, frames, switch)."""
    return clip, model, out.view.key[3], 12, False


def test_run_returns_every_view(first_run: RunOutputs) -> None:
    out = first_run
    r = out.view.result
    t, g = r.keep_mask.shape
    assert t == 12 and g == len(r.groups) and r.scores.shape == (t, g)
    canvas = out.view.canvas
    h, w = canvas.tile_size
    rows = math.ceil(t / canvas.cols)
    expected = (rows * (h + render.HEADER_H + render.PAD) - render.PAD, canvas.cols * (w + render.PAD) - render.PAD, 3)
    assert out.masks.shape == expected and out.masks.dtype == np.uint8
    assert out.scores_image.shape[1:] == expected[1:] and out.scores_image.shape[0] > expected[0]

    heat = out.heatmap.data[0]
    assert heat.type == "heatmap" and np.asarray(heat.z).shape == (t, g)
    kept_trace = next(tr for tr in out.kept_bars.data if tr.name == "kept")
    assert int(np.sum(kept_trace.y)) == int(r.keep_mask.sum()) and len(kept_trace.y) == t
    assert len(out.heatmap.data[1].x) == int((~r.keep_mask).sum())

    assert out.baseline_answer.strip() and out.stts_answer.strip()
    assert "Visual tokens" in out.answer_info and "scorer used" in out.answer_info
    table = out.stage_table
    assert len(table) == len(STAGES) + 3
    assert list(table["stage"][-3:]) == ["time to first token (model)", "model total", "end to end"]
    assert table[["baseline (ms)", "STTS (ms)"]].map(lambda v: isinstance(v, float) and v >= 0).all().all()
    assert "Time to first token (model)" in out.speed_info and "decoded once for both runs" in out.speed_info
    assert "not tracked on CPU" in out.speed_info and "Warm-up run" in out.speed_info
    assert [tr.name for tr in out.stage_chart.data] == [STAGE_NAMES[s] for s in STAGES]
    assert all(list(tr.y) == ["baseline", "STTS"] for tr in out.stage_chart.data)
    assert out.details["stts"]["answer"] == r.stts.answer and out.details["baseline"]["visual_tokens"] == t * g
    assert np.array_equal(np.asarray(out.details["keep_mask"]), r.keep_mask)
    assert np.allclose(np.asarray(out.details["scores"]), r.scores, atol=1e-5)
    assert out.scorer["value"] == "learned" and "learned" in out.scorer["choices"]
    assert out.status.startswith("Done: keep 0.50") and out.frame["maximum"] == t - 1


def test_pruned_groups_are_dimmed_where_the_mask_says(first_run: RunOutputs, clip: str) -> None:
    view = first_run.view
    r, canvas = view.result, view.canvas
    h, w = canvas.tile_size
    originals = load_video(clip, r.keep_mask.shape[0]).frames
    assert r.keep_mask[0].all() and not r.keep_mask.all()
    for t in range(r.keep_mask.shape[0]):
        small = cv2.resize(originals[t], (w, h), interpolation=cv2.INTER_AREA).astype(np.float64)
        y, x = render.tile_origin(t, canvas.cols, h, w)
        tile = first_run.masks[y:y + h, x:x + w].astype(np.float64)
        for g, (y0, y1, x0, x1) in enumerate(canvas.boxes):
            inner = (slice(y0 + 2, y1 - 2), slice(x0 + 2, x1 - 2))
            shown, orig = tile[inner].mean(), small[inner].mean()
            if r.keep_mask[t, g]:
                assert abs(shown - orig) < 2.0, (t, g)
            else:
                assert abs(shown - render.DIM * orig) < 2.0, (t, g)


def test_kept_groups_are_outlined(first_run: RunOutputs) -> None:
    view = first_run.view
    canvas, keep = view.canvas, view.result.keep_mask
    h, w = canvas.tile_size
    for t in (0, keep.shape[0] - 1):
        y, x = render.tile_origin(t, canvas.cols, h, w)
        for g, (y0, _, x0, x1) in enumerate(canvas.boxes):
            edge = first_run.masks[y + y0, x + x0 + 1:x + x1 - 1]
            is_outline = (np.abs(edge.astype(int) - render.OUTLINE).sum(axis=1) < 10).mean() > 0.9
            assert is_outline == bool(keep[t, g]), (t, g)


@pytest.mark.parametrize("ratio", [0.05, 0.1, 0.33, 0.5, 0.77, 1.0])
def test_slider_preview_keeps_exactly_the_budget(first_run: RunOutputs, handlers: Handlers, clip: str,
                                                 micro_checkpoint: Path, ratio: float) -> None:
    t, g = first_run.view.result.keep_mask.shape
    out = handlers.preview(ratio, first_run.view, *settings_of(first_run, clip, str(micro_checkpoint)))
    assert isinstance(out, PreviewOutputs)
    kept = int(np.sum(next(tr for tr in out.kept_bars.data if tr.name == "kept").y))
    assert kept == max(math.floor(ratio * g * t + 0.5), g)
    assert f"{kept} of {t * g} groups" in out.masks_info and "Preview" in out.masks_info
    assert np.asarray(out.heatmap.data[0].z).shape == (t, g)
    assert out.masks.shape == first_run.masks.shape
    assert (ratio == 0.5) == np.array_equal(out.masks, first_run.masks)


def test_slider_preview_ignores_stale_or_missing_cache(first_run: RunOutputs, handlers: Handlers, clip: str,
                                                       micro_checkpoint: Path) -> None:
    video, model, scorer, _, switch = settings_of(first_run, clip, str(micro_checkpoint))
    stale = handlers.preview(0.3, first_run.view, video, model, scorer, 24, switch)
    assert stale.masks_info == STALE and stale.masks == gr.skip()
    assert handlers.preview(0.3, first_run.view, video, model, "random", 12, switch).masks_info == STALE
    assert handlers.preview(0.3, None, video, model, scorer, 12, switch) == PreviewOutputs(*[gr.skip()] * 6)


def test_release_reruns_only_when_something_changed(first_run: RunOutputs, handlers: Handlers, clip: str,
                                                    micro_checkpoint: Path) -> None:
    model = str(micro_checkpoint)
    same = handlers.rerun(clip, QUESTION, model, first_run.view.key[3], 12, 0.5, False, False, first_run.view)
    assert all(v == gr.skip() for v in same)
    assert all(v == gr.skip() for v in handlers.rerun(clip, QUESTION, model, "learned", 12, 0.3, False, False, None))
    *outputs, gate = handlers.rerun(clip, QUESTION, model, first_run.view.key[3], 12, 0.25, False, False,
                                    first_run.view)
    out = RunOutputs(*outputs)
    assert gate == "" and "Keep 0.25" in out.masks_info and "Preview" not in out.masks_info
    t, g = out.view.result.keep_mask.shape
    assert out.view.result.keep_mask.sum() == max(round(0.25 * t * g), g) and out.view.keep_ratio == 0.25
    assert "Warm-up run" not in out.speed_info


def test_same_token_budget_samples_more_frames(handlers: Handlers, clip: str, micro_checkpoint: Path) -> None:
    out = handlers.run(clip, QUESTION, str(micro_checkpoint), "heuristic", 6, 0.5, True)
    assert out.view.result.stts.num_frames == 12 and out.view.result.baseline.num_frames == 6
    assert out.view.result.stts.visual_tokens == out.view.result.baseline.visual_tokens
    assert "Same token budget" in out.answer_info


def error_of(fn, *args) -> str:
    with pytest.raises(gr.Error) as info:
        fn(*args)
    return str(info.value.message)


def test_bad_inputs_give_readable_errors(handlers: Handlers, clip: str, micro_checkpoint: Path,
                                         tmp_path: Path) -> None:
    model = str(micro_checkpoint)
    text = tmp_path / "notes.mp4"
    text.write_text("this is a shopping list, not a video\n" * 20)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(Path(clip).read_bytes()[:1500])

    def run(video, question="what is it ?", frames=12):
        return handlers.run(video, question, model, "learned", frames, 0.5, False)

    assert error_of(run, None) == "Please upload a video (or click one of the examples) first."
    assert error_of(run, clip, "   ") == "Please type a question about the video."
    assert error_of(run, str(text)) == "This file is not a video we can read (it looks like plain text)."
    assert error_of(run, str(empty)) == "The file 'empty.mp4' is empty (0 bytes), so there is no video in it."
    message = error_of(run, str(truncated))
    assert message.endswith(".") and "Traceback" not in message
    assert "whole number" in error_of(run, clip, "what ?", 1000)
    assert error_of(handlers.check_video, str(text)) == "This file is not a video we can read (it looks like plain text)."
    player, info = handlers.check_video(clip)
    assert player == gr.skip() and "fps" in info and "500 MB" in info
    assert "500 MB and 20 minutes" in handlers.check_video(None)[1]


def test_failed_model_load_keeps_the_previous_model(first_run: RunOutputs, handlers: Handlers, clip: str,
                                                    micro_checkpoint: Path, tmp_path: Path) -> None:
    model = str(micro_checkpoint)
    assert CACHE.peek(model) is not None
    missing = str(tmp_path / "no-such-model")
    message = error_of(handlers.run, clip, QUESTION, missing, "learned", 12, 0.5, False)
    assert message.startswith(f"There is no model folder at '{missing}'.")
    assert f"The previously loaded model ({model}) is still available." in message
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert error_of(handlers.run, clip, QUESTION, str(broken), "learned", 12, 0.5, False).startswith(
        f"Could not load the model '{broken}'")
    assert CACHE.peek(model) is not None and str(broken) not in CACHE.sources
    assert handlers.run(clip, QUESTION, model, "learned", 12, 0.5, False).stts_answer


def test_unreachable_hub_model_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    from app import models

    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    cache = ModelCache(device="cpu")
    with pytest.raises(RuntimeError, match="cannot be reached"):
        cache.get("nobody-here/no-such-model")
    assert cache.sources == []


def test_model_without_scorer_weights_offers_no_learned(handlers: Handlers, clip: str, micro_checkpoint: Path,
                                                        tmp_path: Path) -> None:
    bare = tmp_path / "no-scorer"
    bare.mkdir()
    for item in micro_checkpoint.iterdir():
        if item.suffix == ".safetensors":
            weights = {k: v for k, v in load_file(item).items() if "temporal_token_scorer" not in k}
            save_file(weights, bare / item.name, metadata={"format": "pt"})
        elif item.is_file():
            (bare / item.name).write_bytes(item.read_bytes())
    out = handlers.run(clip, QUESTION, str(bare), "learned", 8, 0.5, False)
    assert out.view.result.scorer_used == "heuristic"
    assert "no trained STTS scorer weights" in out.answer_info
    assert out.scorer["choices"] == ["heuristic", "random"] and out.scorer["value"] == "heuristic"
    radio, keep = handlers.model_changed(str(bare), "learned")
    assert radio["choices"] == ["heuristic", "random"] and keep == CACHE.peek(str(bare)).default_keep_ratio
    assert "learned" in handlers.model_changed(str(micro_checkpoint), "random")[0]["choices"]
    radio, keep = handlers.model_changed("allenai/never-loaded", "random")
    assert radio["value"] == "random" and keep == gr.skip()


def test_model_choices() -> None:
    plain = ModelChoices.starting_with(None)
    assert plain.selected == BUILTIN_LABEL and plain.labels[1:1 + len(HUB_MODELS)] == list(HUB_MODELS)
    assert plain.source(BUILTIN_LABEL) == plain.builtin_path
    assert plain.source(" org/model ") == "org/model"
    with pytest.raises(ValueError):
        plain.source("")
    custom = ModelChoices.starting_with("/ckpt/mine")
    assert custom.selected == "/ckpt/mine" and custom.labels[-1] == "/ckpt/mine"
    assert ModelChoices.starting_with(HUB_MODELS[1]).selected == HUB_MODELS[1]


def test_examples_are_written_once(tmp_path: Path) -> None:
    pairs = ensure_examples(tmp_path, n=2)
    assert len(pairs) == 2 and all(Path(p).is_file() and q.strip() for p, q in pairs)
    assert (tmp_path / MANIFEST).is_file()
    stamp = Path(pairs[0][0]).stat().st_mtime_ns
    assert ensure_examples(tmp_path, n=2) == pairs and Path(pairs[0][0]).stat().st_mtime_ns == stamp


@pytest.mark.parametrize(("suffix", "converted"), [(".gif", True), (".mkv", True), (".mov", False)])
def test_other_containers_play_and_run(handlers: Handlers, micro_checkpoint: Path, tmp_path: Path, suffix: str,
                                       converted: bool) -> None:
    """Formats a browser cannot play become H.264 MP4 on upload (same frames); MP4-family files are kept."""
    path = write_video(tmp_path / f"clip{suffix}", make_clip(4).frames[:8], fps=8)
    player, info = handlers.check_video(str(path))
    assert "fps" in info and ("Converted to H.264 MP4" in info) == converted
    if not converted:
        assert player == gr.skip()
        player = str(path)
    with av.open(player) as converted_file:
        stream = converted_file.streams.video[0]
        assert stream.codec_context.name == "h264" and len(list(converted_file.decode(stream))) == 8
    if converted:  # the player hands back a copy under another path: its line still says it was converted
        copy = tmp_path / "copy" / "uploaded.mp4"
        copy.parent.mkdir()
        copy.write_bytes(Path(player).read_bytes())
        again, info_again = handlers.check_video(str(copy))
        assert again == gr.skip() and "Converted to H.264 MP4" in info_again
    out = handlers.run(str(path), QUESTION, str(micro_checkpoint), "random", 8, 0.5, False)
    assert out.stts_answer and out.view.result.keep_mask.shape[0] == 8


def test_missing_builtin_model_says_so(clip: str, tmp_path: Path) -> None:
    handlers = Handlers(ModelChoices(builtin_path=str(tmp_path / "stts-tiny")))
    message = error_of(handlers.run, clip, QUESTION, BUILTIN_LABEL, "learned", 8, 0.5, False)
    assert message.startswith("The built-in model is not installed yet")


def test_limits_are_enforced_with_readable_errors(clip: str, micro_checkpoint: Path) -> None:
    small = Handlers(limits=VideoLimits(max_bytes=2000))
    assert error_of(small.check_video, clip).startswith("The file is too large")
    assert VideoLimits() == LIMITS
    short = Handlers(limits=VideoLimits(max_duration_s=1.0))
    message = error_of(short.run, clip, QUESTION, str(micro_checkpoint), "learned", 8, 0.5, False)
    assert message.startswith("The video is too long") and "1 second" in message


def test_stage_progress_names_each_stage_and_only_moves_forward() -> None:
    from app.handlers import stage_progress

    seen: list[tuple[float, str]] = []
    tell = stage_progress(lambda value, desc="": seen.append((value, desc)), pairs=1)
    for run_name in ("baseline", "stts"):
        for stage in ("preprocess", "vit_prefix", "llm_prefill"):
            tell(run_name, stage)
    values = [v for v, _ in seen]
    assert values == sorted(values) and values[0] > 0.2 and values[-1] <= 0.8
    assert seen[0][1] == "Baseline: preprocess" and seen[-1][1] == "STTS: LLM prefill"
