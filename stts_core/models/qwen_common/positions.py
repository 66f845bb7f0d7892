"""3-D M-RoPE positions of a Qwen-VL prompt, computed once on the unpruned prompt.

Each text token has one position (t = h = w); each visual token has (t, h, w) = the start of its
vision block plus (its temporal index x the block's time interval, its row, its column). After a
vision block, text goes on at the block's largest position + 1: the rule of Qwen's reference
implementation (`get_rope_index` of the Qwen2-VL / Qwen2.5-VL / Qwen3-VL releases), used here for the
baseline and STTS alike. transformers 5.24 continues after a block at start + max(rows, cols) instead,
which is the same for Qwen3-VL (one temporal patch per block, temporal index 0) and for a Qwen2.5-VL
video whose last temporal position stays below its largest row / column, and differs otherwise
(docs/families.md).

With tokens pruned, the prompt keeps the columns of the surviving tokens: a kept visual token keeps its
(t, h, w), text keeps its positions, and decoding goes on from the full prompt's largest position + 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

TEXT = 0


def vision_block_positions(start: int, grid: Sequence[int], interval: float) -> torch.Tensor:
    """(3, t * h * w) positions of one vision block whose merged grid is (t, h, w), rows then columns."""
    t, h, w = (int(x) for x in grid)
    temporal = (torch.arange(t) * interval).long()
    tt, hh, ww = torch.meshgrid(temporal, torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([tt, hh, ww]).reshape(3, -1) + start


def mrope_positions(token_types: torch.Tensor, grids: Sequence[Sequence[int]],
                    intervals: Sequence[float] | None = None) -> torch.Tensor:
    """(3, L) positions of one prompt by the reference rule.

    ``token_types`` (L,) is the processor's ``mm_token_type_ids`` (0 text, else visual); each maximal run
    of visual tokens is one vision block and takes the next merged ``grids`` entry (t, h, w) and time
    ``intervals`` entry (positions between temporal patches; 1 when not given)."""
    types = token_types.tolist()
    grid_iter = iter(grids)
    interval_iter = iter(intervals if intervals is not None else [1.0] * len(grids))
    parts: list[torch.Tensor] = []
    start = 0
    for kind, run in itertools.groupby(types):
        length = len(list(run))
        if kind == TEXT:
            parts.append(torch.arange(start, start + length).expand(3, -1))
            start += length
            continue
        try:
            grid, interval = next(grid_iter), next(interval_iter)
        except StopIteration:
            raise ValueError("The prompt has more vision blocks than grids were given.") from None
        block = vision_block_positions(start, grid, interval)
        if block.shape[1] != length:
            raise ValueError(f"A vision block of {length} tokens does not match its grid {tuple(grid)}.")
        parts.append(block)
        start = int(block.max()) + 1
    if not parts:
        return torch.zeros(3, 0, dtype=torch.long)
    return torch.cat(parts, dim=1).to(token_types.device)


def kept_positions(positions: torch.Tensor, stay: torch.Tensor) -> torch.Tensor:
    """(3, 1, L') the columns of the tokens that stay (the model's (3, batch, length) layout)."""
    return positions[:, stay.to(positions.device)][:, None]


def next_position(positions: torch.Tensor) -> int:
    """Where decoding goes on: the unpruned prompt's largest position + 1."""
    return int(positions.max()) + 1 if positions.numel() else 0


def decode_positions(start: int, steps: int, device: torch.device) -> torch.Tensor:
    """(3, 1, steps) positions start, start + 1, ... of generated tokens (the same on all three axes)."""
    return torch.arange(start, start + steps, device=device).view(1, 1, -1).expand(3, 1, -1)
