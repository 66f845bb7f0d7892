"""Contract tests that grow with the registries: every model family's smallest preset and every
registered method is tested by being registered (a new entry needs no new test to be covered here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stts_core import get_method, kept_group_count, list_families, list_methods, load_backend, select_tokens
from stts_core.data.synthetic import VOCABULARY, make_clip
from stts_core.data.video import frames_from_array
from stts_core.models.base import VideoBackend
from stts_core.models.registry import family_of
from stts_core.pipeline import RunSettings, run, visual_pass

FAMILIES = [f.name for f in list_families()]
METHODS = [m.name for m in list_methods()]
# Methods that select from features alone (select_tokens works on any (T, G, D) array).
FEATURE_METHODS = [m.name for m in list_methods() if m.stage in ("vit", "visual", "frames") and not m.needs_weights]
FRAMES = 4


@pytest.fixture(scope="module", params=FAMILIES)
def family_backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> VideoBackend:
    """Each family's test preset saved as a checkpoint and loaded back through `load_backend`."""
    family = next(f for f in list_families() if f.name == request.param)
    folder = family.tiny_checkpoint(tmp_path_factory.mktemp(family.name) / "ckpt", preset=family.test_preset,
                                    words=VOCABULARY)
    backend = load_backend(str(folder), device="cpu")
    assert family_of(backend) is family
    return backend


@pytest.fixture(scope="module")
def clip_frames() -> np.ndarray:
    return make_clip(2_000_003, num_frames=FRAMES, size=84).frames


def _inputs(backend: VideoBackend, frames: np.ndarray):
    return backend.prepare(frames, "what color is the moving object ?")


def test_family_keep_one_generate_equals_stock_generate(family_backend: VideoBackend, clip_frames: np.ndarray) -> None:
    inputs = _inputs(family_backend, clip_frames)
    with torch.no_grad():
        stock = family_backend.model.generate(**inputs.tensors, max_new_tokens=6, do_sample=False)
        vp = visual_pass(family_backend, inputs, 1.0, "heuristic")
    assert vp.prune is None and bool(vp.keep_mask.all())
    ours = family_backend.generate(inputs, vp.visual, vp.prune, max_new_tokens=6, stop_at_eos=False)
    new = stock[0, inputs.tensors["input_ids"].shape[1]:].tolist()
    assert ours.token_ids[: len(new)] == new
    assert len(new) == 6 or new[-1] in family_backend.eos_token_ids


def test_family_save_and_load_round_trip(family_backend: VideoBackend, tmp_path: Path) -> None:
    out = family_backend.save(tmp_path / "again")
    assert not [p for p in out.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    again = load_backend(str(out), device="cpu")
    ours = dict(family_backend.model.state_dict())
    theirs = dict(again.model.state_dict())
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert again.has_learned_scorer == family_backend.has_learned_scorer


@pytest.mark.parametrize("keep", [0.5, 0.3])
def test_family_budget_is_exact_and_first_frame_whole(family_backend: VideoBackend, clip_frames: np.ndarray,
                                                      keep: float) -> None:
    settings = RunSettings(keep_ratio=keep, scorer="heuristic", num_frames=FRAMES, max_new_tokens=2)
    result = run(family_backend, frames_from_array(clip_frames), "what moves ?", settings)
    t, g = result.keep_mask.shape
    assert int(result.keep_mask.sum()) == kept_group_count(t, g, keep)
    assert bool(result.keep_mask[0].all())
    assert result.stts.visual_tokens == int(result.keep_mask.sum())
    assert result.baseline is not None and result.baseline.visual_tokens == t * g


@pytest.mark.parametrize("method", FEATURE_METHODS)
@pytest.mark.parametrize("keep", [0.5, 0.3, 0.1])
def test_method_budget_first_frame_and_seed(method: str, keep: float) -> None:
    features = torch.randn(6, 9, 16, generator=torch.Generator().manual_seed(1))
    entry = get_method(method)
    mask = select_tokens(method, features, keep, seed=3)
    assert mask.dtype == torch.bool and mask.shape == (6, 9)
    if entry.stage == "frames":
        assert all(bool(row.all()) or not bool(row.any()) for row in mask)  # whole frames only
    else:
        assert int(mask.sum()) == kept_group_count(6, 9, keep)
    if entry.keeps_first_frame:
        assert bool(mask[0].all())
    assert torch.equal(mask, select_tokens(method, features, keep, seed=3))


@pytest.mark.parametrize("method", METHODS)
def test_method_entry_is_complete(method: str) -> None:
    entry = get_method(method)
    entry.check()
    assert entry.summary and entry.source and entry.color.startswith("#")


@pytest.mark.parametrize("method", [m.name for m in list_methods() if m.needs_weights or m.stage == "llm"])
def test_methods_that_need_a_model_refuse_plain_features(method: str) -> None:
    with pytest.raises(ValueError, match="backend"):
        select_tokens(method, torch.zeros(3, 4, 8), 0.5)


def test_select_tokens_refuses_bad_shapes_and_ratios() -> None:
    with pytest.raises(ValueError, match="frames, groups, channels"):
        select_tokens("heuristic", torch.zeros(3, 4), 0.5)
    with pytest.raises(ValueError, match="keep ratio"):
        select_tokens("heuristic", torch.zeros(3, 4, 8), 1.5)
    with pytest.raises(ValueError, match="Unknown method"):
        select_tokens("oracle", torch.zeros(3, 4, 8), 0.5)


@pytest.mark.parametrize("method", FEATURE_METHODS)
@pytest.mark.parametrize("shape", [(0, 4, 8), (3, 0, 8), (3, 4, 0)])
def test_select_tokens_refuses_empty_features(method: str, shape: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="at least one frame, group and channel"):
        select_tokens(method, torch.zeros(shape), 0.5)


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_select_tokens_refuses_non_finite_features(method: str) -> None:
    features = torch.randn(3, 4, 8)
    features[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        select_tokens(method, features, 0.5)
