"""What a real visitor meets: failed runs that leave the page alone, odd inputs, empty answers, flat scores,
the masks video and download bundle, bounded per-session memory, public-deployment mode, ZeroGPU pickling."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import pickle
import re
import zipfile
from pathlib import Path

import av
import gradio as gr
import numpy as np
import pytest
import torch

from app import render
from app.forms import LIMITS
from app.handlers import Handlers, run_on_device
from app.models import BUILTIN_LABEL, HUB_MODELS, NOT_OFFERED, ModelCache, ModelChoices
from app.text import answer_markdown, selection_markdown
from app.views import RunOutputs, make_view
from stts_core.analysis.metrics import NO_SPREAD_STD
from stts_core.data.synthetic import make_clip
from stts_core.data.video_encode import write_video
from stts_core.pipeline import RunSettings

QUESTION = "what colour is the square ?"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_video(tmp_path_factory.mktemp("clips") / "clip.mp4", make_clip(6).frames, fps=8))


@pytest.fixture(scope="module")
def first(handlers: Handlers, clip: str, micro_checkpoint: Path) -> RunOutputs:
    return handlers.run(clip, QUESTION, str(micro_checkpoint), "heuristic", 10, 0.4, False)


def message_of(fn, *args) -> str:
    with pytest.raises(gr.Error) as info:
        fn(*args)
    return str(info.value.message)


def test_failed_run_touches_no_result_and_says_one_sentence(handlers: Handlers, clip: str,
                                                            micro_checkpoint: Path, tmp_path: Path) -> None:
    model = str(micro_checkpoint)
    status, button, gate = handlers.start(clip, "  ", model, "learned", 8, 0.5, False)
    assert gate == "Please type a question about the video." and gate in status and button == gr.skip()
    with pytest.raises(gr.Error, match="Please type a question"):
        handlers.gate(gate)
    handlers.gate("")  # no failure: the chain goes on
    status, button, gate = handlers.start(clip, QUESTION, model, "learned", 8, 0.5, False)
    assert gate == "" and button["interactive"] is False

    out = handlers.run_ui(clip, QUESTION, str(tmp_path / "missing-model"), "learned", 8, 0.5, False)
    *results, status, frame, page, view, gate = out
    assert all(v == gr.skip() for v in (*results, frame, page, view))
    assert gate.startswith("There is no model folder") and gate.count(". ") <= 1 and gate in status


@pytest.mark.parametrize(("frames", "fragment"), [
    (math.nan, "nan"), (None, "None"), ("twelve", "'twelve'"), (4.5, "4.5"), (True, "True"), (3, "3"),
])
def test_frames_must_be_a_whole_number(handlers: Handlers, clip: str, micro_checkpoint: Path, frames: object,
                                       fragment: str) -> None:
    message = message_of(handlers.check, clip, QUESTION, str(micro_checkpoint), "learned", frames, 0.5, False)
    assert message == f"Frames must be a whole number from 4 to 256 (got {fragment})."


def test_other_odd_inputs_get_one_line(handlers: Handlers, clip: str, micro_checkpoint: Path) -> None:
    model = str(micro_checkpoint)
    surrogate = message_of(handlers.check, clip, "what \ud800 is it ?", model, "learned", 8, 0.5, False)
    assert surrogate == "The question contains characters that are not valid text; please retype it."
    for keep in (math.nan, None, "half", 1.5):
        message = message_of(handlers.check, clip, QUESTION, model, "learned", 8, keep, False)
        assert message.startswith("The keep ratio must be a number from 0.05 to 1.0") and "\n" not in message
    assert message_of(handlers.check, {"path": None}, QUESTION, model, "learned", 8, 0.5, False).startswith(
        "Please upload a video")
    assert handlers.check(clip, QUESTION, model, "learned", 12.0, 0.5, False).settings.num_frames == 12


def test_clip_is_probed_once_per_upload(handlers: Handlers, clip: str, micro_checkpoint: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from app import media

    handlers.check_video(clip)
    opened: list[str] = []
    real_open = media.open_video
    monkeypatch.setattr(media, "open_video", lambda path, limits: opened.append(path) or real_open(path, limits))
    handlers.run(clip, QUESTION, str(micro_checkpoint), "random", 8, 0.5, False)
    assert opened == []


def test_fewer_frames_than_asked_is_said_before_running(handlers: Handlers, tmp_path: Path) -> None:
    short = write_video(tmp_path / "short.mp4", make_clip(2).frames[:6], fps=8)
    assert "only 6 frames, so a run uses all 6 (not 16)" in handlers.describe(str(short), 16)
    assert "only" not in handlers.describe(str(short), 4)


def test_empty_answers_are_no_answer_never_agreement(first: RunOutputs) -> None:
    r = first.view.result
    silent = dataclasses.replace(r, baseline=dataclasses.replace(r.baseline, answer=""),
                                 stts=dataclasses.replace(r.stts, answer="  "))
    text = answer_markdown(silent, "m")
    assert "No answer from baseline and STTS" in text and "Same answer" not in text
    one = dataclasses.replace(r, stts=dataclasses.replace(r.stts, answer=""))
    assert "No answer from STTS" in answer_markdown(one, "m")


def test_flat_scores_are_said_plainly(first: RunOutputs) -> None:
    r = first.view.result
    flat = dataclasses.replace(r, scores=np.full_like(r.scores, 0.5) + np.float32(NO_SPREAD_STD / 10))
    assert "gave (almost) the same score to every group" in selection_markdown(flat, r.keep_mask, 0.4, False)
    assert "same score" not in selection_markdown(r, r.keep_mask, 0.4, False)


def test_masks_video_is_h264_original_beside_masked(first: RunOutputs) -> None:
    r = first.view.result
    t = r.keep_mask.shape[0]
    with av.open(first.masks_video) as container:
        stream = container.streams.video[0]
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.codec_context.name == "h264"
    assert len(pictures) == t
    h = pictures[0].shape[0] - render.HEADER_H
    w = (pictures[0].shape[1] - render.PAD) // 2
    pruned = np.argwhere(~r.keep_mask)
    ti, gi = pruned[len(pruned) // 2]
    y0, y1, x0, x1 = render.group_boxes(r.groups, r.patch_grid, h, w)[gi]
    cy, cx = render.HEADER_H + (y0 + y1) // 2, (x0 + x1) // 2
    original = pictures[ti][cy - 1:cy + 2, cx - 1:cx + 2].astype(float).mean()
    masked = pictures[ti][cy - 1:cy + 2, w + render.PAD + cx - 1:w + render.PAD + cx + 2].astype(float).mean()
    assert abs(masked - render.DIM * original) < 12


def test_bundle_carries_settings_scores_mask_answers_timings(first: RunOutputs) -> None:
    r = first.view.result
    with zipfile.ZipFile(first.bundle) as zf:
        assert sorted(zf.namelist()) == ["kept_per_frame.csv", "result.json", "stts_masks.mp4"]
        data = json.loads(zf.read("result.json"))
        rows = zf.read("kept_per_frame.csv").decode().splitlines()
        with av.open(io.BytesIO(zf.read("stts_masks.mp4"))) as video:
            assert video.streams.video[0].codec_context.name == "h264"
    assert data["settings"]["keep_ratio"] == 0.4 and data["settings"]["num_frames"] == 10
    assert np.array_equal(np.asarray(data["keep_mask"]), r.keep_mask)
    assert np.asarray(data["scores"]).shape == r.scores.shape
    assert data["stts"]["answer"] == r.stts.answer and data["baseline"]["timings_s"]["vit_prefix"] > 0
    assert rows[0] == "frame,timestamp_s,kept_groups,pruned_groups" and len(rows) == 1 + r.keep_mask.shape[0]
    assert sum(int(row.split(",")[2]) for row in rows[1:]) == int(r.keep_mask.sum())


def test_frame_scrubber_names_group_score_rank_and_state(handlers: Handlers, first: RunOutputs) -> None:
    view = first.view
    r = view.result
    figure = handlers.scrub(3, 0.4, view)
    shade = figure.data[1]
    pr, pc = r.patch_grid
    assert np.asarray(shade.z).shape == (pr, pc)
    texts = [text for row in shade.text for text in row if text != "no group"]
    kept = [tx for tx in texts if tx.endswith("kept")]
    assert len(texts) == pr * pc - int((render.patch_owner(r.groups, r.patch_grid) < 0).sum())
    owner = render.patch_owner(r.groups, r.patch_grid)
    assert len(kept) == int(r.keep_mask[3][owner[owner >= 0]].sum())
    assert all("score" in tx and f"of {r.scores.size}" in tx for tx in texts)


def test_contact_sheet_pages_keep_256_frames_legible() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (256, 48, 64, 3), dtype=np.uint8)
    groups = np.arange(16).reshape(4, 4)
    canvas = render.build_canvas(frames, np.arange(256) / 8, groups, (4, 4))
    keep = np.ones((256, 4), dtype=bool)
    assert canvas.pages == 4 and canvas.tile_size[1] >= 96
    first_page, last_page = render.draw_masks(canvas, keep, 0), render.draw_masks(canvas, keep, 3)
    assert first_page.shape == last_page.shape and max(first_page.shape[:2]) <= 1200
    assert not np.array_equal(first_page, last_page)


def test_session_view_holds_no_full_frames(handlers: Handlers, first: RunOutputs) -> None:
    view = first.view
    assert view.result.frames.size == 0 and view.result.frames.base is None
    decoded = 10 * 252 * 252 * 3
    assert view.nbytes < decoded / 4
    assert all(isinstance(tile, bytes) for tile in view.canvas.tiles)


def test_spelling_of_a_folder_does_not_make_a_second_model(micro_checkpoint: Path, tmp_path: Path) -> None:
    cache = ModelCache(device="cpu", max_models=1)
    cache.configure(device="cpu", max_models=1, pinned=str(micro_checkpoint))
    link = tmp_path / "same-model"
    link.symlink_to(micro_checkpoint)
    first = cache.get(str(micro_checkpoint))
    assert cache.get(str(link)) is first and cache.get(f"{micro_checkpoint}/") is first and len(cache.sources) == 1
    other = tmp_path / "copy"
    other.mkdir()
    for item in micro_checkpoint.iterdir():
        if item.is_file():
            (other / item.name).write_bytes(item.read_bytes())
    cache.get(str(other))
    assert cache.peek(str(micro_checkpoint)) is first  # the pinned model outlives max_models


def test_public_mode_offers_listed_models_only(handlers: Handlers, clip: str, micro_checkpoint: Path) -> None:
    public = Handlers(ModelChoices(public=True))
    for typed in ("/etc", "/nonexistent", str(micro_checkpoint), "someone/some-model"):
        assert message_of(public.check, clip, QUESTION, typed, "learned", 8, 0.5, False) == NOT_OFFERED
    assert public.check(clip, QUESTION, BUILTIN_LABEL, "learned", 8, 0.5, False).source
    assert public.check(clip, QUESTION, HUB_MODELS[0], "learned", 8, 0.5, False).source == HUB_MODELS[0]
    custom = Handlers(ModelChoices(public=True, allow_custom=True))
    messages = {message_of(custom.run, clip, QUESTION, typed, "learned", 8, 0.5, False).split(" The previously")[0]
                for typed in ("/etc", "/nonexistent")}
    assert messages == {"Could not load that model."}


def test_gpu_task_arguments_and_result_pickle_without_cuda_tensors(handlers: Handlers, clip: str,
                                                                   micro_checkpoint: Path) -> None:
    pytest.importorskip("spaces", reason="the spaces package (ZeroGPU) is not installed")
    source = str(micro_checkpoint)
    handlers._load(source)
    args = (source, clip, QUESTION, RunSettings(keep_ratio=0.5, scorer="random", num_frames=8), LIMITS, 1)
    results = run_on_device(*args)

    def tensors(obj: object, seen: set[int]) -> list[torch.Tensor]:
        if id(obj) in seen:
            return []
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            return [obj]
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            obj = vars(obj)
        items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list | tuple) else []
        return [t for item in items for t in tensors(item, seen)]

    for payload in (args, results):
        assert pickle.loads(pickle.dumps(payload)) is not None
        assert not [t for t in tensors(payload, set()) if t.is_cuda]
    assert make_view(("k",) * 5, results[0], 0.5, "m").result.frames.size == 0  # type: ignore[arg-type]


def test_keep_rerun_waits_for_the_value_to_rest_and_only_reruns_keep_changes(
        handlers: Handlers, first: RunOutputs, clip: str, micro_checkpoint: Path) -> None:
    import time

    from app.settle import SETTLE_S

    request = type("R", (), {"session_hash": "visitor-1"})()
    moved = time.monotonic()
    handlers.preview(0.3, first.view, clip, str(micro_checkpoint), first.view.key[3], 10, False, 1, 0, request)
    handlers.settle(request)
    assert time.monotonic() - moved >= SETTLE_S
    other_frames = handlers.rerun(clip, QUESTION, str(micro_checkpoint), first.view.key[3], 12, 0.3, False, False,
                                  first.view)
    assert all(v == gr.skip() for v in other_frames)


@pytest.mark.slow
def test_measure_precisely_reports_medians_of_repeated_pairs(handlers: Handlers, clip: str,
                                                             micro_checkpoint: Path) -> None:
    from app.handlers import PRECISE_PAIRS

    out = handlers.run(clip, QUESTION, str(micro_checkpoint), "random", 8, 0.5, False, True)
    m = out.view.measured
    assert m is not None and m.pairs == PRECISE_PAIRS and len(m.ttft_speedups) == PRECISE_PAIRS
    for stats in (*m.ttft_ms.values(), *m.model_ms.values()):
        median, lo, hi = stats
        assert 0 < lo <= median <= hi
    assert f"over {PRECISE_PAIRS} baseline/STTS pairs" in out.speed_info
    assert out.details["measured"]["pairs"] == PRECISE_PAIRS


@pytest.mark.slow
def test_clip_with_damaged_packets_runs_and_says_how_many(handlers: Handlers, micro_checkpoint: Path,
                                                          tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.mp4", make_clip(3, num_frames=48).frames, fps=8)
    with av.open(str(good)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    for i in (10, 20, 30):
        pos, size = packets[i]
        data[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    out = handlers.run(str(bad), QUESTION, str(micro_checkpoint), "random", 48, 0.5, False)
    assert "3 damaged packet(s) of the video were skipped" in out.answer_info
    assert 40 <= out.view.result.keep_mask.shape[0] < 48


def test_bad_upload_is_a_line_and_a_toast_not_an_error_state(handlers: Handlers, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("a shopping list, not a video\n" * 30)
    message = "This file is not a video we can read (it looks like plain text)."
    with pytest.warns(UserWarning, match=re.escape(message)):  # outside a request, gradio's toast is a warning
        player, info = handlers.on_upload(str(text), 16)
    assert player == gr.skip() and info.startswith(f"⚠️ {message}")
    with pytest.warns(UserWarning, match=re.escape(message)):
        assert handlers.upload_other(str(text), 16) == (gr.skip(), info)
