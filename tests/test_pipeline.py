"""pipeline.run end to end on the micro Molmo2: STTS against the unpruned baseline, budgets, scorers and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from stts_core.data.synthetic import make_clip
from stts_core.data.video import VideoError, frames_from_array
from stts_core.data.video_encode import write_video
from stts_core.methods.budget import kept_group_count
from stts_core.pipeline import STAGES, TTFT_STAGES, RunSettings, agreement, run, visual_pass
from stts_core.pipeline import request as pipeline

GROUPS = 4  # groups per frame in the micro preset (6x6 patches, 3x3 pooling)
PATCHES = 36
QUESTION = "does the red triangle move ?"


@pytest.fixture(scope="module")
def clip():
    return make_clip(1, num_frames=16)


@pytest.fixture(scope="module")
def video(clip):
    return frames_from_array(clip.frames)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory, clip):
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", clip.frames, fps=8.0)


def _settings(**kw) -> RunSettings:
    base = dict(num_frames=4, max_new_tokens=4)
    base.update(kw)
    return RunSettings(**base)


@pytest.mark.parametrize("scorer", ["learned", "heuristic", "random"])
def test_keep_one_matches_baseline(micro_backend, video, scorer):
    result = run(micro_backend, video, QUESTION, _settings(keep_ratio=1.0, scorer=scorer, stop_at_eos=False))
    base, stts = result.baseline, result.stts
    assert base is not None
    assert stts.answer == base.answer
    assert stts.token_ids == base.token_ids
    assert len(stts.token_ids) == 4
    assert stts.visual_tokens == base.visual_tokens == 4 * GROUPS
    assert stts.prompt_tokens == base.prompt_tokens
    assert stts.vit_suffix_tokens == base.vit_suffix_tokens == 4 * PATCHES
    assert result.keep_mask.all() and result.keep_mask.shape == (4, GROUPS)
    assert result.agree is True


def test_keep_one_matches_stock_generate(micro_backend, video):
    four = frames_from_array(video.frames[[0, 5, 10, 15]])
    result = run(micro_backend, four, QUESTION, _settings(keep_ratio=1.0, stop_at_eos=False, max_new_tokens=6))
    assert np.array_equal(result.frames, four.frames)
    inputs = micro_backend.prepare(four.frames, QUESTION, four.metadata())
    with torch.no_grad():
        stock = micro_backend.model.generate(**inputs.tensors, max_new_tokens=6, do_sample=False)
    new = stock[0, inputs.tensors["input_ids"].shape[1] :].tolist()
    assert result.stts.token_ids[: len(new)] == new
    assert result.baseline.token_ids[: len(new)] == new


@pytest.mark.parametrize("scorer", ["learned", "heuristic", "random"])
@pytest.mark.parametrize("keep_ratio", [0.5, 0.3, 0.75])
def test_scorers_keep_exact_budget(micro_backend, video, scorer, keep_ratio):
    result = run(micro_backend, video, QUESTION, _settings(keep_ratio=keep_ratio, scorer=scorer, max_new_tokens=2))
    expected = kept_group_count(4, GROUPS, keep_ratio)
    assert expected == max(GROUPS, round(keep_ratio * GROUPS * 4))
    assert result.scorer_used == scorer
    assert result.keep_mask.shape == result.scores.shape == (4, GROUPS)
    assert result.keep_mask.dtype == bool
    assert int(result.keep_mask.sum()) == expected
    assert bool(result.keep_mask[0].all())
    assert np.isfinite(result.scores).all()
    assert result.scores.min() >= 0.0 and result.scores.max() <= 1.0
    stts, base = result.stts, result.baseline
    assert stts.visual_tokens == expected
    assert base.visual_tokens == 4 * GROUPS
    assert stts.prompt_tokens == base.prompt_tokens - (4 * GROUPS - expected)
    assert stts.vit_suffix_tokens == expected * 9
    assert base.vit_suffix_tokens == 4 * PATCHES
    # Among the prunable frames, every kept group scores at least as high as every pruned one.
    rest_keep, rest_scores = result.keep_mask[1:], result.scores[1:]
    if rest_keep.any() and (~rest_keep).any():
        assert rest_scores[rest_keep].min() >= rest_scores[~rest_keep].max()


def test_random_scorer_follows_seed(micro_backend, video):
    a = run(micro_backend, video, QUESTION, _settings(scorer="random", seed=3, run_baseline=False, max_new_tokens=1))
    b = run(micro_backend, video, QUESTION, _settings(scorer="random", seed=3, run_baseline=False, max_new_tokens=1))
    c = run(micro_backend, video, QUESTION, _settings(scorer="random", seed=4, run_baseline=False, max_new_tokens=1))
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.keep_mask, b.keep_mask)
    assert not np.array_equal(a.scores, c.scores)


def test_result_shapes_timings_and_json(micro_backend, video):
    result = run(micro_backend, video, QUESTION, _settings(keep_ratio=0.5))
    assert result.frames.shape[0] == 4 and result.frames.dtype == np.uint8
    assert result.timestamps.shape == (4,)
    assert np.all(np.diff(result.timestamps) > 0)
    assert result.groups.shape == (GROUPS, 9)
    assert result.grid == (2, 2) and result.patch_grid == (6, 6)
    for model_run in (result.stts, result.baseline):
        assert tuple(model_run.timings) == STAGES
        assert all(v >= 0.0 and math.isfinite(v) for v in model_run.timings.values())
        assert model_run.timings["vit_prefix"] > 0 and model_run.timings["llm_prefill"] > 0
        assert model_run.ttft_s <= model_run.model_s <= model_run.e2e_s
        assert model_run.num_frames == 4
    data = json.loads(json.dumps(result.to_json()))
    assert data["keep_mask_shape"] == [4, GROUPS]
    assert data["kept_groups"] == 8
    assert data["stts"]["visual_tokens"] == 8 and data["baseline"]["visual_tokens"] == 16
    assert data["stts"]["answer"] == result.stts.answer
    assert set(data["stts"]["timings_s"]) == set(STAGES)
    assert data["agree"] == result.agree
    assert data["ttft_speedup"] == pytest.approx(result.baseline.ttft_s / result.stts.ttft_s)


def test_without_baseline(micro_backend, video):
    result = run(micro_backend, video, QUESTION, _settings(run_baseline=False))
    assert result.baseline is None
    assert result.agree is None and result.ttft_speedup is None and result.e2e_speedup is None
    assert result.to_json()["baseline"] is None
    assert result.stts.visual_tokens == 8


def test_match_budget_doubles_frames_at_same_token_count(micro_backend, video):
    settings = _settings(match_budget=True, keep_ratio=0.5, num_frames=4, max_new_tokens=2)
    assert settings.stts_frames() == 8
    result = run(micro_backend, video, QUESTION, settings)
    assert result.stts.num_frames == 8 and result.frames.shape[0] == 8
    assert result.keep_mask.shape == (8, GROUPS)
    assert result.baseline.num_frames == 4
    assert result.stts.visual_tokens == kept_group_count(8, GROUPS, 0.5)
    assert abs(result.stts.visual_tokens - result.baseline.visual_tokens) <= 1
    assert result.stts.visual_tokens == result.baseline.visual_tokens
    assert any("Same token budget" in note for note in result.notes)


def test_match_budget_from_file(micro_backend, mp4):
    settings = _settings(match_budget=True, keep_ratio=0.5, num_frames=3, max_new_tokens=1)
    result = run(micro_backend, str(mp4), QUESTION, settings)
    assert result.stts.num_frames == 6 and result.baseline.num_frames == 3
    assert result.stts.visual_tokens == kept_group_count(6, GROUPS, 0.5) == 12
    assert result.baseline.visual_tokens == 12


@pytest.mark.parametrize("frames", [4, 6])
def test_decoded_file_gives_requested_frames(micro_backend, mp4, frames):
    result = run(micro_backend, mp4, QUESTION, _settings(num_frames=frames, max_new_tokens=2))
    assert result.frames.shape[0] == frames
    assert result.frames.shape[1:] == (252, 252, 3)
    assert result.stts.num_frames == result.baseline.num_frames == frames
    assert result.keep_mask.shape == (frames, GROUPS)
    assert result.stts.timings["decode_video"] > 0 and result.baseline.timings["decode_video"] > 0
    assert int(result.keep_mask.sum()) == kept_group_count(frames, GROUPS, 0.5)


def test_decoded_frames_follow_the_clip(micro_backend, mp4, clip):
    result = run(micro_backend, mp4, QUESTION, _settings(num_frames=16, run_baseline=False, max_new_tokens=1))
    assert result.frames.shape[0] == 16
    err = np.abs(result.frames.astype(np.int16) - clip.frames.astype(np.int16)).mean()
    assert err < 6.0


def test_first_run_reports_warmup(micro_checkpoint, video):
    from stts_core.models.molmo2.checkpoint import load_molmo2

    backend = load_molmo2(str(micro_checkpoint), device="cpu")
    first = run(backend, video, QUESTION, _settings(run_baseline=False, max_new_tokens=1))
    second = run(backend, video, QUESTION, _settings(run_baseline=False, max_new_tokens=1))
    assert first.warmup and any("warm-up" in n for n in first.notes)
    assert not second.warmup and not any("warm-up" in n for n in second.notes)


@pytest.mark.parametrize(
    ("kwargs", "question", "match"),
    [
        ({}, "", "question"),
        ({}, "   ", "question"),
        ({}, "x" * 2001, "too long"),
        ({}, "what is \ud800 this ?", "not valid text"),
        ({}, None, "question"),
        ({"keep_ratio": 0.0}, QUESTION, "keep ratio"),
        ({"keep_ratio": 1.5}, QUESTION, "keep ratio"),
        ({"keep_ratio": float("nan")}, QUESTION, "keep ratio"),
        ({"keep_ratio": -0.2}, QUESTION, "keep ratio"),
        ({"scorer": "oracle"}, QUESTION, "Unknown method"),
        ({"num_frames": 0}, QUESTION, "number of frames"),
        ({"num_frames": 2.5}, QUESTION, "number of frames"),
        ({"max_new_tokens": 0}, QUESTION, "max_new_tokens"),
    ],
)
def test_invalid_requests_raise_readable_errors(micro_backend, video, kwargs, question, match):
    with pytest.raises(ValueError, match=match) as info:
        run(micro_backend, video, question, _settings(**kwargs))
    message = str(info.value)
    assert "Traceback" not in message and "\n" not in message


def test_missing_video_file(micro_backend, tmp_path):
    with pytest.raises(VideoError):
        run(micro_backend, tmp_path / "absent.mp4", QUESTION, _settings())


def test_text_file_is_not_a_video(micro_backend, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video at all\n" * 20)
    with pytest.raises(VideoError) as info:
        run(micro_backend, str(fake), QUESTION, _settings())
    assert "\n" not in str(info.value)


def test_visual_pass_none_is_unmodified(micro_backend, video):
    inputs = micro_backend.prepare(video.frames[:4], QUESTION)
    with torch.no_grad():
        plain = visual_pass(micro_backend, inputs, 1.0, None)
        kept_all = visual_pass(micro_backend, inputs, 1.0, "learned")
        pruned = visual_pass(micro_backend, inputs, 0.5, "learned")
    assert plain.scores is None and plain.keep_mask is None and plain.prune is None
    assert kept_all.prune is None and bool(kept_all.keep_mask.all())
    assert torch.equal(plain.visual, kept_all.visual)
    assert pruned.prune is not None and torch.equal(pruned.prune, pruned.keep_mask)
    assert pruned.visual.shape[0] == int(pruned.keep_mask.sum()) == 8
    assert pruned.suffix_tokens == 8 * 9 and plain.suffix_tokens == 4 * PATCHES


def test_normalize_answer():
    assert agreement.normalize_answer("  Two  Red. ") == "two red"
    assert agreement.normalize_answer("") == ""


def test_no_answer_is_never_agreement():
    assert agreement.answers_agree("Red.", " red ")
    assert not agreement.answers_agree("", "")
    assert not agreement.answers_agree("  ", "red")
    assert not agreement.answers_agree("red", "blue")


def test_baseline_and_stts_share_one_open_and_one_decode(micro_backend, mp4, monkeypatch):
    from stts_core.data import video as video_module

    opened, decoded = [], []
    real_open, real_decode = video_module.open_video, video_module.VideoFile._decode

    def counting_open(*args, **kwargs):
        opened.append(args[0])
        return real_open(*args, **kwargs)

    def counting_decode(self, n):
        decoded.append(n)
        return real_decode(self, n)

    monkeypatch.setattr(pipeline, "open_video", counting_open)
    monkeypatch.setattr(video_module.VideoFile, "_decode", counting_decode)
    result = run(micro_backend, mp4, QUESTION, _settings(keep_ratio=0.5))
    assert opened == [mp4] and decoded == [4]
    assert result.baseline.timings["decode_video"] == result.stts.timings["decode_video"] == result.decode_s > 0
    budget = run(micro_backend, mp4, QUESTION, _settings(keep_ratio=0.5, match_budget=True))
    assert decoded == [4, 4, 8]  # a second frame count is decoded once more, from the same open file
    assert budget.baseline.num_frames == 4 and budget.stts.num_frames == 8


def test_speedups_use_the_pipeline_definitions(micro_backend, video):
    result = run(micro_backend, video, QUESTION, _settings(keep_ratio=0.5))
    base, stts = result.baseline, result.stts
    assert base.ttft_s == pytest.approx(sum(base.timings[s] for s in TTFT_STAGES))
    assert base.model_s == pytest.approx(base.ttft_s + base.timings["decoding"])
    assert base.e2e_s == pytest.approx(sum(base.timings.values()))
    assert result.model_speedup == pytest.approx(base.model_s / stts.model_s)
    assert result.e2e_speedup == pytest.approx(base.e2e_s / stts.e2e_s)


def test_a_clip_shorter_than_asked_says_so(micro_backend, tmp_path):
    short = write_video(tmp_path / "short.mp4", make_clip(2, num_frames=5).frames, fps=8.0)
    result = run(micro_backend, short, QUESTION, _settings(num_frames=12, run_baseline=False))
    assert result.stts.num_frames == 5
    assert any("only 5 frames" in n for n in result.notes)


def test_details_carry_scores_and_keep_mask(micro_backend, video):
    data = json.loads(json.dumps(run(micro_backend, video, QUESTION, _settings(keep_ratio=0.5)).to_json()))
    assert np.asarray(data["keep_mask"]).shape == (4, GROUPS) and np.asarray(data["scores"]).shape == (4, GROUPS)
    assert sum(map(sum, data["keep_mask"])) == data["kept_groups"] == 8


def test_on_stage_hears_every_stage_of_both_runs_in_order(micro_backend, mp4):
    heard: list[tuple[str, str]] = []
    run(micro_backend, mp4, QUESTION, _settings(keep_ratio=0.5), on_stage=lambda r, s: heard.append((r, s)))
    order = [s for s in STAGES if s != "decode_video"]
    assert heard == [("baseline", s) for s in order] + [("stts", s) for s in order]


def test_inference_runs_record_no_autograd_graph(micro_backend, video, monkeypatch):
    """The model's weights require gradients (training shares them), so an inference run must turn
    autograd off itself: recording the graph made every stage slower, the pruned path's many small ops most."""
    assert any(p.requires_grad for p in micro_backend.model.parameters())
    seen: list[bool] = []
    for name in ("vit_prefix", "vit_suffix", "generate"):
        original = getattr(micro_backend, name)

        def spy(*args, _original=original, **kwargs):
            seen.append(torch.is_grad_enabled())
            return _original(*args, **kwargs)

        monkeypatch.setattr(micro_backend, name, spy)
    run(micro_backend, video, QUESTION, _settings(keep_ratio=0.5))
    pipeline.warm_up(micro_backend, num_frames=4, rounds=1)
    assert seen and not any(seen)
    assert torch.is_grad_enabled()  # restored for the caller


