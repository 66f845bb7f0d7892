"""Molmo2 backend: STTS stages against the stock transformers model, checkpoints and the scorer converter.

Everything runs a micro random Molmo2 (84 px frames: 6x6 patches, 2x2 groups of 3x3 patches per frame,
4 ViT blocks, scoring after block 0) saved to disk and loaded back through `load_molmo2`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Molmo2ForConditionalGeneration

from stts_core.data.synthetic import VOCABULARY, make_clip
from stts_core.data.video import frames_from_array
from stts_core.methods.budget import attention_bias, groups_to_patch_mask, kept_group_count, select_groups
from stts_core.methods.packing import PackedLayout, PaddedFrames, padded_slot_pairs
from stts_core.models.base import ModelLoadError
from stts_core.models.molmo2.backend import Molmo2Backend
from stts_core.models.molmo2.build import (
    PRESETS,
    build_config,
    build_model,
    build_processor,
    build_tokenizer,
    save_checkpoint,
    sincos_positions,
)
from stts_core.models.molmo2.checkpoint import convert_reference_scorer, load_molmo2
from stts_core.models.molmo2.modeling import Molmo2ForSTTS, STTSSettings, default_scoring_layer
from stts_core.pipeline import request as pipeline

NUM_FRAMES = 4
REFERENCE_PREFIX = "model.vision_backbone.temporal_token_scorer."
# A hand-made selection for 4 frames x 4 groups: first frame whole, one frame emptied, uneven others.
HANDMADE_KEEP = [[1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]]


@pytest.fixture(scope="module")
def clip():
    return make_clip(3, num_frames=NUM_FRAMES)


@pytest.fixture(scope="module")
def inputs(micro_backend, clip):
    return micro_backend.prepare(clip.frames, clip.qas[0].question)


@pytest.fixture(scope="module")
def prefix(micro_backend, inputs):
    with torch.no_grad():
        return micro_backend.vit_prefix(inputs)


@pytest.fixture(scope="module")
def learned_scores(micro_backend, inputs, prefix):
    with torch.no_grad():
        return micro_backend.learned_scores(prefix, inputs)


def _keep_mask(kind: str, scores: torch.Tensor) -> torch.Tensor:
    if kind == "learned":
        return select_groups(scores, 0.5)
    return torch.tensor(HANDMADE_KEEP, dtype=torch.bool)


def _scorer_state(scorer: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in scorer.state_dict().items()}


def _reference_named(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {REFERENCE_PREFIX + k: v.contiguous() for k, v in state.items()}


def _stock_checkpoint(out_dir: Path, seed: int = 5) -> Path:
    """A checkpoint saved by the stock Molmo2ForConditionalGeneration (no STTS scorer weights)."""
    tokenizer = build_tokenizer(VOCABULARY)
    config = build_config("micro", tokenizer)
    torch.manual_seed(seed)
    model = Molmo2ForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    build_processor(tokenizer, PRESETS["micro"]["image_size"]).save_pretrained(out_dir)
    return out_dir


# ------------------------------------------------------------------ geometry of the prepared inputs


def test_prepare_geometry(micro_backend, inputs):
    t = inputs.tensors
    assert inputs.num_frames == NUM_FRAMES
    assert inputs.patches_per_frame == 36 and inputs.patch_grid == (6, 6)
    assert tuple(inputs.groups.shape) == (4, 9) and inputs.grid == (2, 2)
    assert t["pixel_values_videos"].shape == (NUM_FRAMES, 36, 14 * 14 * 3)
    placeholders = int((t["input_ids"] == micro_backend.image_token_id).sum())
    assert placeholders == NUM_FRAMES * 4
    covered = torch.sort(inputs.groups.reshape(-1)).values
    assert torch.equal(covered, torch.arange(36))


def test_preprocessing_stays_on_the_cpu_for_a_cpu_model(micro_backend, monkeypatch):
    """The processor gets a `device` only when the model sits on an accelerator (and it is wanted)."""
    seen: list[dict] = []
    original = micro_backend.processor

    class Recording:
        def __call__(self, **kwargs):
            seen.append(kwargs)
            return original(**kwargs)

        def __getattr__(self, name: str):
            return getattr(original, name)

    frames = make_clip(3, num_frames=NUM_FRAMES).frames
    monkeypatch.setattr(micro_backend, "processor", Recording())
    micro_backend.prepare(frames, "what moves ?")
    assert "device" not in seen[-1]
    monkeypatch.setattr(type(micro_backend), "device", property(lambda self: torch.device("cuda", 0)))
    assert micro_backend._preprocess_device() == {"device": "cuda:0"}
    monkeypatch.setattr(micro_backend, "preprocess_on_device", False)
    assert micro_backend._preprocess_device() == {}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_preprocessing_matches_the_cpu_processor(micro_checkpoint):
    backend = load_molmo2(str(micro_checkpoint), device="cuda")
    frames = make_clip(3, num_frames=NUM_FRAMES).frames
    on_gpu = backend.prepare(frames, "what moves ?")
    backend.preprocess_on_device = False
    on_cpu = backend.prepare(frames, "what moves ?")
    assert on_gpu.tensors.keys() == on_cpu.tensors.keys()
    for key, value in on_cpu.tensors.items():
        if key == "pixel_values_videos":  # bilinear rounding may differ by one grey level: 2/255 after normalising
            torch.testing.assert_close(on_gpu.tensors[key].float(), value.float(), atol=2.5 / 255, rtol=0)
        else:
            assert torch.equal(on_gpu.tensors[key], value), key


def test_default_scoring_layer_and_settings():
    assert default_scoring_layer(27) == 3
    assert default_scoring_layer(25) == 3
    assert default_scoring_layer(4) == 0
    assert default_scoring_layer(5) == 1
    for n in range(2, 40):
        assert 0 <= default_scoring_layer(n) <= n - 2
    config = build_config("micro")
    config.stts = {"layer": 3}
    with pytest.raises(ValueError, match="at least one ViT block"):
        STTSSettings.from_config(config)
    config.stts = None
    assert STTSSettings.from_config(config).layer == default_scoring_layer(config.vision_config.num_hidden_layers)


# ------------------------------------------------------------------ keep 1.0 is the stock model


def test_keep_one_logits_equal_stock_forward(micro_backend, inputs):
    model = micro_backend.model
    with torch.no_grad():
        stock = model(**inputs.tensors).logits
        state = micro_backend.vit_prefix(inputs)
        state = micro_backend.vit_suffix(state, inputs, None, None)
        visual = micro_backend.connect(state, inputs, None)
        ours = model(**micro_backend.llm_inputs(inputs, None),
                     mm_encoder_outputs=micro_backend.encoder_outputs(visual)).logits
    assert visual.shape == (NUM_FRAMES * 4, model.config.text_config.hidden_size)
    assert stock.shape == ours.shape
    assert torch.equal(stock, ours)


def test_keep_one_generate_equals_stock_generate(micro_backend, inputs):
    model = micro_backend.model
    with torch.no_grad():
        stock = model.generate(**inputs.tensors, max_new_tokens=8, do_sample=False)
        state = micro_backend.vit_suffix(micro_backend.vit_prefix(inputs), inputs, None, None)
        visual = micro_backend.connect(state, inputs, None)
    ours = micro_backend.generate(inputs, visual, None, max_new_tokens=8, stop_at_eos=False)
    prompt_len = inputs.tensors["input_ids"].shape[1]
    new = stock[0, prompt_len:].tolist()
    assert len(ours.token_ids) == 8
    assert ours.prompt_tokens == prompt_len
    # Stock generate stops after an end-of-sequence token; ours was told not to.
    assert ours.token_ids[: len(new)] == new
    assert len(new) == 8 or new[-1] in micro_backend.eos_token_ids


def test_all_true_keep_equals_no_pruning(micro_backend, inputs, prefix):
    keep = torch.ones(NUM_FRAMES, 4, dtype=torch.bool)
    with torch.no_grad():
        full_state = micro_backend.vit_suffix(prefix, inputs, None, None)
        packed_state = micro_backend.vit_suffix(prefix, inputs, keep, None)
        full = micro_backend.connect(full_state, inputs, None)
        packed = micro_backend.connect(packed_state, inputs, keep)
    for i in micro_backend.feature_layers:
        torch.testing.assert_close(packed_state.saved[i], full_state.saved[i], atol=1e-5, rtol=1e-5)
    assert packed.shape == full.shape
    assert float((packed - full).abs().max()) <= 1e-4 * float(full.abs().max())
    assert {k: v.shape for k, v in micro_backend.llm_inputs(inputs, keep).items()} == {
        k: v.shape for k, v in micro_backend.llm_inputs(inputs, None).items()
    }


# ------------------------------------------------------------------ keep 0.5: what gets shorter


@pytest.mark.parametrize("kind", ["learned", "handmade"])
def test_pruned_llm_sequence(micro_backend, inputs, learned_scores, kind):
    keep = _keep_mask(kind, learned_scores)
    assert int(keep.sum()) == kept_group_count(NUM_FRAMES, 4, 0.5) == 8
    full = micro_backend.llm_inputs(inputs, None)
    short = micro_backend.llm_inputs(inputs, keep)
    pruned = int((~keep).sum())
    assert set(short) == {"input_ids", "attention_mask", "mm_token_type_ids"}
    for name, value in short.items():
        assert value.shape[1] == full[name].shape[1] - pruned, name
    patch = micro_backend.image_token_id
    ids, full_ids = short["input_ids"][0], full["input_ids"][0]
    assert int((ids == patch).sum()) == int(keep.sum())
    # Everything but the pruned placeholders stays, in order (timestamps, frame markers, text).
    assert torch.equal(ids[ids != patch], full_ids[full_ids != patch])
    # Per frame, the placeholders left between <frame_start> and <frame_end> are that frame's kept groups.
    vocab = micro_backend.tokenizer.get_vocab()
    starts = (ids == vocab["<frame_start>"]).nonzero().squeeze(1).tolist()
    ends = (ids == vocab["<frame_end>"]).nonzero().squeeze(1).tolist()
    per_frame = [int((ids[a + 1 : b] == patch).sum()) for a, b in zip(starts, ends, strict=True)]
    assert per_frame == keep.sum(1).tolist()
    assert per_frame[0] == 4
    types, full_types = short["mm_token_type_ids"][0], full["mm_token_type_ids"][0]
    assert bool((types[ids == patch] != 0).all())
    assert torch.equal(types[ids != patch], full_types[full_ids != patch])
    assert bool(short["attention_mask"].bool().all())


def test_llm_inputs_rejects_mismatched_keep(micro_backend, inputs):
    with pytest.raises(ValueError, match="placeholders"):
        micro_backend.llm_inputs(inputs, torch.ones(NUM_FRAMES + 1, 4, dtype=torch.bool))


@pytest.mark.parametrize("impl", ["rows", "auto"])
@pytest.mark.parametrize("kind", ["learned", "handmade"])
def test_vit_suffix_runs_only_kept_patches(micro_backend, inputs, prefix, learned_scores, kind, impl):
    """Packed ("rows"): the later blocks' MLPs run on the kept patches. On the CPU "auto" is the padded
    batch order: on its slots, the kept patches plus the padding its plan chose, fewer than every patch."""
    keep = _keep_mask(kind, learned_scores)
    patch_mask = groups_to_patch_mask(keep, inputs.groups, inputs.patches_per_frame)
    kept_patches = int(patch_mask.sum())
    assert kept_patches == int(keep.sum()) * 9
    mlp_rows = kept_patches
    if impl == "auto":
        vision = micro_backend.model.config.vision_config
        padded = PaddedFrames.from_layout(PackedLayout.from_mask(patch_mask),
                                          padded_slot_pairs(vision.hidden_size, vision.intermediate_size))
        mlp_rows = padded.size
        assert kept_patches <= mlp_rows < patch_mask.numel()
    layers = micro_backend.model.model.vision_tower.layers
    k1 = micro_backend.scoring_layer + 1
    later = list(range(k1 + 1, micro_backend.last_layer + 1))
    assert later, "the micro preset must run at least one block packed"
    rows: dict[int, list[int]] = {i: [] for i in [k1, *later]}
    handles = [
        layers[i].mlp.register_forward_hook(
            lambda _m, args, _out, i=i: rows[i].append(args[0].reshape(-1, args[0].shape[-1]).shape[0])
        )
        for i in rows
    ]
    counter: list[int] = []
    bias = attention_bias(learned_scores, inputs.groups, inputs.patches_per_frame)
    micro_backend.attention_impl = impl
    try:
        with torch.no_grad():
            micro_backend.vit_suffix(prefix, inputs, keep, bias, counter=counter)
    finally:
        micro_backend.attention_impl = "auto"
        for h in handles:
            h.remove()
    # Block k+1 sees every patch as a key, but computes outputs (and runs its MLP) on the kept ones only.
    assert rows[k1] == [mlp_rows]
    for i in later:
        assert rows[i] == [mlp_rows], i
    assert counter == [kept_patches] * len(later)


@pytest.mark.parametrize("kind", ["learned", "handmade"])
def test_packed_suffix_matches_per_frame_reference(micro_backend, inputs, prefix, learned_scores, kind):
    keep = _keep_mask(kind, learned_scores)
    bias = attention_bias(learned_scores, inputs.groups, inputs.patches_per_frame)
    patch_mask = groups_to_patch_mask(keep, inputs.groups, inputs.patches_per_frame)
    layers = micro_backend.model.model.vision_tower.layers
    k1 = micro_backend.scoring_layer + 1
    with torch.no_grad():
        state = micro_backend.vit_suffix(prefix, inputs, keep, bias)
        after_k1 = layers[k1](prefix.hidden, bias[:, None, None, :])
        assert k1 in micro_backend.feature_layers, "the micro preset's connector reads block k+1"
        torch.testing.assert_close(state.saved[k1][patch_mask], after_k1[patch_mask], atol=1e-6, rtol=1e-6)
        assert torch.count_nonzero(state.saved[k1][~patch_mask]) == 0
        checked = 0
        for t in range(NUM_FRAMES):
            kept = patch_mask[t]
            for i in micro_backend.feature_layers:
                if i > k1:
                    assert torch.count_nonzero(state.saved[i][t, ~kept]) == 0
            if not kept.any():
                continue
            x = after_k1[t, kept][None]
            for i in range(k1 + 1, micro_backend.last_layer + 1):
                x = layers[i](x, None)
                if i in micro_backend.feature_layers:
                    diff = (state.saved[i][t, kept] - x[0]).abs().max().item()
                    assert diff < 1e-5, (t, i, diff)
                    checked += 1
    assert checked >= 2
    assert torch.equal(state.hidden, state.saved[micro_backend.last_layer])


@pytest.mark.parametrize("kind", ["learned", "handmade"])
def test_connector_reads_packed_features_as_it_reads_their_grids(micro_backend, inputs, prefix, learned_scores, kind):
    """The pruned suffix hands its features over packed; pooling them where they are equals pooling the
    unpacked (T, N, D) grids."""
    from stts_core.models.base import ViTState
    from stts_core.models.molmo2.packed_vit import PackedViTState

    keep = _keep_mask(kind, learned_scores)
    bias = attention_bias(learned_scores, inputs.groups, inputs.patches_per_frame)
    with torch.no_grad():
        state = micro_backend.vit_suffix(prefix, inputs, keep, bias)
        assert isinstance(state, PackedViTState)
        grids = ViTState(hidden=state.hidden, saved={i: state.saved[i] for i in state.saved})
        packed = micro_backend.connect(state, inputs, keep)
        unpacked = micro_backend.connect(grids, inputs, keep)
    torch.testing.assert_close(packed, unpacked, atol=1e-6, rtol=1e-6)
    assert set(state.saved) >= set(micro_backend.feature_layers)


def test_bias_reaches_block_after_scoring(micro_backend, inputs, prefix, learned_scores):
    bias = attention_bias(learned_scores, inputs.groups, inputs.patches_per_frame)
    assert torch.count_nonzero(bias[0]) == 0 and torch.count_nonzero(bias[1:]) > 0
    k1 = micro_backend.scoring_layer + 1
    keep = torch.ones(NUM_FRAMES, 4, dtype=torch.bool)
    with torch.no_grad():
        plain = micro_backend.vit_suffix(prefix, inputs, keep, None).saved[k1]
        biased = micro_backend.vit_suffix(prefix, inputs, keep, bias).saved[k1]
    torch.testing.assert_close(biased[0], plain[0], atol=1e-6, rtol=1e-6)
    assert (biased[1:] - plain[1:]).abs().max() > 1e-4


@pytest.mark.parametrize("kind", ["learned", "handmade"])
def test_connector_pools_kept_groups_in_order(micro_backend, inputs, prefix, learned_scores, kind):
    keep = _keep_mask(kind, learned_scores)
    with torch.no_grad():
        state = micro_backend.vit_suffix(prefix, inputs, None, None)
        every = micro_backend.connect(state, inputs, None)
        kept = micro_backend.connect(state, inputs, keep)
    expected = every[keep.reshape(-1)]
    assert kept.shape == expected.shape
    assert float((kept - expected).abs().max()) <= 1e-4 * float(every.abs().max())
    dropped = every[~keep.reshape(-1)]
    assert float(torch.cdist(dropped, kept).min()) > 1e-3 * float(every.abs().max())


@pytest.mark.parametrize("kind", ["learned", "handmade"])
def test_visual_tokens_kept_only_and_first_frame_intact(micro_backend, inputs, prefix, learned_scores, kind):
    keep = _keep_mask(kind, learned_scores)
    assert bool(keep[0].all())
    bias = attention_bias(learned_scores, inputs.groups, inputs.patches_per_frame)
    with torch.no_grad():
        pruned_state = micro_backend.vit_suffix(prefix, inputs, keep, bias)
        full_state = micro_backend.vit_suffix(prefix, inputs, None, None)
        visual = micro_backend.connect(pruned_state, inputs, keep)
        full = micro_backend.connect(full_state, inputs, None)
    hidden = micro_backend.model.config.text_config.hidden_size
    assert visual.shape == (int(keep.sum()), hidden)
    assert torch.isfinite(visual).all()
    # Frame 0 gets no bias and keeps every patch, and the ViT attends within a frame: it is unchanged.
    for i in micro_backend.feature_layers:
        torch.testing.assert_close(pruned_state.saved[i][0], full_state.saved[i][0], atol=1e-5, rtol=1e-5)
    scale = float(full.abs().max())
    assert scale > 0
    assert float((visual[:4] - full[:4]).abs().max()) <= 1e-4 * scale
    gen = micro_backend.generate(inputs, visual, keep, max_new_tokens=3, stop_at_eos=False)
    assert len(gen.token_ids) == 3
    assert gen.prompt_tokens == inputs.tensors["input_ids"].shape[1] - int((~keep).sum())


# ------------------------------------------------------------------ checkpoints and the scorer


def test_checkpoint_is_safetensors_only(micro_checkpoint, micro_backend):
    files = {p.name for p in Path(micro_checkpoint).iterdir()}
    assert any(name.endswith(".safetensors") for name in files)
    assert not [n for n in files if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    config = json.loads((Path(micro_checkpoint) / "config.json").read_text())
    assert config["stts"]["layer"] == PRESETS["micro"]["stts_layer"]
    stored = load_file(str(Path(micro_checkpoint) / "model.safetensors"))
    scorer_keys = {k for k in stored if k.startswith("temporal_token_scorer.")}
    assert scorer_keys == {"temporal_token_scorer." + k for k in micro_backend.model.temporal_token_scorer.state_dict()}
    assert micro_backend.has_learned_scorer
    assert isinstance(micro_backend.model, Molmo2ForSTTS)


def test_scorer_weights_round_trip(tmp_path):
    tokenizer = build_tokenizer(VOCABULARY)
    model = build_model("micro", tokenizer, seed=11)
    processor = build_processor(tokenizer, PRESETS["micro"]["image_size"])
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.temporal_token_scorer.parameters():
            p.add_(torch.randn_like(p))
    model.config.stts["layer"] = 1
    model.config.stts["keep_ratio"] = 0.3
    expected = _scorer_state(model.temporal_token_scorer)
    out = save_checkpoint(model, processor, tmp_path / "ckpt")
    names = [p.name for p in out.iterdir()]
    assert any(n.endswith(".safetensors") for n in names)
    assert not [n for n in names if n.endswith((".bin", ".pt"))]
    backend = load_molmo2(str(out), device="cpu")
    assert backend.has_learned_scorer
    loaded = backend.model.temporal_token_scorer.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    assert backend.model.config.stts["layer"] == 1 and backend.scoring_layer == 1
    assert backend.model.config.stts["keep_ratio"] == pytest.approx(0.3)
    assert backend.default_keep_ratio == pytest.approx(0.3)


def test_convert_reference_scorer_maps_names():
    torch.manual_seed(0)
    ours = {
        f"temporal_token_scorer.patch_token_pooler.{w}.{p}": torch.randn(8, 8) if p == "weight" else torch.randn(8)
        for w in ("wq", "wk", "wv", "wo")
        for p in ("weight", "bias")
    }
    ours.update({f"temporal_token_scorer.mlp.{w}.{p}": torch.randn(3) for w in ("w1", "w2", "w3") for p in ("weight", "bias")})
    reference = {"model.vision_backbone." + k: v for k, v in ours.items()}
    reference["model.vision_backbone.transformer.resblocks.0.attention.wq.weight"] = torch.randn(2)
    reference["lm_head.weight"] = torch.randn(2)
    converted = convert_reference_scorer(reference)
    assert set(converted) == set(ours)
    for key, value in ours.items():
        assert torch.equal(converted[key], value), key
    assert convert_reference_scorer({"model.transformer.wte.weight": torch.zeros(1)}) == {}


@pytest.mark.parametrize(
    "key",
    [
        REFERENCE_PREFIX + "mlp.w4.weight",
        REFERENCE_PREFIX + "patch_token_pooler.wz.weight",
        REFERENCE_PREFIX + "patch_token_pooler.wq.scale",
        REFERENCE_PREFIX + "extra",
    ],
)
def test_convert_reference_scorer_rejects_unknown_subkeys(key):
    with pytest.raises(ValueError, match="Unrecognised scorer weight"):
        convert_reference_scorer({key: torch.zeros(1), REFERENCE_PREFIX + "mlp.w1.weight": torch.zeros(1)})


@pytest.fixture(scope="module")
def stock_checkpoint(tmp_path_factory):
    return _stock_checkpoint(tmp_path_factory.mktemp("stock-ckpt"))


def test_checkpoint_without_scorer_falls_back_to_heuristic(stock_checkpoint):
    stored = load_file(str(stock_checkpoint / "model.safetensors"))
    assert not [k for k in stored if "temporal_token_scorer" in k]
    backend = load_molmo2(str(stock_checkpoint), device="cpu")
    assert backend.has_learned_scorer is False
    clip = make_clip(4, num_frames=8)
    settings = pipeline.RunSettings(keep_ratio=0.5, scorer="learned", num_frames=4, max_new_tokens=2)
    result = pipeline.run(backend, frames_from_array(clip.frames), clip.qas[0].question, settings)
    assert result.scorer_used == "heuristic"
    assert any("heuristic" in note and "no trained STTS scorer" in note for note in result.notes)
    assert int(result.keep_mask.sum()) == kept_group_count(4, 4, 0.5)
    assert bool(result.keep_mask[0].all())


def test_reference_named_scorer_weights_load(tmp_path):
    ckpt = _stock_checkpoint(tmp_path / "ckpt", seed=6)
    config = build_config("micro")
    dim, heads = config.vision_config.hidden_size, config.vision_config.num_attention_heads
    from stts_core.methods.scorers import TokenScorer

    torch.manual_seed(2)
    scorer = TokenScorer(dim, heads, hidden=24)
    expected = _scorer_state(scorer)
    save_file(_reference_named(expected), str(ckpt / "scorer.safetensors"))
    backend = load_molmo2(str(ckpt), device="cpu")
    assert backend.has_learned_scorer is True
    loaded = backend.model.temporal_token_scorer.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    assert backend.model.config.stts["scorer_hidden"] == 24
    clip = make_clip(5, num_frames=NUM_FRAMES)
    prepared = backend.prepare(clip.frames, clip.qas[0].question)
    with torch.no_grad():
        scores = backend.learned_scores(backend.vit_prefix(prepared), prepared)
        direct = scorer(backend.vit_prefix(prepared).hidden, prepared.groups)
    assert torch.equal(scores, direct)


def test_reference_scorer_with_wrong_shapes_is_reported(tmp_path):
    ckpt = _stock_checkpoint(tmp_path / "ckpt", seed=7)
    from stts_core.methods.scorers import TokenScorer

    wrong = _scorer_state(TokenScorer(16, 2, hidden=8))
    save_file(_reference_named(wrong), str(ckpt / "scorer.safetensors"))
    with pytest.raises(ValueError, match="do not fit"):
        load_molmo2(str(ckpt), device="cpu")


# ------------------------------------------------------------------ load errors


def test_load_missing_directory_names_source(tmp_path):
    source = str(tmp_path / "no" / "such" / "model")
    with pytest.raises(ModelLoadError) as info:
        load_molmo2(source, device="cpu")
    assert source in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("contents", [{}, {"notes.txt": "hello"}, {"processor_config.json": "{}"}])
def test_load_directory_without_config_names_source(tmp_path, contents):
    source = tmp_path / "model"
    source.mkdir()
    for name, text in contents.items():
        (source / name).write_text(text)
    with pytest.raises(ModelLoadError) as info:
        load_molmo2(str(source), device="cpu")
    assert str(source) in str(info.value)
    assert str(info.value).startswith("Could not load the model")


def test_backend_device_dtype_and_eos(micro_backend):
    assert micro_backend.device.type == "cpu"
    assert micro_backend.dtype == torch.float32
    assert micro_backend.eos_token_ids == {micro_backend.tokenizer.eos_token_id}
    assert micro_backend.feature_layers == [3, 1]
    assert micro_backend.scoring_layer == 0
    assert micro_backend.default_keep_ratio == pytest.approx(0.5)


def test_sincos_positions_are_distinct_unit_rms_and_local():
    table = sincos_positions(9, 9, 96)
    assert table.shape == (81, 96)
    torch.testing.assert_close(table.pow(2).mean().sqrt(), torch.tensor(1.0))
    unit = torch.nn.functional.normalize(table, dim=1)
    sim = unit @ unit.T
    assert float((sim - torch.eye(81)).max()) < 0.99  # every patch of the grid gets its own vector
    centre = sim[40].reshape(9, 9)
    assert centre[4, 5] > centre[4, 6] > centre[4, 8]  # nearer patches are more alike, along rows
    assert centre[5, 4] > centre[6, 4] > centre[8, 4]  # and along columns
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_positions(3, 3, 10)


def test_from_scratch_preset_gets_a_position_table_as_strong_as_its_patches():
    """The tiny preset is trained from scratch; at its initializer range a random position table would
    be ~20x weaker than the patch embeddings, leaving the ViT a bag of patches."""
    tokenizer = build_tokenizer(["a"])
    model = build_model("tiny", tokenizer)
    vision = model.model.vision_tower
    torch.testing.assert_close(vision.positional_embedding.detach(), sincos_positions(9, 9, 96))
    processor = build_processor(tokenizer, PRESETS["tiny"]["image_size"])
    backend = Molmo2Backend(model, processor)
    pixels = backend.prepare(make_clip(0, num_frames=4).frames, "a").tensors["pixel_values_videos"]
    with torch.no_grad():
        patches = vision.patch_embedding(pixels)
    ratio = float(vision.positional_embedding.std() / patches.std())
    assert 0.3 < ratio < 3.0
    assert float(build_model("micro").model.vision_tower.positional_embedding.std()) < 0.1  # other presets unchanged


def test_gradient_checkpointing_is_a_backend_switch_with_unchanged_gradients(micro_checkpoint, clip, monkeypatch):
    """The switch recomputes the packed ViT blocks, block k+1 among them (and the stock ones) in backward;
    gradients stay the same."""
    from stts_core.models.molmo2 import backend as molmo2_module
    from stts_core.train.objective import stts_loss

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        backend = load_molmo2(str(micro_checkpoint), device="cpu")
        backend.set_gradient_checkpointing(checkpointing)
        backend.model.train()
        prepared = backend.prepare_questions(clip.frames[:4], [clip.qas[0].question])
        stts_loss(backend, prepared, [clip.qas[0].answer], 0.5)["loss"].backward()
        return {n: p.grad.clone() for n, p in backend.model.named_parameters() if p.grad is not None}

    calls = []
    real = molmo2_module.checkpoint

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(molmo2_module, "checkpoint", counting)
    plain = grads(False)
    assert calls == []
    recomputed = grads(True)
    backend = load_molmo2(str(micro_checkpoint), device="cpu")
    assert sorted(set(calls)) == list(range(backend.scoring_layer + 1, backend.last_layer + 1))
    assert plain.keys() == recomputed.keys() and plain
    for name, g in plain.items():
        torch.testing.assert_close(recomputed[name], g, rtol=1e-4, atol=1e-6, msg=name)
