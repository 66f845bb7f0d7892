"""The stock Qwen3.5 (`Qwen3_5ForConditionalGeneration`) plus the STTS scorer (`Qwen3_5ForSTTS`)."""

from __future__ import annotations

from typing import Any

from transformers import Qwen3_5ForConditionalGeneration

from stts_core.models.qwen3_vl.modeling import check_layer, default_layer
from stts_core.models.qwen_common.modeling import attach_scorer

__all__ = ["Qwen3_5ForSTTS", "check_layer", "default_layer"]


class Qwen3_5ForSTTS(Qwen3_5ForConditionalGeneration):
    """The stock Qwen3.5 plus the STTS scorer as a named submodule (`temporal_token_scorer`); its ViT is
    Qwen3-VL's (full attention per temporal patch), so the scoring layer follows the same rule."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        attach_scorer(self, default_layer, check_layer)
