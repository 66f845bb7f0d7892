"""Build Qwen3-VL checkpoints from a preset: config, processor, random weights, tiny saved checkpoints.

Presets: `qwen3-vl-micro` / `qwen3-vl-tiny` for tests and offline checks; `qwen3-vl-cpu-mid`, Qwen3-VL's
block structure (DeepStack taps at the same relative depths, full attention per temporal patch) scaled
down so a 32-frame run takes seconds on a CPU; `qwen3-vl-2b` / `-4b` / `-8b`, the published
architectures (sizes from the released configs) with random weights, for GPU timing. Every preset pins
its frames to `frame` x `frame` pixels (aspect kept for other shapes): timing does not depend on weight
values but does on the token count, which the stock processor's per-clip budget would tie to the
number of frames.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2VLImageProcessor,
    Qwen3VLConfig,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

from stts_core.models.qwen3_vl.modeling import Qwen3VLForSTTS
from stts_core.models.qwen_common import build as common

# Published Qwen3-VL text settings: M-RoPE sections of a 128-wide head, interleaved, theta 5e6.
_REAL_ROPE = common.rope(5_000_000.0, [24, 20, 20], interleaved=True)
_REAL_VISION = dict(patch_size=16, num_position_embeddings=2304, hidden_act="gelu_pytorch_tanh")

PRESETS: dict[str, dict[str, Any]] = {
    # Unit tests: forward + generate in milliseconds; one DeepStack tap before k+1, one after.
    "qwen3-vl-micro": {
        "frame": 64, "stts_layer": 0, "initializer_range": 0.065,
        "vision": dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=8,
                       num_position_embeddings=16, deepstack_visual_indexes=[0, 2]),
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=16, rope_parameters=common.rope(10000.0, [4, 2, 2], True)),
    },
    # The app and CLI checks: a few more groups per temporal patch (6 x 6).
    "qwen3-vl-tiny": {
        "frame": 96, "stts_layer": 1, "initializer_range": 0.065,
        "vision": dict(depth=6, hidden_size=64, intermediate_size=128, num_heads=4, patch_size=8,
                       num_position_embeddings=36, deepstack_visual_indexes=[1, 3]),
        "text": dict(hidden_size=64, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, rope_parameters=common.rope(10000.0, [4, 2, 2], True)),
    },
    # Qwen3-VL's structure at a size where a 32-frame run takes seconds on a 2-core CPU: 320 px frames
    # (10 x 10 LLM tokens per temporal patch), 12 blocks with taps at 2 / 5 / 8 (5 / 11 / 17 of 24).
    "qwen3-vl-cpu-mid": {
        "frame": 320, "stts_layer": 1,
        "vision": dict(depth=12, hidden_size=192, intermediate_size=768, num_heads=3, patch_size=16,
                       num_position_embeddings=196, deepstack_visual_indexes=[2, 5, 8]),
        "text": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                     num_key_value_heads=4, head_dim=64, rope_parameters=common.rope(5_000_000.0, [12, 10, 10], True)),
    },
    "qwen3-vl-2b": {
        "frame": 448, "stts_layer": 3,
        "vision": dict(_REAL_VISION, depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
                       deepstack_visual_indexes=[5, 11, 17]),
        "text": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                     num_key_value_heads=8, head_dim=128, vocab_size=151936, rope_parameters=_REAL_ROPE),
        "tie_word_embeddings": True,
    },
    "qwen3-vl-4b": {
        "frame": 448, "stts_layer": 3,
        "vision": dict(_REAL_VISION, depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
                       deepstack_visual_indexes=[5, 11, 17]),
        "text": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, vocab_size=151936, rope_parameters=_REAL_ROPE),
        "tie_word_embeddings": True,
    },
    "qwen3-vl-8b": {
        "frame": 448, "stts_layer": 3,
        "vision": dict(_REAL_VISION, depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
                       deepstack_visual_indexes=[8, 16, 24]),
        "text": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, vocab_size=151936, rope_parameters=_REAL_ROPE),
        "tie_word_embeddings": False,
    },
}


def build_processor(tokenizer: PreTrainedTokenizerFast, preset: str,
                    presets: dict[str, dict[str, Any]] | None = None) -> Qwen3VLProcessor:
    """The stock Qwen3-VL processor for the preset's patch size, frames pinned by the backend (`presets`:
    another family's table whose models take this processor, Qwen3.5's)."""
    patch = (presets or PRESETS)[preset]["vision"]["patch_size"]
    video = Qwen3VLVideoProcessor(patch_size=patch, temporal_patch_size=2, merge_size=2, do_sample_frames=False,
                                  cap_pixels_per_frame=False)
    image = Qwen2VLImageProcessor(patch_size=patch, temporal_patch_size=2, merge_size=2)
    return Qwen3VLProcessor(image_processor=image, video_processor=video, tokenizer=tokenizer,
                            chat_template=common.chat_template("<|video_pad|>"))


def build_config(preset: str, tokenizer: PreTrainedTokenizerFast | None = None, keep_ratio: float = 0.5) -> Qwen3VLConfig:
    """A Qwen3VLConfig for a preset; with a tokenizer, the vocabulary and special ids are the tokenizer's."""
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
    return Qwen3VLConfig(vision_config=vision, text_config=text, tie_word_embeddings=spec.get("tie_word_embeddings", False),
                         stts=stts, **ids)


def build_model(preset: str, tokenizer: PreTrainedTokenizerFast | None = None, seed: int = 0,
                dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Qwen3VLForSTTS:
    """A randomly initialised Qwen3VLForSTTS of the preset's architecture."""
    config = build_config(preset, tokenizer)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3VLForSTTS(config)
    return common.finish_model(model.to(dtype=dtype), tokenizer)


def build_random_checkpoint(out_dir: str | Path, preset: str = "qwen3-vl-micro",
                            words: list[str] | tuple[str, ...] = (), seed: int = 0) -> Path:
    """Write a random-weight checkpoint of a preset that `load_backend` reads back."""
    tokenizer = common.build_tokenizer(words)
    model = build_model(preset, tokenizer, seed=seed)
    return common.save_checkpoint(model, build_processor(tokenizer, preset), out_dir)
