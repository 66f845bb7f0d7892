"""STTS inside transformers' native Qwen3-VL (`Qwen3VLForConditionalGeneration`, transformers >= 5.24).

What Qwen3-VL adds to the shared Qwen backend (`qwen_common.backend`):
- every ViT block attends over one temporal patch (no windows), so any k works and block k+1 is full;
- a learned position table, resampled to the video's grid, is added before block 0 (as the stock
  `Qwen3VLVisionModel.forward` does, through transformers' own interpolation helpers);
- DeepStack: extra mergers read ViT blocks (e.g. 5, 11, 17) and their features are added to the LLM's
  first layers at the visual tokens. They read the kept groups only: a tap at or before k+1 from every
  patch (unpacked), a later one from the packed kept tokens; so the injected features have the pruned
  count. `connect` carries them as extra columns of the same rows (merger output first, then one
  LLM-width block per tap), so whatever prunes a row (STTS, or a visual-stage method after the full ViT)
  drops its DeepStack features too; `encoder_outputs` splits them off again for the stock LLM.
- the prompt puts each temporal patch in its own vision block after its timestamp ("<1.5 seconds>"), and
  the video processor's pixel budget is per clip: a checkpoint that records `stts.frame_pixels` has its
  frames pinned to that many pixels each (aspect kept), else the checkpoint's own processor settings
  apply, with the reference implementation's per-frame cap.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    BaseModelOutputWithDeepstackFeatures,
    apply_rotary_pos_emb_vision,
)
from transformers.vision_utils import get_vision_interpolation_indices_and_weights, get_vision_position_ids

from stts_core.models.qwen3_vl.modeling import check_layer, default_layer
from stts_core.models.qwen_common.backend import QwenBackend
from stts_core.models.qwen_common.layout import QwenLayout
from stts_core.models.qwen_common.vit import QwenInputs, Rotary


class Qwen3VLBackend(QwenBackend):
    """Qwen3-VL stage by stage (see the module docstring)."""

    name = "qwen3_vl"
    rotate = staticmethod(apply_rotary_pos_emb_vision)
    default_layer = staticmethod(default_layer)
    check_layer = staticmethod(check_layer)

    @property
    def extra_mergers(self) -> dict[int, torch.nn.Module]:
        vision = self.vision
        return {int(i): vision.deepstack_merger_list[j] for j, i in enumerate(vision.deepstack_visual_indexes)}

    def _embed(self, inputs: QwenInputs) -> tuple[torch.Tensor, Rotary]:
        """Patch embedding + the resampled learned position table, and the rotary tables (model order)."""
        vision = self.vision
        grid = inputs.tensors["video_grid_thw"]
        index, weight = get_vision_interpolation_indices_and_weights(
            grid, num_grid_per_side=vision.num_grid_per_side, mode=vision.interpolation_mode,
            align_corners=vision.interpolation_align_corners, spatial_merge_size=vision.spatial_merge_size, kwargs={})
        x = vision.patch_embed(inputs.tensors["pixel_values_videos"].to(vision.dtype))
        x = x + (vision.pos_embed(index) * weight[:, :, None]).sum(1).to(x.dtype)
        rotary = vision.rotary_pos_emb(x, get_vision_position_ids(grid, vision.spatial_merge_size, kwargs={}))
        return x, rotary

    def _layout(self, grid: tuple[int, int, int]) -> QwenLayout:
        t, h, w = grid
        merge = int(self.vision.spatial_merge_size)
        return QwenLayout(frames=t, patch_rows=h, patch_cols=w, merge=merge,
                          group_ids=torch.arange(t * (h // merge) * (w // merge)))

    def _vision_grids(self, tensors: dict[str, torch.Tensor], layout: QwenLayout) -> tuple[list, list[float]]:
        """One vision block per temporal patch (each after its timestamp), temporal index 0."""
        grid = (1, layout.group_rows, layout.group_cols)
        return [grid] * layout.frames, [1.0] * layout.frames

    def _video_kwargs(self, num_frames: int) -> dict[str, Any]:
        if self.frame_pixels:
            budget = self.frame_pixels * num_frames  # the processor's budget is per clip
            return {"size": {"shortest_edge": budget, "longest_edge": budget}, "cap_pixels_per_frame": False}
        if getattr(self.processor.video_processor, "cap_pixels_per_frame", None) is None:
            return {"cap_pixels_per_frame": True}  # the reference implementation's per-frame cap
        return {}

    def encoder_outputs(self, visual: torch.Tensor) -> dict[str, Any]:
        """`connect`'s rows -> the stock LLM's video features: merger output and one DeepStack block per tap."""
        width = self.llm_hidden_size
        taps = len(self.extra_mergers)
        if visual.shape[-1] != width * (1 + taps):
            raise ValueError(f"Visual features of width {visual.shape[-1]}; expected {width} x {1 + taps}.")
        deepstack = [(visual[:, width * (j + 1): width * (j + 2)],) for j in range(taps)]
        return {"video": BaseModelOutputWithDeepstackFeatures(pooler_output=(visual[:, :width],),
                                                             deepstack_features=deepstack)}
