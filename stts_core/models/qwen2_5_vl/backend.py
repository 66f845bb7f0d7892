"""STTS inside transformers' native Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`, transformers >= 5.24).

What Qwen2.5-VL adds to the shared Qwen backend (`qwen_common.backend`):
- window attention: the ViT runs its merge groups in window order (`get_vision_window_index`, the
  stock helper), most blocks attend within windows of 4 x 4 LLM tokens and the blocks at
  `fullatt_block_indexes` within a temporal patch. The layout's model order is that window order, so
  the pruned suffix rebuilds `cu_seqlens` per window for window blocks and per temporal patch for full
  blocks from the kept counts (empty windows and temporal patches dropped); the merger's output goes
  back to placeholder order by the layout, as the stock model's reverse index does.
- block k + 1 must be a full-attention block (k = 6 in the released models), since the key bias is
  normalised per temporal patch and every key of a temporal patch should see it;
- no position table before block 0 (rotary only), no DeepStack;
- the prompt holds the whole video as one vision block; its temporal positions step by
  tokens_per_second x seconds per temporal patch (`second_per_grid_ts`), so the reference rule's
  "text after the video starts at the largest position + 1" can differ from transformers 5.24's
  (docs/families.md);
- the video processor's pixel budget is per frame: a checkpoint that records `stts.frame_pixels` has its
  frames pinned to that many pixels each (aspect kept).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision
from transformers.vision_utils import get_vision_position_ids, get_vision_window_index

from stts_core.models.qwen2_5_vl.modeling import check_layer, default_layer
from stts_core.models.qwen_common.backend import QwenBackend
from stts_core.models.qwen_common.layout import FULL, WINDOW, QwenLayout
from stts_core.models.qwen_common.vit import QwenInputs, Rotary


class Qwen2_5_VLBackend(QwenBackend):
    """Qwen2.5-VL stage by stage (see the module docstring)."""

    name = "qwen2_5_vl"
    rotate = staticmethod(apply_rotary_pos_emb_vision)
    default_layer = staticmethod(default_layer)
    check_layer = staticmethod(check_layer)

    def block_kind(self, index: int) -> str:
        return FULL if index in self.vision.fullatt_block_indexes else WINDOW

    def _embed(self, inputs: QwenInputs) -> tuple[torch.Tensor, Rotary]:
        """Patch embedding in window order and the rotary tables in the same order."""
        vision = self.vision
        layout = inputs.geometry
        grid = inputs.tensors["video_grid_thw"]
        unit = layout.patches_per_group
        x = vision.patch_embed(inputs.tensors["pixel_values_videos"].to(vision.dtype))
        order = layout.group_ids.to(x.device)
        x = x.view(-1, unit, x.shape[-1])[order].reshape(x.shape)
        cos, sin = vision.rotary_pos_emb(x, get_vision_position_ids(grid, vision.spatial_merge_size, kwargs={}))
        return x, tuple(r.view(-1, unit, r.shape[-1])[order].reshape(r.shape) for r in (cos, sin))

    def _layout(self, grid: tuple[int, int, int]) -> QwenLayout:
        """Window order from the stock helper; every model-order group's window from its window lengths."""
        vision = self.vision
        t, h, w = grid
        merge = int(vision.spatial_merge_size)
        order, cu = get_vision_window_index(torch.tensor([[t, h, w]]), spatial_merge_size=merge,
                                            window_size=vision.window_size, patch_size=vision.patch_size, kwargs={})
        sizes = (cu[1:] - cu[:-1]).long() // (merge * merge)
        windows = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
        return QwenLayout(frames=t, patch_rows=h, patch_cols=w, merge=merge, group_ids=order.long(), window_ids=windows)

    def _vision_grids(self, tensors: dict[str, torch.Tensor], layout: QwenLayout) -> tuple[list, list[float]]:
        """One vision block for the whole video, temporal positions tokens_per_second x seconds apart."""
        seconds = tensors.get("second_per_grid_ts")
        step = float(seconds.reshape(-1)[0]) if seconds is not None else 1.0
        interval = float(self.model.config.vision_config.tokens_per_second) * step
        return [(layout.frames, layout.group_rows, layout.group_cols)], [interval]

    def _video_kwargs(self, num_frames: int) -> dict[str, Any]:
        if self.frame_pixels:
            return {"size": {"shortest_edge": self.frame_pixels, "longest_edge": self.frame_pixels},
                    "cap_pixels_per_frame": False}
        if getattr(self.processor.video_processor, "cap_pixels_per_frame", None) is None:
            return {"cap_pixels_per_frame": True}  # the reference implementation's total bound
        return {}

    def encoder_outputs(self, visual: torch.Tensor) -> dict[str, Any]:
        return {"video": BaseModelOutputWithPooling(pooler_output=(visual,))}
