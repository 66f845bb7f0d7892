"""How close a run is to the hardware's limits: prefill model-FLOPs utilisation (MFU) and decode
memory-bandwidth utilisation, from the LLM's config, the token counts and the measured seconds.

Prefill is compute bound: its figure is the model FLOPs (matrix multiplies of the LLM on every
prompt token, attention over the pairs the mask allows, the LM head on the last token only, as the
backend runs it with `logits_to_keep=1`) over seconds, against the device's dense bf16 peak.
A decode step is memory bound: it reads every LLM weight once (the LM head in full, one embedding
row) plus the KV cache of the whole context; its figure is those bytes per second against the peak
HBM bandwidth. Norms, rotary embeddings and softmax are left out of the FLOPs (well under 1 %).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from stts_core.models.base import VideoBackend
    from stts_core.pipeline import ModelRun


@dataclass(frozen=True)
class DevicePeak:
    """Datasheet peaks: dense (no structured sparsity) tensor-core TFLOP/s by dtype, HBM TB/s."""

    tflops: dict[str, float]
    hbm_tb_s: float


# NVIDIA's datasheets quote tensor-core throughput "with sparsity"; the dense figure is half of it.
# H100 SXM5 / PCIe / NVL: NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100,
#   "H100 SXM: BF16 Tensor Core 1,979 TFLOPS*, FP32 67 TFLOPS, GPU memory bandwidth 3.35 TB/s";
#   "H100 NVL: BF16 1,671 TFLOPS*, FP32 60 TFLOPS, 3.9 TB/s"; * with sparsity).
#   H100 PCIe (80 GB HBM2e): NVIDIA H100 PCIe product brief, "BF16 1,513 TFLOPS*, FP32 51 TFLOPS, 2.0 TB/s".
# H200 SXM / NVL: NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200,
#   "H200 SXM: BF16 Tensor Core 1,979 TFLOPS*, FP32 67 TFLOPS, GPU memory bandwidth 4.8 TB/s";
#   "H200 NVL: BF16 1,671 TFLOPS*, FP32 60 TFLOPS, 4.8 TB/s"; * with sparsity).
# FP32 is the plain (non-tensor-core) rate: what float32 matmuls get without TF32.
PEAKS: dict[str, DevicePeak] = {
    "H200 NVL": DevicePeak({"bfloat16": 835.5, "float16": 835.5, "float32": 60.0}, 4.8),
    "H200": DevicePeak({"bfloat16": 989.5, "float16": 989.5, "float32": 67.0}, 4.8),
    "H100 NVL": DevicePeak({"bfloat16": 835.5, "float16": 835.5, "float32": 60.0}, 3.9),
    "H100 PCIe": DevicePeak({"bfloat16": 756.5, "float16": 756.5, "float32": 51.0}, 2.0),
    "H100": DevicePeak({"bfloat16": 989.5, "float16": 989.5, "float32": 67.0}, 3.35),  # SXM5 (HBM3)
}


def device_peak(device_name: str) -> DevicePeak | None:
    """The table entry for a CUDA device name ("NVIDIA H100 80GB HBM3", "NVIDIA H200"), None when unknown.
    More specific names (NVL, PCIe) are tried before the plain SXM entry of the same chip."""
    name = device_name.upper()
    for key, peak in PEAKS.items():
        if all(part.upper() in name for part in key.split()):
            return peak
    return None


def _text_config(config: Any) -> Any:
    """The LLM's config from a Molmo2 (or any multimodal) config, or the text config itself."""
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def _dims(config: Any) -> tuple[int, int, int, int, int, int, int]:
    c = _text_config(config)
    heads = int(c.num_attention_heads)
    head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // heads)
    return (int(c.hidden_size), heads, int(c.num_key_value_heads), head_dim, int(c.intermediate_size),
            int(c.num_hidden_layers), int(c.vocab_size))


def attended_pairs(tokens: int, image_tokens: int = 0) -> int:
    """(query, key) pairs Molmo2's prefill mask allows: causal, plus every image token seeing the
    image tokens after it (the image tokens form one bidirectional block)."""
    return tokens * (tokens + 1) // 2 + image_tokens * (image_tokens - 1) // 2


def prefill_flops(config: Any, tokens: int, image_tokens: int = 0, logits_tokens: int = 1) -> float:
    """Model FLOPs of one LLM prefill over `tokens` prompt tokens (2 per multiply-add).

    Per layer: the q/k/v/o projections and the gated MLP on every token, and QK^T plus PV over the
    attended pairs; then the LM head on `logits_tokens` positions."""
    hidden, heads, kv_heads, head_dim, inter, layers, vocab = _dims(config)
    projections = hidden * head_dim * (2 * heads + 2 * kv_heads)
    mlp = 3 * hidden * inter
    attention = 2 * heads * head_dim * attended_pairs(tokens, image_tokens)
    per_layer = 2 * tokens * (projections + mlp) + 2 * attention
    return float(layers * per_layer + 2 * logits_tokens * hidden * vocab)


