"""The stock Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`) plus the STTS scorer (`Qwen2_5_VLForSTTS`)."""

from __future__ import annotations

from typing import Any

from transformers import Qwen2_5_VLForConditionalGeneration

from stts_core.models.qwen_common.modeling import attach_scorer


def _full_blocks(config: Any) -> list[int]:
    return sorted(int(i) for i in config.vision_config.fullatt_block_indexes)


def default_layer(config: Any) -> int:
    """k = the block before the first full-attention block that has a block after it (6 in the released
    32-block ViT, whose full blocks are 7, 15, 23, 31): block k + 1 then attends over whole temporal
    patches, as the key bias needs, and the window blocks after it run on the kept tokens."""
    depth = int(config.vision_config.depth)
    usable = [i for i in _full_blocks(config) if 1 <= i <= depth - 2]
    if not usable:
        raise ValueError(f"This Qwen2.5-VL ViT has no full-attention block in 1..{depth - 2} for STTS's biased block.")
    return usable[0] - 1


def check_layer(config: Any, layer: int) -> None:
    """Block k + 1 must be a full-attention block (the key bias is per temporal patch) with a block after it."""
    depth = int(config.vision_config.depth)
    if not 0 <= layer <= depth - 3 or layer + 1 not in _full_blocks(config):
        raise ValueError(f"STTS scoring layer {layer} must be followed by a full-attention block with a block after "
                         f"it; this ViT's full-attention blocks are {_full_blocks(config)} of {depth}.")


class Qwen2_5_VLForSTTS(Qwen2_5_VLForConditionalGeneration):
    """The stock Qwen2.5-VL plus the STTS scorer as a named submodule (`temporal_token_scorer`)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        attach_scorer(self, default_layer, check_layer)
