"""Build Qwen2.5-VL checkpoints from a preset: config, processor, random weights, tiny saved checkpoints.

Presets: `qwen2.5-vl-micro` / `qwen2.5-vl-tiny` for tests and offline checks (windows of 2 x 2 LLM
tokens, so a small frame has several); `qwen2.5-vl-cpu-mid`, Qwen2.5-VL's block structure (window
blocks with a full-attention block every fourth, windows of 4 x 4 LLM tokens) scaled down so a
32-frame run takes seconds on a CPU; `qwen2.5-vl-3b` / `-7b`, the published architectures (sizes from
the released configs) with random weights, for GPU timing. Every preset pins its frames to
`frame` x `frame` pixels (aspect kept for other shapes).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

from stts_core.models.qwen2_5_vl.modeling import Qwen2_5_VLForSTTS
from stts_core.models.qwen_common import build as common

# The released ViT (both sizes): 32 blocks, full attention at 7 / 15 / 23 / 31, windows of 112 px.
_REAL_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14, window_size=112,
                    fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, hidden_act="silu")
_REAL_ROPE = common.rope(1_000_000.0, [16, 24, 24])

PRESETS: dict[str, dict[str, Any]] = {
    # Unit tests: 8 x 8 patches = 4 x 4 LLM tokens = 4 windows per temporal patch. One position per second
    # of video, so a clip of two temporal patches at 1 fps ends below the grid's side and transformers'
    # own positions agree with the reference rule (the stock-generate checks compare against them).
    "qwen2.5-vl-micro": {
        "frame": 56, "stts_layer": 0, "initializer_range": 0.065,
        "vision": dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=7, window_size=28,
                       fullatt_block_indexes=[1, 3], tokens_per_second=1),
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=1, rope_parameters=common.rope(10000.0, [2, 3, 3])),
    },
    # The app and CLI checks: 6 x 6 LLM tokens = 9 windows per temporal patch.
    "qwen2.5-vl-tiny": {
        "frame": 84, "stts_layer": 1, "initializer_range": 0.065,
        "vision": dict(depth=6, hidden_size=64, intermediate_size=128, num_heads=4, patch_size=7, window_size=28,
                       fullatt_block_indexes=[2, 5], tokens_per_second=2),
        "text": dict(hidden_size=64, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=2, rope_parameters=common.rope(10000.0, [2, 3, 3])),
    },
    # Qwen2.5-VL's structure at a size where a 32-frame run takes seconds on a 2-core CPU: 224 px frames
    # (8 x 8 LLM tokens = 4 windows per temporal patch), 16 blocks, full attention at 3 / 7 / 11 / 15.
    "qwen2.5-vl-cpu-mid": {
        "frame": 224, "stts_layer": 2,
        "vision": dict(depth=16, hidden_size=192, intermediate_size=512, num_heads=3, patch_size=14, window_size=112,
                       fullatt_block_indexes=[3, 7, 11, 15], tokens_per_second=2, hidden_act="silu"),
        "text": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                     num_key_value_heads=4, rope_parameters=common.rope(1_000_000.0, [8, 12, 12])),
    },
    "qwen2.5-vl-3b": {
        "frame": 448, "stts_layer": 6, "vision": dict(_REAL_VISION),
        "text": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                     num_key_value_heads=2, vocab_size=151936, rope_parameters=_REAL_ROPE),
        "tie_word_embeddings": True,
    },
    "qwen2.5-vl-7b": {
        "frame": 448, "stts_layer": 6, "vision": dict(_REAL_VISION),
        "text": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                     num_key_value_heads=4, vocab_size=152064, rope_parameters=_REAL_ROPE),
        "tie_word_embeddings": False,
    },
}


def build_processor(tokenizer: PreTrainedTokenizerFast, preset: str) -> Qwen2_5_VLProcessor:
    """The stock Qwen2.5-VL processor for the preset's patch size, frames pinned by the backend."""
    patch = PRESETS[preset]["vision"]["patch_size"]
    video = Qwen2VLVideoProcessor(patch_size=patch, temporal_patch_size=2, merge_size=2, do_sample_frames=False,
                                  cap_pixels_per_frame=False)
    image = Qwen2VLImageProcessor(patch_size=patch, temporal_patch_size=2, merge_size=2)
    return Qwen2_5_VLProcessor(image_processor=image, video_processor=video, tokenizer=tokenizer,
                               chat_template=common.chat_template("<|vision_start|><|video_pad|><|vision_end|>"))


def build_config(preset: str, tokenizer: PreTrainedTokenizerFast | None = None,
                 keep_ratio: float = 0.5) -> Qwen2_5_VLConfig:
    """A Qwen2_5_VLConfig for a preset; with a tokenizer, the vocabulary and special ids are the tokenizer's."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    spec = copy.deepcopy(PRESETS[preset])
    text = common.text_vocab(dict(spec["text"], max_position_embeddings=32768), tokenizer)
    vision = dict(spec["vision"], temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=text["hidden_size"])
    init = spec.get("initializer_range", 0.02)
    text["initializer_range"] = vision["initializer_range"] = init
    stts = {"layer": spec["stts_layer"], "keep_ratio": keep_ratio, "scorer_hidden": vision["intermediate_size"],
            "frame_pixels": spec["frame"] ** 2}
    ids = common.token_ids(tokenizer) if tokenizer is not None else {}
    return Qwen2_5_VLConfig(vision_config=vision, text_config=text,
                            tie_word_embeddings=spec.get("tie_word_embeddings", False), stts=stts, **ids)


def build_model(preset: str, tokenizer: PreTrainedTokenizerFast | None = None, seed: int = 0,
                dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Qwen2_5_VLForSTTS:
    """A randomly initialised Qwen2_5_VLForSTTS of the preset's architecture."""
    config = build_config(preset, tokenizer)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2_5_VLForSTTS(config)
    return common.finish_model(model.to(dtype=dtype), tokenizer)


def build_random_checkpoint(out_dir: str | Path, preset: str = "qwen2.5-vl-micro",
                            words: list[str] | tuple[str, ...] = (), seed: int = 0) -> Path:
    """Write a random-weight checkpoint of a preset that `load_backend` reads back."""
    tokenizer = common.build_tokenizer(words)
    model = build_model(preset, tokenizer, seed=seed)
    return common.save_checkpoint(model, build_processor(tokenizer, preset), out_dir)
