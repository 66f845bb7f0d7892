"""STTS on the Qwen-VL families (Qwen3-VL, Qwen2.5-VL), each test run on both: tiny random checkpoints built
and saved here, loaded back through `load_backend`.

What is checked: keep 1.0 through the STTS path is the stock model (tokens and logits) at an even and an
odd frame count and on a non-square video; the packed suffix equals running every attention segment of
the kept tokens on its own; the prompt keeps the unpruned prompt's position columns and decoding goes on
from its largest position + 1; a temporal patch with nothing kept; the budget and the first temporal
patch; a row of the result per temporal patch; the fallback to the heuristic without scorer weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stts_core import kept_group_count, load_backend
from stts_core.data.synthetic import VOCABULARY, make_clip
from stts_core.data.video import frames_from_array
from stts_core.methods.budget import attention_bias, select_groups
from stts_core.methods.scorers import heuristic_scores
from stts_core.models.qwen_common.backend import QwenBackend
from stts_core.models.qwen_common.layout import token_mask
from stts_core.models.qwen_common.positions import decode_positions
from stts_core.models.qwen_common.vit import bias_in_model_order, biased_block
from stts_core.models.registry import family_of, get_family
from stts_core.pipeline import RunSettings, run, visual_pass
from stts_core.pipeline.visual import FALLBACK_NOTE

FAMILIES = ["qwen3_vl", "qwen2_5_vl", "qwen3_5"]
QUESTION = "what color is the moving object ?"


@pytest.fixture(scope="module", params=FAMILIES)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> QwenBackend:
    family = get_family(request.param)
    folder = family.tiny_checkpoint(tmp_path_factory.mktemp(family.name) / "ckpt", preset=family.test_preset,
                                    words=VOCABULARY)
    loaded = load_backend(str(folder), device="cpu")
    assert family_of(loaded) is family and isinstance(loaded, QwenBackend)
    return loaded


def clip(frames: int, height: int = 84, width: int = 84, seed: int = 11) -> np.ndarray:
    video = make_clip(seed, num_frames=max(frames, 4), size=max(height, width)).frames
    return np.ascontiguousarray(video[:frames, :height, :width])


def pruned(inputs, keep: float = 0.5, seed: int = 0) -> torch.Tensor:
    scores = torch.rand(inputs.num_frames, inputs.groups.shape[0], generator=torch.Generator().manual_seed(seed))
    return select_groups(scores, keep)


# Two temporal patches (4 or 3 frames): transformers' own Qwen2.5-VL positions agree with the reference
# rule there (the micro preset's one position per second), so the stock model is the reference.
@pytest.mark.parametrize("frames,height,width", [(4, 84, 84), (3, 84, 84), (4, 56, 84)])
def test_keep_one_is_the_stock_model(backend: QwenBackend, frames: int, height: int, width: int) -> None:
    inputs = backend.prepare(clip(frames, height, width), QUESTION)
    assert inputs.padded == (frames % 2 == 1)
    with torch.no_grad():
        stock = backend.model.generate(**inputs.tensors, max_new_tokens=6, do_sample=False)
        stock_logits = backend.model(**inputs.tensors).logits
        vp = visual_pass(backend, inputs, 1.0, "heuristic")
        assert vp.prune is None and bool(vp.keep_mask.all())
        llm = backend.llm_inputs(inputs, vp.prune)
        ours_logits = backend.model(input_ids=llm["input_ids"], attention_mask=llm["attention_mask"],
                                    position_ids=llm["position_ids"],
                                    mm_encoder_outputs=backend.encoder_outputs(vp.visual)).logits
    ours = backend.generate(inputs, vp.visual, vp.prune, max_new_tokens=6, stop_at_eos=False)
    new = stock[0, inputs.tensors["input_ids"].shape[1]:].tolist()
    assert ours.token_ids[: len(new)] == new
    assert torch.equal(ours_logits, stock_logits)


def test_a_non_square_video_keeps_its_aspect(backend: QwenBackend) -> None:
    inputs = backend.prepare(clip(4, 56, 84), QUESTION)
    rows, cols = inputs.patch_grid
    assert cols > rows and inputs.grid == (rows // 2, cols // 2)
    assert inputs.groups.shape == (inputs.grid[0] * inputs.grid[1], 4)


def _segment_loop(backend: QwenBackend, tokens: torch.Tensor, rotary, layout, kept: torch.Tensor) -> torch.Tensor:
    """The suffix the slow way: every block runs each attention segment of the kept tokens on its own."""
    rows = token_mask(kept, layout.patches_per_group)
    x, cos, sin = tokens[rows], rotary[0][rows], rotary[1][rows]
    for i in range(backend.scoring_layer + 2, backend.last_layer + 1):
        seg = layout.segment_ids(backend.block_kind(i))[kept].repeat_interleave(layout.patches_per_group)
        parts = []
        for s in torch.unique(seg):
            at = seg == s
            one = torch.tensor([0, int(at.sum())], dtype=torch.int32)
            parts.append(backend.vision.blocks[i](x[at], cu_seqlens=one, position_embeddings=(cos[at], sin[at])))
        x = torch.cat(parts)
    return x


@pytest.mark.parametrize("keep", [0.5, 0.3])
def test_the_packed_suffix_equals_a_loop_over_segments(backend: QwenBackend, keep: float) -> None:
    inputs = backend.prepare(clip(8), QUESTION)
    layout = inputs.geometry
    mask = pruned(inputs, keep)
    with torch.no_grad():
        prefix = backend.vit_prefix(inputs)
        after_k1 = backend._block(backend.scoring_layer + 1, prefix.tokens, prefix.rotary, backend._segments(layout))
        counter: list[int] = []
        state = backend.vit_suffix(prefix, inputs, mask, None, counter=counter)
        loop = _segment_loop(backend, after_k1, prefix.rotary, layout, layout.kept_groups(mask))
    kept_patches = int(mask.sum()) * layout.patches_per_group
    assert counter == [kept_patches] * (backend.last_layer - backend.scoring_layer - 1)
    torch.testing.assert_close(state.tokens, loop, atol=1e-5, rtol=1e-5)


def test_the_biased_block_with_a_zero_bias_is_the_stock_block(backend: QwenBackend) -> None:
    inputs = backend.prepare(clip(4), QUESTION)
    layout = inputs.geometry
    k1 = backend.scoring_layer + 1
    with torch.no_grad():
        prefix = backend.vit_prefix(inputs)
        stock = backend._block(k1, prefix.tokens, prefix.rotary, backend._segments(layout))
        zero = torch.zeros(layout.frames, layout.patches_per_frame)
        ours = biased_block(backend.vision.blocks[k1], prefix.tokens, prefix.rotary, zero, backend.rotate)
        rows = token_mask(layout.kept_groups(pruned(inputs)), layout.patches_per_group)
        some = biased_block(backend.vision.blocks[k1], prefix.tokens, prefix.rotary, zero, backend.rotate, rows=rows)
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(some, stock[rows], atol=1e-5, rtol=1e-5)  # kept rows only, every patch a key


def test_the_bias_reaches_block_k_plus_one_and_its_gradient_the_scores(backend: QwenBackend) -> None:
    inputs = backend.prepare(clip(8), QUESTION)  # four temporal patches: some kept beside the first
    prefix = backend.vit_prefix(inputs)
    scores = torch.rand(inputs.num_frames, inputs.groups.shape[0], requires_grad=True)
    mask = select_groups(scores.detach(), 0.5)
    bias = attention_bias(scores, inputs.groups, inputs.patches_per_frame)
    assert bias_in_model_order(bias, inputs.geometry).shape == (inputs.num_frames, inputs.patches_per_frame)
    plain = backend.connect(backend.vit_suffix(prefix, inputs, mask, None), inputs, mask)
    biased = backend.connect(backend.vit_suffix(prefix, inputs, mask, bias), inputs, mask)
    assert (plain - biased).abs().max() > 1e-4
    biased.pow(2).sum().backward()
    assert scores.grad is not None and scores.grad[1:].abs().sum() > 0


def test_pruned_prompt_keeps_the_unpruned_columns_and_decodes_from_max_plus_one(backend: QwenBackend) -> None:
    inputs = backend.prepare(clip(6), QUESTION)
    mask = pruned(inputs)
    llm = backend.llm_inputs(inputs, mask)
    ids = inputs.tensors["input_ids"][0]
    stay = torch.ones_like(ids, dtype=torch.bool)
    stay[(ids == backend.video_token_id).nonzero().squeeze(1)[~mask.reshape(-1)]] = False
    assert torch.equal(llm["input_ids"][0], ids[stay])
    assert torch.equal(llm["position_ids"][:, 0], inputs.positions[:, stay])
    assert int(llm["next_position"]) == int(inputs.positions.max()) + 1
    assert int((llm["input_ids"] == backend.video_token_id).sum()) == int(mask.sum())
    with torch.no_grad():
        vp = visual_pass(backend, inputs, 0.5, "random")
        llm = backend.llm_inputs(inputs, vp.prune)
        gen = backend.generate(inputs, vp.visual, vp.prune, max_new_tokens=5, stop_at_eos=False, llm=llm)
        # One pass without the cache over prompt + generated tokens, positions given the same way.
        new = torch.tensor(gen.token_ids[:-1])[None]
        positions = torch.cat([llm["position_ids"], decode_positions(int(llm["next_position"]), new.shape[1],
                                                                     new.device)], dim=2)
        full = backend.model(input_ids=torch.cat([llm["input_ids"], new], 1), position_ids=positions,
                             attention_mask=torch.ones(1, positions.shape[2], dtype=torch.long),
                             mm_encoder_outputs=backend.encoder_outputs(vp.visual)).logits
    start = llm["input_ids"].shape[1] - 1
    assert full[0, start:].argmax(-1).tolist() == gen.token_ids


def test_a_temporal_patch_with_every_group_pruned(backend: QwenBackend) -> None:
    inputs = backend.prepare(clip(8), QUESTION)
    layout = inputs.geometry
    mask = pruned(inputs, 0.6)
    mask[2] = False
    with torch.no_grad():
        prefix = backend.vit_prefix(inputs)
        state = backend.vit_suffix(prefix, inputs, mask, None)
        visual = backend.connect(state, inputs, mask)
        loop = _segment_loop(backend, backend._block(backend.scoring_layer + 1, prefix.tokens, prefix.rotary,
                                                     backend._segments(layout)), prefix.rotary, layout,
                             layout.kept_groups(mask))
    torch.testing.assert_close(state.tokens, loop, atol=1e-5, rtol=1e-5)
    for kind in {backend.block_kind(i) for i in range(backend.last_layer + 1)}:
        cu = layout.cu_seqlens(kind, layout.kept_groups(mask))
        assert bool((cu[1:] > cu[:-1]).all()) and int(cu[-1]) == int(mask.sum()) * 4
    assert visual.shape[0] == int(mask.sum())
    gen = backend.generate(inputs, visual, mask, max_new_tokens=3, stop_at_eos=False)
    assert len(gen.token_ids) == 3


def test_merged_tokens_of_kept_groups_come_in_placeholder_order(backend: QwenBackend) -> None:
    """Where nothing after block k+1 differs (no bias, the last block's output per kept group is what the
    full run gives when every group is kept), the rows follow the raster order of the keep mask."""
    inputs = backend.prepare(clip(4), QUESTION)
    layout = inputs.geometry
    mask = pruned(inputs)
    with torch.no_grad():
        full = backend.vit_suffix(backend.vit_prefix(inputs), inputs, None, None)
        from stts_core.models.qwen_common.vit import merge_kept

        every = merge_kept(backend.vision.merger, full.tokens, layout, None)
        some = merge_kept(backend.vision.merger, full.tokens, layout, layout.kept_groups(mask))
    torch.testing.assert_close(some, every[mask.reshape(-1)])


@pytest.mark.parametrize("keep", [0.5, 0.3])
def test_run_budget_first_temporal_patch_and_one_row_per_temporal_patch(backend: QwenBackend, keep: float) -> None:
    frames = clip(7)
    result = run(backend, frames_from_array(frames), "what moves ?",
                 RunSettings(keep_ratio=keep, scorer="heuristic", num_frames=7, max_new_tokens=2))
    rows, groups = result.keep_mask.shape
    assert rows == 4 and result.frame_unit == "temporal patch"
    assert int(result.keep_mask.sum()) == kept_group_count(rows, groups, keep) == result.stts.visual_tokens
    assert bool(result.keep_mask[0].all())
    assert result.frames.shape[0] == rows == len(result.timestamps)
    assert result.row_times.shape == (rows, 2) and result.row_times[-1, 0] == result.row_times[-1, 1]
    np.testing.assert_allclose(result.timestamps, result.row_times[:, 0])
    assert any("temporal patch" in n for n in result.notes) and any("padded" in n for n in result.notes)
    assert result.baseline is not None and result.baseline.visual_tokens == rows * groups


def test_heuristic_scores_compare_a_temporal_patch_with_the_previous_one(backend: QwenBackend) -> None:
    still = np.repeat(clip(2, seed=4)[:1], 6, axis=0)  # six identical frames: three identical temporal patches
    inputs = backend.prepare(still, QUESTION)
    with torch.no_grad():
        scores = heuristic_scores(backend.vit_prefix(inputs).hidden, inputs.groups)
    assert bool((scores[0] == 1).all()) and float(scores[1:].max()) < 1e-4


def test_a_checkpoint_without_scorer_weights_runs_the_heuristic_and_says_so(backend: QwenBackend, tmp_path: Path) -> None:
    stock_class = type(backend.model).__mro__[1]  # the transformers class the family's model subclasses
    stock = stock_class(backend.model.config)
    stock.load_state_dict({k: v for k, v in backend.model.state_dict().items()
                           if not k.startswith("temporal_token_scorer.")})
    stock.save_pretrained(tmp_path, safe_serialization=True)
    backend.processor.save_pretrained(tmp_path)
    loaded = load_backend(str(tmp_path), device="cpu")
    assert not loaded.has_learned_scorer
    result = run(loaded, frames_from_array(clip(4)), "what moves ?",
                 RunSettings(keep_ratio=0.5, scorer="learned", num_frames=4, max_new_tokens=2))
    assert result.scorer_used == "heuristic" and FALLBACK_NOTE in result.notes


def test_one_frame_is_one_padded_temporal_patch(backend: QwenBackend) -> None:
    inputs = backend.prepare(clip(1), QUESTION)
    assert inputs.num_frames == 1 and inputs.padded
    vp = visual_pass(backend, inputs, 0.5, "heuristic")
    assert bool(vp.keep_mask.all())  # the first temporal patch is never pruned


def test_several_questions_share_the_video_part(backend: QwenBackend) -> None:
    frames = clip(4)
    questions = ["what moves ?", "what color is the moving object ?"]
    shared = backend.prepare_questions(frames, questions)
    for question, inputs in zip(questions, shared, strict=True):
        alone = backend.prepare(frames, question)
        assert torch.equal(inputs.tensors["input_ids"], alone.tensors["input_ids"])
        assert torch.equal(inputs.positions, alone.positions)


def test_the_app_draws_a_row_per_temporal_patch_with_both_frame_times(backend: QwenBackend) -> None:
    from app import render, views

    result = run(backend, frames_from_array(clip(6)), "what moves ?",
                 RunSettings(keep_ratio=0.5, scorer="heuristic", num_frames=6, max_new_tokens=2))
    first, second = result.row_times[1]
    assert render.frame_label(1, result.row_times[1]) == f"#1  {first:.2f}s+{second:.2f}s"
    view = views.make_view(("clip", "qwen", 6, "heuristic", False), result, 0.5, "qwen")
    assert view.canvas.shape == result.keep_mask.shape and len(view.scrub) == result.keep_mask.shape[0]
    out = views.render_run(view, backend.has_learned_scorer)
    assert "over 3 temporal patches" in out.masks_info and "temporal patch 0 is always kept whole" in out.masks_info
    assert all("s+" in label for label in out.heatmap.data[0].y)
    assert "STTS temporal patches: 3" in out.answer_info


def test_the_zero_gpu_estimate_is_the_familys(backend: QwenBackend, tmp_path: Path) -> None:
    from app import models

    folder = backend.save(tmp_path / "app-model")
    models.CACHE.configure(device="cpu", max_models=2)
    loaded = models.CACHE.get(str(folder))
    family = family_of(loaded)
    assert models.gpu_seconds(32, 2, str(folder)) == int(min(models.GPU_MAX_S, family.gpu_seconds(32, 2)))
    assert models.gpu_seconds(32, 2) == int(min(models.GPU_MAX_S, 2 * (20.0 + 0.75 * 32)))  # not loaded: the default


def test_fit_scorer_and_train_work_on_the_family(backend: QwenBackend, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from stts_core.cli.fit_scorer import main as fit
    from stts_core.cli.train import main as train

    source = backend.save(tmp_path / "source")
    assert fit(["--model", str(source), "--out", str(tmp_path / "fitted"), "--steps", "2", "--batch", "1",
                "--frames", "4", "--eval-every", "2", "--threads", "1", "--lr", "1e-2"]) == 0
    before, after = load_file(str(source / "model.safetensors")), load_file(str(tmp_path / "fitted/model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("temporal_token_scorer.") for k in changed)
    preset = family_of(backend).test_preset
    assert train(["--preset", preset, "--out", str(tmp_path / "trained"), "--steps", "2", "--batch", "1",
                  "--frames", "4", "--eval-every", "1000", "--save-every", "2", "--keep", "0.5", "--threads", "1"]) == 0
    again = load_backend(str(tmp_path / "trained"), device="cpu")
    assert family_of(again) is family_of(backend) and again.has_learned_scorer
