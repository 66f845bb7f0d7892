"""STTS inside transformers' native Qwen3.5 (`Qwen3_5ForConditionalGeneration`, transformers >= 5.24).

Qwen3.5's vision side is Qwen3-VL's without DeepStack (full attention per temporal patch, a learned
position table, the same processor and prompt with a timestamp per temporal patch), so the backend is
Qwen3-VL's with no extra mergers and plain merger features for the LLM. Its LLM is hybrid: most layers
are linear attention (gated delta rule, no positions, a recurrent state) and every fourth is full
attention with M-RoPE; the pruned prompt feeds both kinds alike, the full-attention layers with the
unpruned prompt's position columns. LLM-stage methods are not offered: their attention row comes from a
layer's key cache, which the linear-attention layers do not keep.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen3_5.modeling_qwen3_5 import apply_rotary_pos_emb_vision

from stts_core.models.qwen3_5.modeling import check_layer, default_layer
from stts_core.models.qwen3_vl.backend import Qwen3VLBackend


class Qwen3_5Backend(Qwen3VLBackend):
    """Qwen3.5 stage by stage: Qwen3-VL's vision stages, no DeepStack."""

    name = "qwen3_5"
    capabilities: frozenset[str] = frozenset()
    rotate = staticmethod(apply_rotary_pos_emb_vision)
    default_layer = staticmethod(default_layer)
    check_layer = staticmethod(check_layer)

    @property
    def extra_mergers(self) -> dict[int, torch.nn.Module]:
        return {}

    def encoder_outputs(self, visual: torch.Tensor) -> dict[str, Any]:
        return {"video": BaseModelOutputWithPooling(pooler_output=(visual,))}
