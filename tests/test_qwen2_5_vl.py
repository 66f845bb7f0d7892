"""Qwen2.5-VL specifics: the window layout against transformers' own helpers, a window with every group
pruned, positions against transformers' own where the two rules agree and where transformers 5.24 puts the
text after a video elsewhere, and the scoring layer before a full-attention block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.vision_utils import get_vision_attention_seqlens, get_vision_window_index

from stts_core import load_backend
from stts_core.data.synthetic import VOCABULARY, make_clip
from stts_core.methods.budget import select_groups
from stts_core.models.qwen2_5_vl import FAMILY
from stts_core.models.qwen2_5_vl.backend import Qwen2_5_VLBackend
from stts_core.models.qwen2_5_vl.build import build_config
from stts_core.models.qwen2_5_vl.modeling import check_layer, default_layer
from stts_core.models.qwen_common.layout import FULL, WINDOW, token_mask


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Qwen2_5_VLBackend:
    folder = FAMILY.tiny_checkpoint(tmp_path_factory.mktemp("qwen25") / "ckpt", preset="qwen2.5-vl-micro",
                                    words=VOCABULARY)
    return load_backend(str(folder), device="cpu")


def _clip(frames: int, height: int = 56, width: int = 56) -> np.ndarray:
    video = make_clip(5, num_frames=max(frames, 4), size=max(height, width, 64)).frames
    return np.ascontiguousarray(video[:frames, :height, :width])


@pytest.mark.parametrize("height,width", [(56, 56), (42, 98)])
def test_the_layout_is_transformers_window_order(backend: Qwen2_5_VLBackend, height: int, width: int) -> None:
    inputs = backend.prepare(_clip(6, height, width), "what moves ?")
    layout, grid, vision = inputs.geometry, inputs.tensors["video_grid_thw"], backend.vision
    order, windows = get_vision_window_index(grid, spatial_merge_size=2, window_size=vision.window_size,
                                             patch_size=vision.patch_size, kwargs={})
    full, _ = get_vision_attention_seqlens(grid, vision.config, kwargs={})
    assert torch.equal(layout.group_ids.cpu(), order)
    assert torch.equal(layout.cu_seqlens(WINDOW).cpu(), windows.int())
    assert torch.equal(layout.cu_seqlens(FULL).cpu(), full.int())


def test_a_window_with_every_group_pruned_is_dropped(backend: Qwen2_5_VLBackend) -> None:
    inputs = backend.prepare(_clip(6), "what moves ?")
    layout = inputs.geometry
    mask = select_groups(torch.rand(inputs.num_frames, inputs.groups.shape[0],
                                    generator=torch.Generator().manual_seed(4)), 0.7)
    window = layout.window_ids == layout.window_ids[layout.group_ids // layout.groups_per_frame == 1][0]
    mask.view(-1)[layout.group_ids[window]] = False  # every group of temporal patch 1's first window
    kept = layout.kept_groups(mask)
    all_windows, kept_windows = layout.cu_seqlens(WINDOW), layout.cu_seqlens(WINDOW, kept)
    assert len(kept_windows) < len(all_windows) and bool((kept_windows[1:] > kept_windows[:-1]).all())
    with torch.no_grad():
        prefix = backend.vit_prefix(inputs)
        state = backend.vit_suffix(prefix, inputs, mask, None)
        x = backend._block(backend.scoring_layer + 1, prefix.tokens, prefix.rotary, backend._segments(layout))
        rows = token_mask(kept, 4)
        x, cos, sin = x[rows], prefix.rotary[0][rows], prefix.rotary[1][rows]
        for i in range(backend.scoring_layer + 2, backend.last_layer + 1):
            seg = layout.segment_ids(backend.block_kind(i))[kept].repeat_interleave(4)
            x = torch.cat([backend.vision.blocks[i](x[seg == s], cu_seqlens=torch.tensor([0, int((seg == s).sum())]),
                                                     position_embeddings=(cos[seg == s], sin[seg == s]))
                           for s in torch.unique(seg)])
    torch.testing.assert_close(state.tokens, x, atol=1e-5, rtol=1e-5)
    assert backend.connect(state, inputs, mask).shape[0] == int(mask.sum())


def test_positions_agree_with_transformers_until_the_video_outlasts_its_grid(backend: Qwen2_5_VLBackend) -> None:
    """At one position per second and 1 fps a temporal patch is 2 positions apart. Two temporal patches end
    at t = 2 < the 4 x 4 grid's last row / column (3): both rules put the text after the video at 4. Four
    end at t = 6: the reference rule goes on at 7, transformers 5.24 still at 4 (start + grid side)."""
    for frames, agree in ((4, True), (8, False)):
        inputs = backend.prepare(_clip(frames), "what moves ?")
        t = inputs.tensors
        theirs, _ = backend.model.model.get_rope_index(t["input_ids"], t["mm_token_type_ids"],
                                                       video_grid_thw=t["video_grid_thw"],
                                                       second_per_grid_ts=t["second_per_grid_ts"])
        video = (t["mm_token_type_ids"][0] == 2).nonzero().squeeze(1)
        after = int(video[-1]) + 1
        start = int(inputs.positions[0, video[0]])
        assert int(inputs.positions[0, after]) == int(inputs.positions[:, video].max()) + 1
        assert int(theirs[0, 0, after]) == start + 4
        assert torch.equal(theirs[:, 0, : after], inputs.positions[:, : after])  # the video itself agrees
        assert torch.equal(theirs[:, 0], inputs.positions) == agree


def test_the_scoring_layer_sits_before_a_full_attention_block() -> None:
    assert [default_layer(build_config(p)) for p in ("qwen2.5-vl-3b", "qwen2.5-vl-7b", "qwen2.5-vl-cpu-mid")] \
        == [6, 6, 2]
    config = build_config("qwen2.5-vl-3b")
    check_layer(config, 14)
    with pytest.raises(ValueError, match="full-attention block"):
        check_layer(config, 3)


def test_a_checkpoint_with_a_bad_scoring_layer_is_one_load_error(backend: Qwen2_5_VLBackend, tmp_path: Path) -> None:
    from stts_core.models.base import ModelLoadError

    backend.save(tmp_path)
    config = (tmp_path / "config.json").read_text().replace('"layer": 0', '"layer": 1')
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(ModelLoadError, match="full-attention block"):
        load_backend(str(tmp_path), device="cpu")
