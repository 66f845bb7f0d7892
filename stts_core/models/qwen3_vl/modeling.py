"""The stock Qwen3-VL (`Qwen3VLForConditionalGeneration`) plus the STTS scorer (`Qwen3VLForSTTS`)."""

from __future__ import annotations

from typing import Any

from transformers import Qwen3VLForConditionalGeneration

from stts_core.models.qwen_common.modeling import attach_scorer, relative_scoring_layer


def default_layer(config: Any) -> int:
    """Block k at the paper's relative depth (3 of 27: block 3 of Qwen3-VL's 24- and 27-block ViTs)."""
    return relative_scoring_layer(int(config.vision_config.depth))


def check_layer(config: Any, layer: int) -> None:
    """Every Qwen3-VL block attends over whole temporal patches, so any k with a block after k + 1 works."""
    depth = int(config.vision_config.depth)
    if not 0 <= layer <= depth - 2:
        raise ValueError(f"STTS scoring layer {layer} must leave at least one of the {depth} ViT blocks after it.")


class Qwen3VLForSTTS(Qwen3VLForConditionalGeneration):
    """The stock Qwen3-VL plus the STTS scorer as a named submodule (`temporal_token_scorer`)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        attach_scorer(self, default_layer, check_layer)