@pytest.mark.parametrize("scorer", ["learned", "heuristic"])
def test_a_budget_that_prunes_nothing_scores_after_the_timed_stages(micro_backend, video, scorer, monkeypatch):
    """Keep 1 at inference: the scorer runs once, after the connector, outside the "scoring" stage; the
    scores equal those the method gives in place (keep 0.5) and the page says the STTS run is unpruned."""
    from stts_core.pipeline import visual as visual_module
    from stts_core.timing import StageTimer

    inputs = micro_backend.prepare(video.frames[:4], QUESTION)
    events: list[str] = []
    real_scores = visual_module.method_scores

    def recording(*args, **kwargs):
        events.append("score")
        return real_scores(*args, **kwargs)

    monkeypatch.setattr(visual_module, "method_scores", recording)
    timer = StageTimer(micro_backend.device, lambda stage: events.append(stage))
    with torch.no_grad():
        unpruned = visual_pass(micro_backend, inputs, 1.0, scorer, timer=timer)
        pruned = visual_pass(micro_backend, inputs, 0.5, scorer)
    assert events[:4] == ["vit_prefix", "scoring", "vit_suffix", "connector"]
    assert events[4] == "score"  # after the connector: the first run's only scorer call
    assert unpruned.prune is None and bool(unpruned.keep_mask.all())
    torch.testing.assert_close(unpruned.scores, pruned.scores)
    result = run(micro_backend, video, QUESTION, _settings(keep_ratio=1.0, scorer=scorer))
    assert pipeline.UNPRUNED_NOTE in result.notes and result.scores is not None
    assert pipeline.UNPRUNED_NOTE not in run(micro_backend, video, QUESTION, _settings(keep_ratio=0.5)).notes


