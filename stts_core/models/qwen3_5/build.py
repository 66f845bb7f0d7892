"""Build Qwen3.5 checkpoints from a preset: config, processor, random weights, tiny saved checkpoints.

Presets: `qwen3.5-micro` (tests) and `qwen3.5-tiny` (offline checks): Qwen3.5's structure in miniature,
Qwen3-VL's ViT without DeepStack and a hybrid LLM with a full-attention layer after every three
linear-attention ones, M-RoPE on a quarter of each head as released. No real-size preset yet.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast, Qwen3_5Config

from stts_core.models.qwen3_5.modeling import Qwen3_5ForSTTS
from stts_core.models.qwen3_vl.build import build_processor as qwen3_vl_processor
from stts_core.models.qwen_common import build as common

_LINEAR = dict(linear_conv_kernel_dim=4, linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2,
               linear_num_value_heads=4)
_ROPE = dict(common.rope(10000.0, [2, 1, 1], interleaved=True), partial_rotary_factor=0.5)

PRESETS: dict[str, dict[str, Any]] = {
    "qwen3.5-micro": {
        "frame": 64, "stts_layer": 0, "initializer_range": 0.065,
        "vision": dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=8,
                       num_position_embeddings=16),
        "text": dict(_LINEAR, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=16, rope_parameters=_ROPE),
    },
    "qwen3.5-tiny": {
        "frame": 96, "stts_layer": 1, "initializer_range": 0.065,
        "vision": dict(depth=6, hidden_size=64, intermediate_size=128, num_heads=4, patch_size=8,
                       num_position_embeddings=36),
        "text": dict(_LINEAR, hidden_size=64, intermediate_size=192, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, rope_parameters=_ROPE),
    },
}


def build_processor(tokenizer: PreTrainedTokenizerFast, preset: str) -> Any:
    """Qwen3.5 uses the Qwen3-VL processor (transformers' auto mapping for `qwen3_5`)."""
    return qwen3_vl_processor(tokenizer, preset, PRESETS)


def build_config(preset: str, tokenizer: PreTrainedTokenizerFast | None = None, keep_ratio: float = 0.5) -> Qwen3_5Config:
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    spec = copy.deepcopy(PRESETS[preset])
    text = common.text_vocab(dict(spec["text"], max_position_embeddings=32768), tokenizer)
    vision = dict(spec["vision"], temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=text["hidden_size"])
    text["initializer_range"] = vision["initializer_range"] = spec.get("initializer_range", 0.02)
    stts = {"layer": spec["stts_layer"], "keep_ratio": keep_ratio, "scorer_hidden": vision["intermediate_size"],
            "frame_pixels": spec["frame"] ** 2}
    ids = common.token_ids(tokenizer) if tokenizer is not None else {}
    return Qwen3_5Config(vision_config=vision, text_config=text, stts=stts, **ids)


def build_model(preset: str, tokenizer: PreTrainedTokenizerFast | None = None, seed: int = 0,
                dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Qwen3_5ForSTTS:
    config = build_config(preset, tokenizer)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3_5ForSTTS(config)
    return common.finish_model(model.to(dtype=dtype), tokenizer)


def build_random_checkpoint(out_dir: str | Path, preset: str = "qwen3.5-micro",
                            words: list[str] | tuple[str, ...] = (), seed: int = 0) -> Path:
    tokenizer = common.build_tokenizer(words)
    model = build_model(preset, tokenizer, seed=seed)
    return common.save_checkpoint(model, build_processor(tokenizer, preset), out_dir)
