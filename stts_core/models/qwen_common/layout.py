"""Where every patch of a Qwen-VL video sits, and the attention segments of its ViT blocks.

Qwen-VL's ViT sees a video as a flat sequence in *model order*: temporal patch after temporal patch
(two frames fused by the `Conv3d` patch embedding), and inside one temporal patch the 2x2 patches the
merger pools into one LLM token next to each other (Qwen2.5-VL further permutes those merge groups
into window order). STTS speaks of *raster order*: a (T, N) grid of patches, row by row, with a
(G, P) table of the raster patches each LLM token pools. `QwenLayout` maps one onto the other, so
scorers, masks and pictures work on the raster grid while the stock blocks keep their own order.

Attention segments: a full-attention block attends within each temporal patch, a window block within
each window (Qwen2.5-VL). With a keep mask, every segment keeps its surviving tokens in order and
`cu_seqlens` is rebuilt from the surviving counts, empty segments dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FULL = "full"
WINDOW = "window"


@dataclass(frozen=True)
class QwenLayout:
    """The geometry of one video: its grid and the model order of its merge groups."""

    frames: int  # T: temporal patches (mask rows)
    patch_rows: int  # patches per column of a temporal patch (grid_h)
    patch_cols: int  # patches per row (grid_w)
    merge: int  # spatial merge size (2: 2x2 patches per LLM token)
    group_ids: torch.Tensor  # (T * G,) raster id t * G + g of every merge group, in model order
    window_ids: torch.Tensor | None = None  # (T * G,) window of every model-order group (None: no windows)

    @property
    def group_rows(self) -> int:
        return self.patch_rows // self.merge

    @property
    def group_cols(self) -> int:
        return self.patch_cols // self.merge

    @property
    def groups_per_frame(self) -> int:
        return self.group_rows * self.group_cols

    @property
    def patches_per_group(self) -> int:
        return self.merge * self.merge

    @property
    def patches_per_frame(self) -> int:
        return self.patch_rows * self.patch_cols

    def group_table(self) -> torch.Tensor:
        """(G, P) raster patch indices of each LLM token's patches, slots in the merger's (row, col) order."""
        m = self.merge
        group, slot = torch.arange(self.groups_per_frame), torch.arange(m * m)
        bh, bw = group // self.group_cols, group % self.group_cols
        mh, mw = slot // m, slot % m
        rows = bh[:, None] * m + mh[None]
        cols = bw[:, None] * m + mw[None]
        return rows * self.patch_cols + cols

    def model_to_raster(self) -> torch.Tensor:
        """(T * N,) flat raster index t * N + n of every patch in model order."""
        g = self.groups_per_frame
        ids = self.group_ids.cpu()
        t, local = ids // g, ids % g
        patches = self.group_table()[local]  # (T * G, P)
        return (t[:, None] * self.patches_per_frame + patches).reshape(-1)

    def segment_ids(self, kind: str) -> torch.Tensor:
        """(T * G,) attention segment of every model-order group: its temporal patch, or its window."""
        if kind == WINDOW:
            if self.window_ids is None:
                raise ValueError("This model has no window-attention blocks.")
            return self.window_ids
        return self.group_ids // self.groups_per_frame

    def kept_groups(self, keep_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(T * G,) bool: which model-order groups a raster (T, G) keep mask keeps (None: all)."""
        if keep_mask is None:
            return None
        if tuple(keep_mask.shape) != (self.frames, self.groups_per_frame):
            raise ValueError(f"The keep mask has shape {tuple(keep_mask.shape)}, expected "
                             f"({self.frames}, {self.groups_per_frame}).")
        return keep_mask.reshape(-1).to(self.group_ids.device)[self.group_ids]

    def cu_seqlens(self, kind: str, kept: torch.Tensor | None = None) -> torch.Tensor:
        """int32 cumulative token counts of the non-empty segments of a `kind` block, over every group
        (kept None) or the kept ones only, in model order."""
        seg = self.segment_ids(kind)
        if kept is not None:
            seg = seg[kept.to(seg.device)]
        counts = torch.bincount(seg)
        counts = counts[counts > 0] * self.patches_per_group
        return F.pad(counts.cumsum(0), (1, 0)).to(torch.int32)

    def raster_order(self, kept: torch.Tensor | None = None) -> torch.Tensor:
        """Permutation taking the (kept) model-order groups to raster order, i.e. to the order of the
        prompt's placeholders."""
        ids = self.group_ids if kept is None else self.group_ids[kept.to(self.group_ids.device)]
        return torch.argsort(ids)


def token_mask(kept_groups: torch.Tensor, patches_per_group: int) -> torch.Tensor:
    """Per-group mask -> per-patch mask (model order: a group's patches are adjacent)."""
    return kept_groups.repeat_interleave(patches_per_group)


def max_length(cu_seqlens: torch.Tensor) -> int:
    """The longest segment of a `cu_seqlens` (0 for none)."""
    if cu_seqlens.numel() < 2:
        return 0
    return int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
