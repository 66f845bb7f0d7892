"""Qwen2.5-VL (transformers' native `Qwen2_5_VLForConditionalGeneration`, no remote code).

Modules: `modeling` (the stock model plus the scorer), `backend` (stage-by-stage STTS with window attention),
`build` (presets, processors, tiny checkpoints). What the Qwen families share is in
`stts_core.models.qwen_common`. A mask row is a temporal patch (two frames fused by the patch embedding).
"""

from __future__ import annotations

from stts_core.models.qwen_common.family import SCORER_PREFIX, VISION_PREFIXES, qwen_family
from stts_core.models.registry import register_family

PRESETS = ("qwen2.5-vl-micro", "qwen2.5-vl-tiny", "qwen2.5-vl-cpu-mid", "qwen2.5-vl-3b", "qwen2.5-vl-7b")

FAMILY = register_family(qwen_family("qwen2_5_vl", "Qwen2.5-VL", __name__, "Qwen2_5_VLForSTTS", "Qwen2_5_VLBackend", PRESETS,
                                     gpu_per_frame_s=0.75))

__all__ = ["FAMILY", "PRESETS", "SCORER_PREFIX", "VISION_PREFIXES"]