def test_training_at_keep_one_still_scores_in_place(micro_backend, video):
    """With autograd on, the auxiliary loss needs the scores from the graph, so nothing is deferred."""
    inputs = micro_backend.prepare(video.frames[:4], QUESTION)
    with torch.enable_grad():
        vp = visual_pass(micro_backend, inputs, 1.0, "learned")
    assert vp.scores is not None and vp.scores.requires_grad


def test_cpu_share_reads_idle_time_as_a_low_share_and_is_none_off_the_cpu():
    """A stretch spent sleeping used no CPU, so its share is near 0; on an accelerator there is none."""
    import time

    from stts_core.timing import CpuShare

    clock = CpuShare("cpu")
    time.sleep(0.05)
    assert clock.share() < 0.2
    assert CpuShare("meta").share() is None


def test_a_contended_run_is_flagged_on_the_page(micro_backend, video):
    """Each run records its CPU share; the page says timings are disturbed only when one ran starved."""
    import dataclasses

    pytest.importorskip("gradio")
    from app.text import speed_markdown
    from stts_core.pipeline.result import CONTENDED_SHARE

    result = run(micro_backend, video, QUESTION, _settings(keep_ratio=0.5))
    assert result.stts.cpu_share is not None and result.stts.cpu_share > 0
    assert result.stts.to_json()["cpu_share"] == result.stts.cpu_share
    steady = dataclasses.replace(result, stts=dataclasses.replace(result.stts, cpu_share=0.99),
                                 baseline=dataclasses.replace(result.baseline, cpu_share=0.97))
    starved = dataclasses.replace(steady, baseline=dataclasses.replace(result.baseline, cpu_share=0.41))
    assert steady.contended_share is None and "disturbed" not in speed_markdown(steady)
    assert starved.contended_share == 0.41 < CONTENDED_SHARE
    assert "**Timings disturbed**: a run got only 41% of its CPU threads' time" in speed_markdown(starved)


