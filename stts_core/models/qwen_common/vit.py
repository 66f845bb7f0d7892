"""The Qwen-VL ViT run stage by stage with STTS: the data between the stages, block k+1 with the
log-score key bias, the later stock blocks on the kept tokens only, and the patch mergers on kept groups.

The stock vision blocks already take packed input: a flat (tokens, D) sequence, the rotary tables of
those tokens and `cu_seqlens` marking the attention segments. So the pruned suffix is the stock blocks
themselves, given the surviving tokens, the surviving rows of the rotary tables and `cu_seqlens`
rebuilt from the surviving counts (`QwenLayout.cu_seqlens`). Only block k+1 runs its own attention,
because the stock attention has no hook for an additive mask: it is the block's own modules with
SDPA over each temporal patch and the key bias added (a full-attention block: k+1 must attend over
whole temporal patches).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from stts_core.models.base import PreparedInputs, ViTState
from stts_core.models.qwen_common.layout import QwenLayout, token_mask

Rotary = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), one row per token in model order
RotateFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class QwenInputs(PreparedInputs):
    """PreparedInputs plus what the Qwen stages need beside the stock model's own inputs."""

    layout: QwenLayout | None = None
    positions: torch.Tensor | None = None  # (3, L) M-RoPE positions of the unpruned prompt (reference rule)
    padded: bool = False  # an odd frame count got the last frame repeated (one temporal patch = 2 frames)

    @property
    def geometry(self) -> QwenLayout:
        if self.layout is None:
            raise ValueError("These inputs were not prepared by a Qwen-VL backend.")
        return self.layout


@dataclass
class QwenViTState(ViTState):
    """ViTState in both orders: `hidden` is block k's output on the raster (T, N, D) grid (what scorers
    read), `tokens` the model-order output of the last block that ran (every patch, or after pruning
    only the kept ones), `taps` the model-order outputs of the blocks the DeepStack mergers read."""

    tokens: torch.Tensor | None = None
    taps: dict[int, torch.Tensor] = field(default_factory=dict)
    rotary: Rotary | None = None  # every patch's rotary tables, model order


def to_raster(tokens: torch.Tensor, layout: QwenLayout) -> torch.Tensor:
    """(T * N, D) model order -> (T, N, D) raster order (a permutation: exact, differentiable)."""
    inverse = torch.argsort(layout.model_to_raster().to(tokens.device))
    return tokens[inverse].view(layout.frames, layout.patches_per_frame, -1)


def bias_in_model_order(bias: torch.Tensor, layout: QwenLayout) -> torch.Tensor:
    """A raster (T, N) key bias -> (T, N) in model order (model order permutes within a temporal patch)."""
    flat = bias.reshape(-1)[layout.model_to_raster().to(bias.device)]
    return flat.view(layout.frames, layout.patches_per_frame)


def _biased_block(block: torch.nn.Module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  bias: torch.Tensor, rotate: RotateFn, rows: torch.Tensor | None) -> torch.Tensor:
    """One stock vision block (norms, qkv, rotary, proj, MLP) with attention inside each temporal
    patch and the additive key bias. hidden (T * N, D) model order; bias (T, N) model order. Every patch
    is a key; with `rows` (the kept patches) only those rows go on through the projection and the MLP,
    the only ones a later block or merger reads."""
    attn = block.attn
    frames, n = bias.shape
    x = block.norm1(hidden)
    q, k, v = attn.qkv(x).reshape(frames * n, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    q, k = rotate(q, k, cos, sin)
    q, k, v = (y.reshape(frames, n, attn.num_heads, -1).transpose(1, 2) for y in (q, k, v))  # (T, heads, N, hd)
    mask = bias[:, None, None, :].to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling)
    out = out.transpose(1, 2).reshape(frames * n, -1)
    if rows is not None:
        hidden, out = hidden[rows], out[rows]
    hidden = hidden + attn.proj(out)
    return hidden + block.mlp(block.norm2(hidden))


def biased_block(block: torch.nn.Module, hidden: torch.Tensor, rotary: Rotary, bias: torch.Tensor,
                 rotate: RotateFn, recompute: bool = False, rows: torch.Tensor | None = None) -> torch.Tensor:
    """`_biased_block`, its activations recomputed in backward when `recompute` (gradient checkpointing)."""
    if recompute:
        return checkpoint(_biased_block, block, hidden, rotary[0], rotary[1], bias, rotate, rows, use_reentrant=False)
    return _biased_block(block, hidden, rotary[0], rotary[1], bias, rotate, rows)


def kept_rows(tokens: torch.Tensor, layout: QwenLayout, kept: torch.Tensor | None) -> torch.Tensor:
    """The rows of the kept groups' patches of a model-order tensor over every patch (as is when `kept`
    is None, or when the tensor already holds only the kept patches)."""
    if kept is None or tokens.shape[0] != layout.frames * layout.patches_per_frame:
        return tokens
    return tokens[token_mask(kept.to(tokens.device), layout.patches_per_group)]


def merge_kept(merger: torch.nn.Module, tokens: torch.Tensor, layout: QwenLayout,
               kept: torch.Tensor | None) -> torch.Tensor:
    """A patch merger on the kept groups only -> (kept groups, out width) in placeholder (raster) order."""
    merged = merger(kept_rows(tokens, layout, kept))
    return merged[layout.raster_order(kept).to(merged.device)]
