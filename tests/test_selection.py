"""Selection: budgeted keep mask, patch mask from groups, and the soft attention bias."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from stts_core.methods.budget import (
    attention_bias,
    groups_to_patch_mask,
    kept_group_count,
    select_groups,
    validate_keep_ratio,
)

RATIOS = [1.0, 0.999, 0.75, 0.7, 0.5, 0.35, 0.3, 0.29, 0.25, 1 / 3, 0.2, 0.1, 0.05, 0.01]
SHAPES = [(1, 1), (1, 9), (2, 3), (3, 5), (5, 9), (7, 1), (7, 3), (8, 9), (9, 10), (16, 81), (10, 9), (33, 7)]


def half_up(ratio: float, total: int) -> int:
    """round-half-up of ratio * total, computed exactly on the decimal value of the ratio."""
    return int(Fraction(str(ratio)) * total + Fraction(1, 2))


def expected_kept(num_frames: int, groups: int, ratio: float) -> int:
    total = num_frames * groups
    return max(min(half_up(ratio, total), total), groups)


# ---------------------------------------------------------------- budget


@pytest.mark.parametrize(("num_frames", "groups"), SHAPES)
@pytest.mark.parametrize("ratio", RATIOS)
def test_kept_count_is_round_half_up_of_budget(num_frames, groups, ratio):
    assert kept_group_count(num_frames, groups, ratio) == expected_kept(num_frames, groups, ratio)


@pytest.mark.parametrize(
    ("num_frames", "groups", "ratio", "kept"),
    [
        (3, 5, 0.5, 8),  # 7.5 -> 8
        (5, 9, 0.5, 23),  # 22.5 -> 23
        (7, 1, 0.5, 4),  # 3.5 -> 4
        (9, 10, 0.35, 32),  # 31.5 -> 32 (0.35 is below 0.35 in binary)
        (5, 10, 0.29, 15),  # 14.5 -> 15
        (4, 9, 0.25, 9),  # exactly the first frame
        (8, 9, 1.0, 72),
        (3, 3, 0.999, 9),  # 8.991 -> 9
    ],
)
def test_kept_count_known_values(num_frames, groups, ratio, kept):
    assert kept_group_count(num_frames, groups, ratio) == kept


@pytest.mark.parametrize(("num_frames", "groups", "ratio"), [(8, 9, 0.1), (4, 9, 0.05), (10, 3, 0.01), (3, 5, 0.2)])
def test_budget_below_one_frame_is_capped_at_first_frame(num_frames, groups, ratio):
    assert ratio < 1 / num_frames
    assert half_up(ratio, num_frames * groups) < groups
    assert kept_group_count(num_frames, groups, ratio) == groups
    gen = torch.Generator().manual_seed(0)
    keep = select_groups(torch.rand(num_frames, groups, generator=gen), ratio)
    assert keep[0].all()
    assert not keep[1:].any()


@pytest.mark.parametrize(("num_frames", "groups"), SHAPES)
@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.35, 0.29, 0.1])
def test_mask_keeps_exactly_the_budget(num_frames, groups, ratio):
    gen = torch.Generator().manual_seed(num_frames * 100 + groups)
    keep = select_groups(torch.rand(num_frames, groups, generator=gen), ratio)
    assert keep.dtype == torch.bool
    assert keep.shape == (num_frames, groups)
    assert int(keep.sum()) == expected_kept(num_frames, groups, ratio)


def test_first_frame_whole_even_with_lowest_scores():
    gen = torch.Generator().manual_seed(1)
    scores = 0.5 + 0.5 * torch.rand(6, 9, generator=gen)
    scores[0] = 0.0
    for ratio in (0.9, 0.5, 0.3, 0.17):
        keep = select_groups(scores, ratio)
        assert keep[0].all()
        assert int(keep.sum()) == expected_kept(6, 9, ratio)
    scores[0] = -math.inf
    assert select_groups(scores, 0.5)[0].all()


# ---------------------------------------------------------------- joint top-k


def reference_keep(scores: np.ndarray, kept: int) -> np.ndarray:
    num_frames, groups = scores.shape
    keep = np.zeros((num_frames, groups), dtype=bool)
    keep[0] = True
    rest = scores[1:].reshape(-1)
    best = np.argsort(-rest, kind="stable")[: kept - groups]
    flat = np.zeros(rest.shape[0], dtype=bool)
    flat[best] = True
    keep[1:] = flat.reshape(num_frames - 1, groups)
    return keep


@pytest.mark.parametrize("seed", range(12))
def test_kept_set_is_joint_top_over_later_frames(seed):
    rng = np.random.default_rng(seed)
    num_frames, groups = int(rng.integers(2, 9)), int(rng.integers(1, 12))
    scores = rng.random((num_frames, groups)).astype(np.float32)
    assert np.unique(scores[1:]).size == scores[1:].size
    for ratio in (0.8, 0.5, 0.3, 0.15):
        keep = select_groups(torch.from_numpy(scores), ratio).numpy()
        np.testing.assert_array_equal(keep, reference_keep(scores, expected_kept(num_frames, groups, ratio)))


def test_budget_is_per_video_not_per_frame():
    scores = torch.tensor(
        [
            [0.5, 0.5, 0.5, 0.5],
            [0.10, 0.12, 0.14, 0.16],
            [0.80, 0.82, 0.84, 0.86],
        ]
    )
    keep = select_groups(scores, 2 / 3)
    assert int(keep.sum()) == 8
    assert keep[0].all()
    assert not keep[1].any()
    assert keep[2].all()


def test_budget_lets_a_frame_keep_most_while_others_lose_all():
    gen = torch.Generator().manual_seed(3)
    scores = 0.1 * torch.rand(5, 9, generator=gen)
    scores[3] += 0.9
    keep = select_groups(scores, 0.4)
    assert int(keep.sum()) == 18
    assert keep[3].all()
    assert not keep[1].any() and not keep[2].any() and not keep[4].any()


# ---------------------------------------------------------------- ties


def test_all_equal_scores_are_deterministic_and_prune_lower_flat_index_first():
    scores = torch.full((4, 5), 0.5)
    first = select_groups(scores, 0.5)
    second = select_groups(scores.clone(), 0.5)
    assert torch.equal(first, second)
    expected = torch.tensor([[True] * 5, [False] * 5, [False] * 5, [True] * 5])
    assert torch.equal(first, expected)


def test_partial_ties_follow_flat_index():
    scores = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.9], [0.5, 0.9, 0.9]])
    keep = select_groups(scores, 7 / 9)
    assert int(keep.sum()) == 7
    expected = torch.tensor([[True, True, True], [False, False, True], [True, True, True]])
    assert torch.equal(keep, expected)
    keep = select_groups(scores, 6 / 9)
    expected = torch.tensor([[True, True, True], [False, False, True], [False, True, True]])
    assert torch.equal(keep, expected)


# ---------------------------------------------------------------- images


@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.1, 0.001])
@pytest.mark.parametrize("groups", [1, 9, 81])
def test_single_frame_is_never_pruned(ratio, groups):
    scores = torch.linspace(0, 1, groups)[None]
    assert select_groups(scores, ratio).all()
    assert kept_group_count(1, groups, ratio) == groups


# ---------------------------------------------------------------- errors


BAD_RATIOS = [0, 0.0, -0.1, 1.5, math.nan, math.inf, "0.5", True, False, None]


@pytest.mark.parametrize("ratio", BAD_RATIOS, ids=repr)
def test_bad_keep_ratio_raises_with_range(ratio):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        validate_keep_ratio(ratio)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        kept_group_count(4, 9, ratio)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        select_groups(torch.rand(4, 9), ratio)


@pytest.mark.parametrize("ratio", [1, 1.0, 0.5, 1e-9, np.float64(0.25)])
def test_good_keep_ratio_is_returned_as_float(ratio):
    out = validate_keep_ratio(ratio)
    assert isinstance(out, float)
    assert out == float(ratio)


def test_nan_scores_raise():
    scores = torch.rand(3, 4)
    scores[2, 1] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        select_groups(scores, 0.5)


@pytest.mark.parametrize("shape", [(9,), (2, 3, 4), ()])
def test_scores_of_wrong_rank_raise(shape):
    with pytest.raises(ValueError, match="shape"):
        select_groups(torch.rand(shape), 0.5)


def test_zero_frames_or_groups_raise():
    with pytest.raises(ValueError):
        kept_group_count(0, 9, 0.5)
    with pytest.raises(ValueError):
        kept_group_count(3, 0, 0.5)


# ---------------------------------------------------------------- patch mask

# Eight patches in one frame; group 2 is a partial window (its padded slots clamp to patch 0),
# patch 7 belongs to no group.
GROUPS = torch.tensor([[0, 1, 2], [3, 4, 5], [6, -1, -1]])
NUM_PATCHES = 8


def test_patch_mask_prunes_whole_groups_and_ignores_padding():
    keep = torch.tensor([[False, True, True], [True, False, True], [False, False, True], [True, True, True]])
    mask = groups_to_patch_mask(keep, GROUPS, NUM_PATCHES)
    expected = torch.tensor(
        [
            [False, False, False, True, True, True, True, False],
            [True, True, True, False, False, False, True, False],
            [False, False, False, False, False, False, True, False],
            [True, True, True, True, True, True, True, False],
        ]
    )
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_patch_mask_matches_per_group_loop():
    gen = torch.Generator().manual_seed(5)
    keep = torch.rand(6, 3, generator=gen) > 0.5
    mask = groups_to_patch_mask(keep, GROUPS, NUM_PATCHES)
    for t in range(6):
        covered = set()
        for g in range(3):
            if keep[t, g]:
                covered |= {int(p) for p in GROUPS[g] if p >= 0}
        assert {int(p) for p in mask[t].nonzero().flatten()} == covered


def test_patch_mask_rejects_bad_tables():
    keep = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError):
        groups_to_patch_mask(keep, GROUPS, 5)
    with pytest.raises(ValueError):
        groups_to_patch_mask(keep, GROUPS.reshape(-1), NUM_PATCHES)


# ---------------------------------------------------------------- attention bias


def group_value(bias: torch.Tensor, t: int, g: int) -> torch.Tensor:
    return bias[t, GROUPS[g][GROUPS[g] >= 0]]


def make_scores(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    scores = torch.rand(5, 3, generator=gen)
    scores[3] = 0.42
    return scores


def test_attention_bias_range_extremes_and_broadcast():
    scores = make_scores()
    bias = attention_bias(scores, GROUPS, NUM_PATCHES)
    assert bias.shape == (5, NUM_PATCHES)
    assert bias.dtype == scores.dtype
    assert float(bias.min()) >= -2.0 - 1e-6
    assert float(bias.max()) <= 1e-7
    assert torch.equal(bias[0], torch.zeros(NUM_PATCHES))
    assert torch.equal(bias[3], torch.zeros(NUM_PATCHES))
    assert torch.equal(bias[:, 7], torch.zeros(5))
    for t in (1, 2, 4):
        lowest = group_value(bias, t, int(scores[t].argmin()))
        highest = group_value(bias, t, int(scores[t].argmax()))
        assert torch.allclose(lowest, torch.full_like(lowest, -2.0), atol=1e-6, rtol=0)
        assert torch.allclose(highest, torch.zeros_like(highest), atol=1e-6, rtol=0)
        s = scores[t].double().numpy()
        for g in range(3):
            unit = (s[g] - s.min()) / (s.max() - s.min())
            want = math.log(math.exp(-2.0) + (1 - math.exp(-2.0)) * unit)
            values = group_value(bias, t, g)
            assert torch.allclose(values, torch.full_like(values, want), atol=1e-6, rtol=0)


def reference_bias(scores: np.ndarray, groups: np.ndarray, num_patches: int) -> np.ndarray:
    """docs/method.md step 4 written out with loops: per frame t >= 1, s' = e^-2 + (1 - e^-2) * (s - min) / (max - min)
    (1 when the frame's scores are all equal), log(s') added to every patch the group covers; frame 0 gets 0."""
    bias = np.zeros((scores.shape[0], num_patches))
    for t in range(1, scores.shape[0]):
        lo, hi = scores[t].min(), scores[t].max()
        for g, patches in enumerate(groups):
            unit = (scores[t, g] - lo) / (hi - lo) if hi > lo else 1.0
            for p in patches[patches >= 0]:
                bias[t, p] += math.log(math.exp(-2.0) + (1.0 - math.exp(-2.0)) * unit)
    return bias


@pytest.mark.parametrize("seed", range(6))
def test_attention_bias_equals_an_independent_loop_computation(seed):
    rng = np.random.default_rng(seed)
    num_frames, num_groups = int(rng.integers(2, 7)), int(rng.integers(2, 6))
    scores = rng.random((num_frames, num_groups))
    scores[rng.integers(1, num_frames)] = 0.25  # a frame whose groups all score the same
    scores[1, 0] = 0.0  # sigmoid underflow: the bias stays finite (-2), never log(0)
    groups = rng.permutation(num_groups * 2 + 1)[: num_groups * 2].reshape(num_groups, 2)  # one patch uncovered
    groups[0, 1] = -1  # a partial window
    bias = attention_bias(torch.from_numpy(scores), torch.from_numpy(groups), num_groups * 2 + 1)
    assert torch.isfinite(bias).all()
    np.testing.assert_allclose(bias.numpy(), reference_bias(scores, groups, num_groups * 2 + 1), atol=1e-12)


def test_attention_bias_depends_only_on_the_order_of_scores_within_a_frame():
    """Min-max rescaling per frame: a positive scale and a shift of one frame's scores change nothing;
    within a frame a higher score never gets a lower bias."""
    scores = make_scores(11).double()
    moved = scores.clone()
    moved[2] = 0.001 * moved[2] + 0.3
    moved[4] = 5.0 * moved[4] - 1.0
    bias = attention_bias(scores, GROUPS, NUM_PATCHES)
    torch.testing.assert_close(attention_bias(moved, GROUPS, NUM_PATCHES), bias, atol=1e-9, rtol=0)
    for t in range(1, scores.shape[0]):
        order = scores[t].argsort()
        values = torch.stack([group_value(bias, t, int(g))[0] for g in order])
        assert bool((values[1:] >= values[:-1]).all())


def test_attention_bias_does_not_leak_to_patch_zero_through_padding():
    scores = torch.tensor([[0.3, 0.3, 0.3], [1.0, 0.5, 0.0]])
    groups = torch.tensor([[1, 2], [3, -1], [4, -1]])
    bias = attention_bias(scores, groups, 5)
    middle = math.log(math.exp(-2.0) + (1 - math.exp(-2.0)) * 0.5)
    torch.testing.assert_close(bias[1], torch.tensor([0.0, 0.0, 0.0, middle, -2.0]))
    assert torch.equal(bias[0], torch.zeros(5))


def test_attention_bias_gradient_is_finite_and_nonzero():
    scores = make_scores(7).requires_grad_(True)
    bias = attention_bias(scores, GROUPS, NUM_PATCHES)
    weights = torch.randn(bias.shape, generator=torch.Generator().manual_seed(8))
    (bias * weights).sum().backward()
    grad = scores.grad
    assert grad is not None
    assert torch.isfinite(grad).all()
    assert grad[1:].abs().sum() > 0
    assert torch.equal(grad[0], torch.zeros(3))
    assert torch.equal(grad[3], torch.zeros(3))
