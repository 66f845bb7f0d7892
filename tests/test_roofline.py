"""Roofline arithmetic: prefill FLOPs and decode bytes against hand counts and the built model."""

from __future__ import annotations

import pytest
import torch
from transformers.models.molmo2.configuration_molmo2 import Molmo2TextConfig

from stts_core.analysis import roofline
from stts_core.models.molmo2.build import build_config
from stts_core.models.molmo2.modeling import Molmo2ForSTTS


@pytest.fixture(scope="module")
def small() -> Molmo2TextConfig:
    """A hand-countable LLM: hidden 8, 2 heads of 4, 1 KV head, MLP 16, 3 layers, vocab 10."""
    return Molmo2TextConfig(hidden_size=8, num_attention_heads=2, num_key_value_heads=1, head_dim=4,
                            intermediate_size=16, num_hidden_layers=3, vocab_size=10, additional_vocab_size=0,
                            qk_norm_type="qwen3")


def test_attended_pairs_counts_the_mask():
    # 5 tokens, positions 1..3 are image tokens: causal 15 pairs, plus 1->2, 1->3, 2->3.
    types = torch.tensor([0, 1, 1, 1, 0])
    allowed = torch.tril(torch.ones(5, 5, dtype=torch.bool)) | (types[:, None].bool() & types[None, :].bool())
    assert roofline.attended_pairs(5, 3) == int(allowed.sum()) == 18
    assert roofline.attended_pairs(7) == 28


def test_prefill_flops_by_hand(small):
    tokens, image = 6, 4
    # per token per layer: q 8*8, k 8*4, v 8*4, o 8*8 = 192 MACs; MLP 3*8*16 = 384 MACs.
    linear = 2 * tokens * (192 + 384)
    pairs = 6 * 7 // 2 + 4 * 3 // 2
    attention = 2 * (2 * 2 * 4 * pairs)  # QK^T and PV, 2 heads of 4, 2 FLOPs per MAC
    head = 2 * 8 * 10  # the LM head on the last token
    assert roofline.prefill_flops(small, tokens, image) == 3 * (linear + attention) + head


def test_decode_bytes_by_hand(small):
    per_layer = (8 * 8 + 8 * 4 + 8 * 4 + 8 * 8) + (4 + 4) + 3 * 8 * 16 + 2 * 8
    params = 3 * per_layer + 8 + 10 * 8 + 8
    assert roofline.llm_decode_weights(small) == params
    kv = 2 * 3 * 1 * 4 * 20
    assert roofline.decode_bytes(small, 20, torch.bfloat16) == 2 * (params + kv)
    assert roofline.decode_bytes(small, 20, torch.float32) == 4 * (params + kv)


@pytest.mark.parametrize("norm", ["qwen3", "olmo"])
def test_decode_weights_match_the_built_llm(norm):
    """Every LLM parameter a decode step touches: all of them but the embedding table (one row of it)."""
    config = build_config("micro")
    config.text_config.qk_norm_type = norm
    model = Molmo2ForSTTS(config)
    llm = model.model.language_model
    counted = sum(p.numel() for n, p in llm.named_parameters() if not n.startswith("embed_tokens"))
    counted += model.lm_head.weight.numel() + llm.config.hidden_size
    assert roofline.llm_decode_weights(model.config) == counted


def test_mfu_and_bandwidth_against_the_table(small):
    flops = roofline.prefill_flops(small, 100)
    # 989.5 TFLOP/s dense bf16 on an H200: running those FLOPs in flops/989.5e12 s is 100 %.
    assert roofline.mfu(flops, flops / 989.5e12, "NVIDIA H200", torch.bfloat16) == pytest.approx(1.0)
    assert roofline.mfu(flops, 2 * flops / 989.5e12, "NVIDIA H100 80GB HBM3", "bfloat16") == pytest.approx(0.5)
    assert roofline.bandwidth_util(4.8e9, 1e-3, "NVIDIA H200") == pytest.approx(1.0)
    assert roofline.bandwidth_util(3.35e9, 2e-3, "NVIDIA H100 80GB HBM3") == pytest.approx(0.5)
    assert roofline.bandwidth_util(2.0e9, 1e-3, "NVIDIA H100 PCIe") == pytest.approx(1.0)
    assert roofline.mfu(flops, 1.0, "CPU (x86_64, 2 threads)", torch.float32) is None
    assert roofline.bandwidth_util(1.0, 0.0, "NVIDIA H200") is None


def test_run_utilisation_on_the_4b_architecture():
    """The H200 baseline at 128 frames (601 ms prefill of ~10.4k tokens, 27.9 ms per token): the
    figures the issue estimates by hand (tens of TFLOPs, ~8 GB of weights, a few % of bandwidth)."""
    config = build_config("molmo2-4b")
    out = roofline.run_utilisation(config, "NVIDIA H200", torch.bfloat16, prompt_tokens=10450, image_tokens=10368,
                                   prefill_s=0.601, decode_s_per_token=0.0279, new_tokens=8)
    # Linear layers ~76 TFLOP, causal attention ~32 more; the bidirectional image block adds ~32.
    assert 105 < roofline.prefill_flops(config, 10450) / 1e12 < 110
    assert 130 < out["prefill_tflops"] < 145
    assert 0.2 < out["prefill_mfu"] < 0.3
    assert 8.0 < roofline.llm_decode_weights(config) * 2 / 1e9 < 8.2
    assert 9.4 < out["decode_gb"] < 9.8
    assert 0.06 < out["decode_bw_util"] < 0.08


@pytest.mark.parametrize("device,expected", [("NVIDIA H200", True), ("CPU (x86_64, 2 threads)", False)])
def test_run_record_for_the_bench(monkeypatch, device, expected):
    """The per-run record the bench takes: same figures as run_utilisation, floats, peak-based
    keys only where the device has a table entry."""
    from types import SimpleNamespace

    from stts_core import timing

    monkeypatch.setattr(timing, "device_name", lambda _device: device)
    config = build_config("molmo2-4b")
    backend = SimpleNamespace(model=SimpleNamespace(config=config), device="cuda", dtype=torch.bfloat16)
    run = SimpleNamespace(prompt_tokens=10450, visual_tokens=10368, timings={"llm_prefill": 0.601}, token_ids=[1] * 8)
    record = roofline.run_record(backend, run, 0.0279)
    assert record["prompt_tokens"] == 10450.0
    assert record["prefill_tflops"] == pytest.approx(roofline.prefill_flops(config, 10450, 10368) / 1e12)
    assert ("prefill_mfu" in record) is expected and ("decode_bw_util" in record) is expected
    if expected:
        assert record["prefill_mfu"] == pytest.approx(0.2352, abs=1e-3)
        assert record["decode_bw_util"] == pytest.approx(0.0716, abs=1e-3)