def llm_decode_weights(config: Any) -> int:
    """Parameters one decode step reads: every LLM layer, the final norm, the LM head and one
    embedding row (the rest of the embedding table is not touched)."""
    c = _text_config(config)
    hidden, heads, kv_heads, head_dim, inter, layers, vocab = _dims(config)
    qk_norm = 2 * head_dim if getattr(c, "qk_norm_type", "olmo") == "qwen3" else (heads + kv_heads) * head_dim
    bias = head_dim * (heads + 2 * kv_heads) if getattr(c, "attention_bias", False) else 0
    attn = hidden * head_dim * (2 * heads + 2 * kv_heads) + qk_norm + bias
    per_layer = attn + 3 * hidden * inter + 2 * hidden
    return layers * per_layer + hidden + vocab * hidden + hidden


def kv_cache_bytes(config: Any, context_len: int, dtype: torch.dtype) -> int:
    """Bytes of keys and values for `context_len` tokens over all layers."""
    _, _, kv_heads, head_dim, _, layers, _ = _dims(config)
    return 2 * layers * kv_heads * head_dim * context_len * _itemsize(dtype)


def decode_bytes(config: Any, context_len: int, dtype: torch.dtype) -> int:
    """Bytes one decode step must read from memory: the weights plus the KV cache of the context."""
    return llm_decode_weights(config) * _itemsize(dtype) + kv_cache_bytes(config, context_len, dtype)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _dtype_name(dtype: torch.dtype | str) -> str:
    return str(dtype).removeprefix("torch.")


def mfu(flops: float, seconds: float, device_name: str, dtype: torch.dtype | str) -> float | None:
    """Model-FLOPs utilisation: achieved FLOP/s over the device's dense peak for `dtype`.
    None for devices or dtypes without a table entry (CPUs, say) or a non-positive time."""
    peak = device_peak(device_name)
    rate = None if peak is None else peak.tflops.get(_dtype_name(dtype))
    if rate is None or seconds <= 0:
        return None
    return flops / seconds / (rate * 1e12)


def bandwidth_util(num_bytes: float, seconds_per_token: float, device_name: str) -> float | None:
    """Achieved memory bandwidth of a decode step over the device's peak HBM bandwidth (None when unknown)."""
    peak = device_peak(device_name)
    if peak is None or seconds_per_token <= 0:
        return None
    return num_bytes / seconds_per_token / (peak.hbm_tb_s * 1e12)


def run_utilisation(config: Any, device_name: str, dtype: torch.dtype, prompt_tokens: int, image_tokens: int,
                    prefill_s: float, decode_s_per_token: float, new_tokens: int) -> dict[str, float | None]:
    """The two figures for one timed run: prefill MFU and decode bandwidth utilisation (the context
    of a middle decode step: the prompt plus half the new tokens)."""
    flops = prefill_flops(config, prompt_tokens, image_tokens)
    context = prompt_tokens + max(new_tokens, 1) // 2
    return {
        "prefill_tflops": flops / 1e12,
        "prefill_mfu": mfu(flops, prefill_s, device_name, dtype),
        "decode_gb": decode_bytes(config, context, dtype) / 1e9,
        "decode_bw_util": bandwidth_util(decode_bytes(config, context, dtype), decode_s_per_token, device_name),
    }


def run_record(backend: VideoBackend, run: ModelRun, decode_s_per_token: float) -> dict[str, float]:
    """`run_utilisation` for one `pipeline.ModelRun` of `backend`, as floats for the bench's per-run
    record: the figures the device has peaks for, plus the prompt length (every record of one
    device gets the same keys, so the bench's medians work)."""
    from stts_core.timing import device_name

    figures = run_utilisation(backend.model.config, device_name(backend.device), backend.dtype,
                              prompt_tokens=int(run.prompt_tokens), image_tokens=int(run.visual_tokens),
                              prefill_s=float(run.timings["llm_prefill"]), decode_s_per_token=decode_s_per_token,
                              new_tokens=len(run.token_ids))
    out = {k: float(v) for k, v in figures.items() if v is not None}
    out["prompt_tokens"] = float(run.prompt_tokens)
    return out


def roofline_table(report: dict[str, Any]) -> str:
    """Prefill MFU and decode bandwidth utilisation per cell and run (medians), when the bench measured them."""
    lines = [f"{'frames':>6} {'keep':>5} {'run':>8} {'prompt':>7} {'prefill ms':>11} {'TFLOP':>7} {'MFU':>6}"
             f" {'dec/tok ms':>11} {'GB/step':>8} {'BW util':>8}"]
    for cell in report.get("cells", []):
        for run in ("baseline", "stts"):
            row = (cell.get("stages_s") or {}).get(run)
            if not row or "prefill_mfu" not in row:
                continue
            lines.append(f"{cell['frames']:>6} {cell['keep']:>5.2f} {run:>8} {row['prompt_tokens']:>7.0f}"
                         f" {row['llm_prefill'] * 1e3:>11.1f} {row['prefill_tflops']:>7.1f} {row['prefill_mfu']:>6.1%}"
                         f" {row['decode_per_token'] * 1e3:>11.2f} {row['decode_gb']:>8.2f} {row['decode_bw_util']:>8.1%}")
    return "\n".join(lines) if len(lines) > 1 else "(no roofline figures: the device has no peak table entry)"
