"""Serving fast paths (stts_core.models.molmo2.serving) against the stock path they replace.

Static-cache decoding must give the stock greedy tokens, and the FlexAttention prefill the stock
SDPA logits, for several prompt lengths with and without pruning, on random micro and tiny Molmo2
presets on the CPU. Tests marked `gpu` check the compiled (CUDA-graph) decode step and the compiled
FlexAttention kernel on CUDA and skip without it.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import DynamicCache, StaticCache
from transformers.masking_utils import blockwise_overlay, causal_mask_function, or_masks, sdpa_mask

from stts_core.analysis.roofline import roofline_table
from stts_core.data.synthetic import make_clip
from stts_core.models.loading import backend_from_preset
from stts_core.models.molmo2 import serving as ms
from stts_core.pipeline import visual_pass

QUESTIONS = ("what moves ?", "what colour is the square that moves left in the video ?")


@pytest.fixture(autouse=True)
def _quiet_eager_flex():
    """FlexAttention without torch.compile warns that it is unfused; on the CPU that is the point."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        yield


def _backend(preset: str, device: str = "cpu"):
    backend = backend_from_preset(preset, device=device, dtype=torch.float32, seed=0)
    backend.model.eval()
    return backend


@pytest.fixture(scope="module")
def micro():
    return _backend("micro")


@pytest.fixture(scope="module")
def tiny():
    return _backend("tiny")


@pytest.fixture
def serving_off(micro, tiny):
    """Every test leaves both backends on the stock path."""
    yield
    ms.disable(micro)
    ms.disable(tiny)


@torch.no_grad()
def _visual(backend, frames: int, question: str, pruned: bool):
    """Prepared inputs, visual features and keep mask (keep 0.5 by the learned scorer, or None)."""
    clip = make_clip(7, num_frames=max(frames, 4), size=126)
    inputs = backend.prepare(clip.frames[:frames], question)
    vp = visual_pass(backend, inputs, 0.5 if pruned else 1.0, "learned" if pruned else None)
    assert (vp.prune is not None) == pruned
    return inputs, vp.visual, vp.prune


CASES = [("micro", 2, 0, False), ("micro", 4, 1, True), ("micro", 6, 1, False), ("micro", 6, 0, True),
         ("tiny", 3, 0, True), ("tiny", 5, 1, False)]


def _case_id(case: tuple) -> str:
    preset, frames, q, pruned = case
    return f"{preset}-{frames}f-q{q}-{'pruned' if pruned else 'full'}"


# ------------------------------------------------------------------------------- cache buckets
def test_bucket_length_bounds_waste_and_bucket_count():
    lengths = range(1, 40_000, 37)
    buckets = [ms.bucket_length(n) for n in lengths]
    assert all(b >= n for b, n in zip(buckets, lengths, strict=True))
    assert all(b <= max(256, 1.25 * n) for b, n in zip(buckets, lengths, strict=True))
    assert buckets == sorted(buckets)
    # Four buckets per doubling above the minimum: 256..32768 is 7 doublings.
    assert len(set(buckets)) <= 1 + 4 * 8
    assert ms.bucket_length(10_450) == ms.bucket_length(10_600) == 12_288


# --------------------------------------------------------------------------- the span block mask
def _elementwise(block_mask, q_len: int, kv_len: int) -> torch.Tensor:
    """Every (query, key) pair the BlockMask lets through: full blocks whole, partial ones by mask_mod."""
    size = block_mask.BLOCK_SIZE[0]
    out = torch.zeros(q_len, kv_len, dtype=torch.bool)
    q = torch.arange(q_len)[:, None]
    kv = torch.arange(kv_len)[None]
    element = block_mask.mask_mod(0, 0, q, kv)
    for kind, (num, idx) in {"partial": (block_mask.kv_num_blocks, block_mask.kv_indices),
                             "full": (block_mask.full_kv_num_blocks, block_mask.full_kv_indices)}.items():
        for i in range(num.shape[-1]):
            for j in idx[0, 0, i, : int(num[0, 0, i])].tolist():
                rows, cols = slice(i * size, (i + 1) * size), slice(j * size, (j + 1) * size)
                out[rows, cols] = True if kind == "full" else element[rows, cols]
    return out


