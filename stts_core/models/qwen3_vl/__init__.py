"""Qwen3-VL (transformers' native `Qwen3VLForConditionalGeneration`, no remote code).

Modules: `modeling` (the stock model plus the scorer), `backend` (stage-by-stage STTS with DeepStack),
`build` (presets, processors, tiny checkpoints). What the Qwen families share is in
`stts_core.models.qwen_common`. A mask row is a temporal patch (two frames fused by the patch embedding).
"""

from __future__ import annotations

from stts_core.models.qwen_common.family import SCORER_PREFIX, VISION_PREFIXES, qwen_family
from stts_core.models.registry import register_family

PRESETS = ("qwen3-vl-micro", "qwen3-vl-tiny", "qwen3-vl-cpu-mid", "qwen3-vl-2b", "qwen3-vl-4b", "qwen3-vl-8b")

FAMILY = register_family(qwen_family("qwen3_vl", "Qwen3-VL", __name__, "Qwen3VLForSTTS", "Qwen3VLBackend", PRESETS,
                                     gpu_per_frame_s=0.6))

__all__ = ["FAMILY", "PRESETS", "SCORER_PREFIX", "VISION_PREFIXES"]