def test_measure_precisely_counts_the_pairs_that_ran_starved(micro_backend, video):
    """Repeated pairs report how many had a run below CONTENDED_SHARE, and say when most did."""
    import dataclasses

    pytest.importorskip("gradio")
    from app.text import measured_markdown
    from app.views import measure

    result = run(micro_backend, video, QUESTION, _settings(keep_ratio=0.5))

    def pair(base: float, stts: float):
        return dataclasses.replace(result, baseline=dataclasses.replace(result.baseline, cpu_share=base),
                                   stts=dataclasses.replace(result.stts, cpu_share=stts))

    warm_up = pair(0.1, 0.1)  # the first pair is a warm-up and is not counted
    steady = measure([warm_up, *(pair(0.98, 0.99) for _ in range(4))])
    assert steady.disturbed == 0 and steady.lowest_share == 0.98 and "disturbed" not in measured_markdown(steady)
    few = measure([warm_up, pair(0.98, 0.99), pair(0.5, 0.99), pair(0.97, 0.99), pair(0.99, 0.99)])
    assert few.disturbed == 1 and few.lowest_share == 0.5
    assert "**1 of 4 pairs disturbed** (a run got as little as 50%" in measured_markdown(few)
    assert "not the model's" not in measured_markdown(few)
    most = measure([warm_up, pair(0.5, 0.6), pair(0.4, 0.99), pair(0.97, 0.99), pair(0.99, 0.7)])
    assert most.disturbed == 3 and "the medians are not the model's either" in measured_markdown(most)
