"""Qwen3.5 (transformers' native `Qwen3_5ForConditionalGeneration`, no remote code): Qwen3-VL's ViT without DeepStack, a hybrid linear / full-attention LLM.

Modules: `modeling` (the stock model plus the scorer), `backend` (stage-by-stage STTS, Qwen3-VL's stages),
`build` (presets, processors, tiny checkpoints). What the Qwen families share is in
`stts_core.models.qwen_common`. A mask row is a temporal patch (two frames fused by the patch embedding).
"""

from __future__ import annotations

from stts_core.models.qwen_common.family import SCORER_PREFIX, VISION_PREFIXES, qwen_family
from stts_core.models.registry import register_family

PRESETS = ("qwen3.5-micro", "qwen3.5-tiny")

FAMILY = register_family(qwen_family("qwen3_5", "Qwen3.5", __name__, "Qwen3_5ForSTTS", "Qwen3_5Backend", PRESETS,
                                     gpu_per_frame_s=0.6))

__all__ = ["FAMILY", "PRESETS", "SCORER_PREFIX", "VISION_PREFIXES"]
