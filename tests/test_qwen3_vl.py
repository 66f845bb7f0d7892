"""Qwen3-VL specifics: positions against transformers' own, DeepStack on kept groups only (counts, the tap
before k+1 read from every patch, the taps after it from the packed tokens), visual-stage methods with the
DeepStack columns riding along, the scoring layer, and `stts ask` on a tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stts_core import kept_group_count, load_backend
from stts_core.cli.ask import main as ask
from stts_core.data.synthetic import VOCABULARY, make_clip
from stts_core.methods.budget import select_groups
from stts_core.methods.registry import list_methods
from stts_core.models.qwen3_vl import FAMILY
from stts_core.models.qwen3_vl.backend import Qwen3VLBackend
from stts_core.models.qwen3_vl.build import build_config
from stts_core.models.qwen3_vl.modeling import check_layer, default_layer
from stts_core.pipeline import visual_pass

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return FAMILY.tiny_checkpoint(tmp_path_factory.mktemp("qwen3") / "ckpt", preset="qwen3-vl-micro", words=VOCABULARY)


@pytest.fixture(scope="module")
def backend(checkpoint: Path) -> Qwen3VLBackend:
    return load_backend(str(checkpoint), device="cpu")


def _clip(frames: int, height: int = 84, width: int = 84) -> np.ndarray:
    video = make_clip(3, num_frames=max(frames, 4), size=max(height, width)).frames
    return np.ascontiguousarray(video[:frames, :height, :width])


@pytest.mark.parametrize("frames,height,width", [(4, 84, 84), (9, 84, 84), (10, 56, 120)])
def test_positions_equal_transformers_get_rope_index(backend: Qwen3VLBackend, frames: int, height: int,
                                                     width: int) -> None:
    """One vision block per temporal patch: transformers' rule and the reference rule agree everywhere."""
    inputs = backend.prepare(_clip(frames, height, width), "what moves ?")
    t = inputs.tensors
    theirs, delta = backend.model.model.get_rope_index(t["input_ids"], t["mm_token_type_ids"],
                                                       video_grid_thw=t["video_grid_thw"])
    assert torch.equal(theirs[:, 0], inputs.positions)
    assert int(inputs.positions.max()) + 1 == int(delta) + t["input_ids"].shape[1]


def test_deepstack_reads_kept_groups_only(backend: Qwen3VLBackend) -> None:
    inputs = backend.prepare(_clip(8), "what moves ?")
    mask = select_groups(torch.rand(inputs.num_frames, inputs.groups.shape[0],
                                    generator=torch.Generator().manual_seed(2)), 0.5)
    k1 = backend.scoring_layer + 1
    taps = sorted(backend.extra_mergers)
    assert any(i <= k1 for i in taps) and any(i > k1 for i in taps)  # the micro preset has both kinds
    width = backend.llm_hidden_size
    with torch.no_grad():
        prefix = backend.vit_prefix(inputs)
        full = backend.connect(backend.vit_suffix(prefix, inputs, None, None), inputs, None)
        some = backend.connect(backend.vit_suffix(prefix, inputs, mask, None), inputs, mask)
    assert full.shape == (mask.numel(), width * (1 + len(taps)))
    assert some.shape == (int(mask.sum()), width * (1 + len(taps)))
    features = backend.encoder_outputs(some)["video"]
    assert [f[0].shape[0] for f in features.deepstack_features] == [int(mask.sum())] * len(taps)
    kept = full[mask.reshape(-1)]
    for j, layer in enumerate(taps):
        cols = slice(width * (j + 1), width * (j + 2))
        if layer <= k1:  # read unpacked: the kept groups' features are the full run's
            torch.testing.assert_close(some[:, cols], kept[:, cols])
        else:  # read from the packed kept tokens: they no longer see the pruned ones
            assert (some[:, cols] - kept[:, cols]).abs().max() > 1e-5


@pytest.mark.parametrize("method", [m.name for m in list_methods() if m.stage == "visual"])
def test_visual_stage_methods_drop_a_rows_deepstack_features_with_it(backend: Qwen3VLBackend, method: str) -> None:
    inputs = backend.prepare(_clip(8), "what moves ?")
    with torch.no_grad():
        vp = visual_pass(backend, inputs, 0.5, method)
    budget = kept_group_count(inputs.num_frames, int(inputs.groups.shape[0]), 0.5)
    assert vp.visual.shape == (budget, backend.llm_hidden_size * (1 + len(backend.extra_mergers)))
    gen = backend.generate(inputs, vp.visual, vp.prune, max_new_tokens=2, stop_at_eos=False)
    assert len(gen.token_ids) == 2


def test_scoring_layer_is_the_papers_relative_depth() -> None:
    assert [default_layer(build_config(p)) for p in ("qwen3-vl-2b", "qwen3-vl-4b", "qwen3-vl-8b")] == [3, 3, 3]
    config = build_config("qwen3-vl-micro")
    with pytest.raises(ValueError, match="scoring layer"):
        check_layer(config, config.vision_config.depth - 1)


def test_real_size_presets_hold_the_published_shapes() -> None:
    four = build_config("qwen3-vl-4b")
    assert (four.vision_config.depth, four.vision_config.hidden_size, four.text_config.num_hidden_layers,
            four.text_config.hidden_size, four.vision_config.out_hidden_size) == (24, 1024, 36, 2560, 2560)
    assert list(four.vision_config.deepstack_visual_indexes) == [5, 11, 17]
    assert list(build_config("qwen3-vl-8b").vision_config.deepstack_visual_indexes) == [8, 16, 24]


def test_ask_prints_both_answers_token_counts_and_the_stage_table(checkpoint: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out.json"
    assert ask(["--model", str(checkpoint), "--video", str(ROOT / "assets/examples/example_00.mp4"),
                "--question", "what moves ?", "--keep", "0.5", "--frames", "8", "--max-new-tokens", "3",
                "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "baseline answer" in text and "STTS answer" in text and "vit_suffix" in text
    data = json.loads(out.read_text())
    rows, groups = data["keep_mask_shape"]
    assert rows == 4 and data["frame_unit"] == "temporal patch" and len(data["row_times_s"]) == rows
    assert f"visual tokens   : {rows * groups} -> {data['stts']['visual_tokens']}" in text