def _stock_mask(types: torch.Tensor, kv_len: int) -> torch.Tensor:
    """The mask Molmo2Model builds for SDPA (causal or both image tokens), padded to kv_len keys."""
    ids = torch.full((1, kv_len), -1)
    ids[0, : types.numel()] = torch.where(types == 1, 0, -1)
    mask = sdpa_mask(batch_size=1, q_length=types.numel(), kv_length=kv_len,
                     mask_function=or_masks(causal_mask_function, blockwise_overlay(ids)),
                     allow_is_causal_skip=False, device="cpu")
    return mask[0, 0]


@pytest.mark.parametrize("spans,length,kv_extra", [
    ([(3, 40)], 50, 0),  # one image span crossing several blocks
    ([(0, 16), (20, 36), (41, 60)], 70, 30),  # several spans (frames with text between) and static-cache keys
    ([], 33, 7),  # text only: plain causal
    ([(8, 24)], 24, 0),  # prompt ending in image tokens, on a block boundary
    ([(1, 2), (5, 6)], 9, 100),  # single image tokens, most keys beyond the prompt
])
def test_span_block_mask_equals_stock_mask(spans, length, kv_extra):
    types = torch.zeros(length, dtype=torch.long)
    for a, b in spans:
        types[a:b] = 1
    kv_len = length + kv_extra
    bm = ms.span_block_mask(types[None], kv_len, block=8)
    assert torch.equal(_elementwise(bm, length, kv_len), _stock_mask(types, kv_len))
    # Skipped blocks are the point: keys wholly in the future of text-only query blocks are never visited.
    touched = int(bm.kv_num_blocks.sum() + bm.full_kv_num_blocks.sum())
    assert touched < -(-length // 8) * -(-kv_len // 8)


def test_span_block_mask_marks_whole_image_blocks_full():
    """Blocks inside one long image span need no element mask (both directions)."""
    types = torch.zeros(64, dtype=torch.long)
    types[8:56] = 1
    bm = ms.span_block_mask(types[None], block=8)
    full = {(i, j) for i in range(8) for j in bm.full_kv_indices[0, 0, i, : int(bm.full_kv_num_blocks[0, 0, i])].tolist()}
    assert (1, 5) in full and (5, 1) in full  # image block seeing a later image block, and an earlier one
    assert (0, 1) not in full and (6, 7) not in full  # text queries never see later keys; 7 holds text
    assert (3, 0) in full  # ordinary causal block


def test_span_block_mask_rejects_bad_shapes():
    with pytest.raises(ValueError, match="one prompt"):
        ms.span_block_mask(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="cover the prompt"):
        ms.span_block_mask(torch.zeros(1, 5, dtype=torch.long), kv_len=4)


# --------------------------------------------------------------------------- flex prefill logits
@pytest.mark.parametrize("case", CASES[1:5], ids=_case_id)
def test_flex_prefill_logits_equal_sdpa(case, micro, tiny, serving_off, monkeypatch):
    preset, frames, q, pruned = case
    backend = micro if preset == "micro" else tiny
    inputs, visual, keep = _visual(backend, frames, QUESTIONS[q], pruned)
    llm = backend.llm_inputs(inputs, keep)
    with torch.no_grad():
        stock = backend.model(**llm, mm_encoder_outputs=backend.encoder_outputs(visual)).logits
        ms.enable(backend, decode="dynamic", prefill="flex")
        calls = []
        flex = ms._flex
        monkeypatch.setattr(ms, "_flex", lambda device: calls.append(device) or flex(device))
        prompt = llm["input_ids"].shape[1]
        for kv_len in (prompt, ms.bucket_length(prompt + 8)):
            cache = None if kv_len == prompt else StaticCache(config=backend.model.config, max_cache_len=kv_len)
            ours = backend.model(**ms.Molmo2Serving(prefill="flex").prefill_inputs(llm, kv_len),
                                 mm_encoder_outputs=backend.encoder_outputs(visual), cache=cache,
                                 use_cache=cache is not None).logits
            torch.testing.assert_close(ours, stock, atol=2e-5, rtol=1e-4)
    assert len(calls) == 2 * backend.llm_num_layers  # every LLM layer ran FlexAttention, in both layouts
    assert int((llm["mm_token_type_ids"] == 1).sum()) > 0


def test_flex_prefill_keeps_dense_mask_for_padded_prompts():
    llm = {"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": torch.tensor([[0, 1, 1, 1]]),
           "mm_token_type_ids": torch.tensor([[0, 1, 1, 0]])}
    assert ms.Molmo2Serving(prefill="flex").prefill_inputs(llm, 4) is llm
    full = {**llm, "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    assert not isinstance(ms.Molmo2Serving(prefill="flex").prefill_inputs(full, 4)["attention_mask"], torch.Tensor)


# ------------------------------------------------------------------------------ decoding tokens
@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_serving_generate_gives_stock_tokens(case, micro, tiny, serving_off):
    preset, frames, q, pruned = case
    backend = micro if preset == "micro" else tiny
    inputs, visual, keep = _visual(backend, frames, QUESTIONS[q], pruned)
    stock = backend.generate(inputs, visual, keep, max_new_tokens=10, stop_at_eos=False)
    assert len(set(stock.token_ids)) > 1 or preset == "micro"  # the tiny model's answer is not one repeated token
    for decode, prefill in (("static", "sdpa"), ("compiled", "flex"), ("dynamic", "flex")):
        serving = ms.enable(backend, decode=decode, prefill=prefill)
        ours = backend.generate(inputs, visual, keep, max_new_tokens=10, stop_at_eos=False)
        assert ours.token_ids == stock.token_ids, (decode, prefill)
        assert ours.prompt_tokens == stock.prompt_tokens
        assert ours.prefill_s > 0 and ours.decode_s > 0
        assert not serving.compiled  # compiled mode runs the same static step uncompiled on the CPU
        if decode != "dynamic":
            assert list(serving._caches) == [ms.bucket_length(stock.prompt_tokens + 10)]
        ms.disable(backend)


@torch.no_grad()
def test_static_cache_logits_equal_dynamic_cache_per_step(tiny):
    """Prefill then five greedy steps: the static cache (keys past the context masked) gives the
    dynamic cache's logits at every step, not only the same argmax."""
    inputs, visual, keep = _visual(tiny, 4, QUESTIONS[1], True)
    llm = tiny.llm_inputs(inputs, keep)
    model = tiny.model
    logits = []
    for cache in (DynamicCache(config=model.config), StaticCache(config=model.config, max_cache_len=512)):
        out = model(**llm, mm_encoder_outputs=tiny.encoder_outputs(visual), cache=cache, use_cache=True)
        steps = [out.logits[:, -1]]
        mask = llm["attention_mask"]
        for _ in range(5):
            token = steps[-1].argmax(-1, keepdim=True)
            mask = torch.cat([mask, mask.new_ones(1, 1)], 1)
            step_mask = mask if isinstance(cache, DynamicCache) else None
            steps.append(model(input_ids=token, attention_mask=step_mask, cache=cache, use_cache=True).logits[:, -1])
        logits.append(torch.stack(steps))
    torch.testing.assert_close(logits[1], logits[0], atol=2e-5, rtol=1e-4)


def test_stop_at_eos_stops_where_the_stock_loop_does(micro, serving_off):
    inputs, visual, keep = _visual(micro, 4, QUESTIONS[0], True)
    free = micro.generate(inputs, visual, keep, max_new_tokens=8, stop_at_eos=False).token_ids
    eos = set(micro.eos_token_ids)
    try:
        micro.eos_token_ids = eos | {free[-2]}  # a token the model produces late in the answer
        stock = micro.generate(inputs, visual, keep, max_new_tokens=8, stop_at_eos=True).token_ids
        ms.enable(micro, decode="static")
        ours = micro.generate(inputs, visual, keep, max_new_tokens=8, stop_at_eos=True).token_ids
    finally:
        micro.eos_token_ids = eos
    assert ours == stock
    assert len(stock) < 8


@pytest.mark.slow
def test_decode_step_traces_as_one_graph_once_per_bucket(micro, serving_off):
    """What CUDA graphs need, checked on the CPU with dynamo alone: the static-cache decode step is
    one graph with no breaks, a second request in the same bucket reuses it, a new bucket compiles
    once more, and going back to the first bucket compiles nothing."""
    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("eager")
    serving = ms.enable(micro, decode="compiled")
    serving.compile_backend = counter
    short = _visual(micro, 2, QUESTIONS[0], False)
    long = _visual(micro, 4, QUESTIONS[1], False)
    stock = [micro.generate(*case, max_new_tokens=6, stop_at_eos=False).token_ids for case in (short, long)]
    ms.disable(micro)
    micro.serving = serving
    frames = []
    for case, new_tokens in ((short, 6), (short, 6), (long, 300), (short, 6)):
        tokens = micro.generate(*case, max_new_tokens=new_tokens, stop_at_eos=False).token_ids
        assert tokens[:6] == stock[0 if case is short else 1]
        frames.append(counter.frame_count)
    assert serving.compiled
    assert counter.op_count > 2 * 50  # whole decoder layers inside the graphs, not a fragment between breaks
    assert frames == [1, 1, 2, 2]  # one frame per bucket: no graph breaks, no recompiles within a bucket
    long_prompt = micro.llm_inputs(long[0], None)["input_ids"].shape[1]
    assert sorted(serving._caches) == [256, ms.bucket_length(long_prompt + 300)] and long_prompt + 300 > 256


def test_a_failing_fast_path_is_switched_off_with_a_note(micro, serving_off, monkeypatch):
    """A compiled kernel that fails on the device costs that fast path, not the request."""
    inputs, visual, keep = _visual(micro, 4, QUESTIONS[1], True)
    stock = micro.generate(inputs, visual, keep, max_new_tokens=6, stop_at_eos=False).token_ids

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel for this device")

    serving = ms.enable(micro, decode="compiled", prefill="flex")
    serving._step, serving._compiled = broken, True  # as if the CUDA graph step had been compiled
    monkeypatch.setattr(ms, "_flex", lambda device: broken)
    with pytest.warns(RuntimeWarning):
        ours = micro.generate(inputs, visual, keep, max_new_tokens=6, stop_at_eos=False).token_ids
    assert ours == stock
    assert (serving.decode, serving.prefill) == ("static", "sdpa")
    assert [n.split(" ")[0] for n in serving.notes] == ["FlexAttention", "compiled"]
    assert micro.model.config.get_text_config()._attn_implementation == "sdpa"
    serving._step = broken  # a failure with no fast path left to drop is the caller's to see
    with pytest.raises(RuntimeError, match="no kernel"):
        micro.generate(inputs, visual, keep, max_new_tokens=6, stop_at_eos=False)


def test_static_caches_are_reused_per_bucket_and_bounded(micro):
    serving = ms.Molmo2Serving(decode="static", max_caches=2)
    assert ms.Molmo2Serving().max_caches >= 3  # a bench frame sweep revisits a bucket after two others
    a = serving.cache_for(micro.model, 100)
    assert serving.cache_for(micro.model, 200) is a  # same 256-slot bucket, reset and reused
    b = serving.cache_for(micro.model, 700)
    assert b is not a and len(serving._caches) == 2
    serving.cache_for(micro.model, 3000)
    assert sorted(serving._caches) == [ms.bucket_length(700), ms.bucket_length(3000)]  # the oldest went


def test_enable_and_disable_route_only_the_llm(micro, serving_off):
    model = micro.model
    assert model.config.get_text_config()._attn_implementation == "sdpa"
    serving = ms.enable(micro, decode="static", prefill="flex")
    assert micro.serving is serving
    assert model.config.get_text_config()._attn_implementation == ms.SPAN_ATTENTION
    assert model.config.vision_config._attn_implementation == "sdpa"  # the ViT keeps its own attention
    ms.enable(micro, decode="static", prefill="sdpa")  # switching modes restores the original first
    assert model.config.get_text_config()._attn_implementation == "sdpa"
    assert ms.install(micro, "eager", "sdpa") is None and micro.serving is None
    with pytest.raises(ValueError, match="serving mode"):
        ms.install(micro, "fast")
    with pytest.raises(ValueError, match="decode mode"):
        ms.Molmo2Serving(decode="graphs")


def test_roofline_table_reads_the_bench_records():
    row = {"prompt_tokens": 10450.0, "llm_prefill": 0.3, "prefill_tflops": 139.8, "prefill_mfu": 0.47,
           "decode_per_token": 0.004, "decode_gb": 9.6, "decode_bw_util": 0.5}
    report = {"cells": [{"frames": 128, "keep": 0.5, "stages_s": {"baseline": row, "stts": row}},
                        {"frames": 256, "keep": 0.5, "stages_s": None, "error": "OutOfMemoryError"}]}
    lines = roofline_table(report).splitlines()
    assert len(lines) == 3 and "47.0%" in lines[1] and "50.0%" in lines[2]
    assert "no roofline" in roofline_table({"cells": []})


# ------------------------------------------------------------------------- bench runner and probe
@pytest.mark.slow
def test_bench_applies_serving_and_adds_roofline_inputs(tmp_path, micro):
    from stts_core.analysis import roofline
    from stts_core.cli import bench

    out = tmp_path / "serving.json"
    status = bench.main(["--serving", "static", "--prefill", "flex", "--preset", "micro", "--device", "cpu",
                         "--dtype", "fp32", "--frames", "4", "--keep", "0.5", "--repeats", "1", "--warmup", "0",
                         "--max-new-tokens", "3", "--json", str(out)])
    assert status == 0
    report = __import__("json").loads(out.read_text())
    assert report["settings"]["serving"] == "static" and report["settings"]["prefill"] == "flex"
    cell = report["cells"][0]
    assert cell["error"] is None
    for run, visual in zip(("baseline", "stts"), cell["visual_tokens"], strict=True):
        row = cell["stages_s"][run]
        expected = roofline.prefill_flops(micro.model.config, int(row["prompt_tokens"]), visual) / 1e12
        assert row["prefill_tflops"] == pytest.approx(expected)
        assert "prefill_mfu" not in row  # no peak figures for a CPU
    assert cell["stages_s"]["stts"]["prompt_tokens"] < cell["stages_s"]["baseline"]["prompt_tokens"]


def test_suffix_probe_checks_each_back_end_against_the_per_frame_reference():
    out = ms.suffix_probe("micro", frames=5, keep=0.5, device="cpu", impls=("rows", "varlen"), repeats=1)
    assert out["tokens_full"] == 5 * 36
    assert out["tokens_packed"] == sum(ms.probe_lengths(5, 36, 0.5)) < out["tokens_full"]
    assert out["rows"]["max_abs_error"] < 1e-5 and out["rows"]["block_ms"] > 0
    assert "error" in out["varlen"]  # flash varlen is a CUDA kernel: recorded, not raised, on the CPU
    lengths = ms.probe_lengths(64, 729, 0.3)
    assert lengths[0] == 729 and abs(sum(lengths[1:]) / 63 / 729 - 0.3) < 0.05


# ------------------------------------------------------------------------------------------ GPU
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@pytest.mark.slow
@gpu
@pytest.mark.parametrize("preset", ["micro", "tiny"])
def test_compiled_decode_on_cuda_gives_stock_tokens_without_recompiling(preset):
    """The CUDA-graph decode step gives the stock tokens (SDPA prefill, so only decoding differs),
    and a request repeated in the same bucket replays the same graph (no new compile)."""
    from torch._dynamo.utils import counters

    backend = _backend(preset, device="cuda")
    cases = [(3, 0, True), (4, 1, False)]
    stock = []
    for frames, q, pruned in cases:
        inputs, visual, keep = _visual(backend, frames, QUESTIONS[q], pruned)
        stock.append((inputs, visual, keep, backend.generate(inputs, visual, keep, 12, False).token_ids))
    serving = ms.enable(backend, decode="compiled", prefill="sdpa")
    for inputs, visual, keep, expected in stock:
        assert backend.generate(inputs, visual, keep, 12, False).token_ids == expected
    assert serving.compiled
    graphs = counters["stats"]["unique_graphs"]
    inputs, visual, keep, expected = stock[0]
    assert backend.generate(inputs, visual, keep, 12, False).token_ids == expected
    assert counters["stats"]["unique_graphs"] == graphs
    ms.disable(backend)


@pytest.mark.gpu
@pytest.mark.slow
@gpu
def test_compiled_flex_prefill_logits_on_cuda():
    backend = _backend("tiny", device="cuda")
    inputs, visual, keep = _visual(backend, 4, QUESTIONS[1], True)
    llm = backend.llm_inputs(inputs, keep)
    with torch.no_grad():
        stock = backend.model(**llm, mm_encoder_outputs=backend.encoder_outputs(visual)).logits
        ms.enable(backend, decode="dynamic", prefill="flex")
        ours = backend.model(**ms.Molmo2Serving(prefill="flex").prefill_inputs(llm, llm["input_ids"].shape[1]),
                             mm_encoder_outputs=backend.encoder_outputs(visual)).logits
    ms.disable(backend)
    # Triton's float32 dots may run in TF32 on the GPU: a looser bound than the CPU test's.
    torch.testing.assert_close(ours, stock, atol=5e-3, rtol=5e-3)


@pytest.mark.gpu
@gpu
def test_varlen_packed_attention_matches_per_frame_reference_on_cuda():
    pytest.importorskip("torch.nn.attention.varlen")
    out = ms.suffix_probe("micro", frames=8, keep=0.5, device="cuda", dtype=torch.bfloat16, impls=("varlen",),
                          repeats=2)
    assert "error" not in out["varlen"], out["varlen"]
    assert out["varlen"]["max_abs_error"] < 2e-2
