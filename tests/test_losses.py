"""The auxiliary temporal loss, and the two gradient paths into the scorer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stts_core.methods.budget import attention_bias
from stts_core.methods.losses import AUX_LOSS_WEIGHT, group_patch_features, temporal_aux_loss, temporal_redundancy
from stts_core.methods.scorers import TokenScorer

# T=3 frames of N=4 patches with D=2, groups of P=2 patches.
TINY_GROUPS = torch.tensor([[0, 1], [2, 3]])
TINY_FEATURES = torch.tensor(
    [
        [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]],
        [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]],
        [[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [2.0, 2.0]],
    ]
)
TINY_SCORES = torch.tensor([[0.9, 0.9], [0.2, 0.5], [0.6, 0.1]])


def numpy_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("seed", range(4))
def test_aux_loss_equals_an_independent_numpy_computation(seed):
    """docs/method.md "Training signal" with loops: f = the group's patch vectors concatenated (padded slots
    left out, which adds nothing to dot products or norms) and L2-normalised; mean over frames t >= 1 and
    groups of (s(t, g) - (1 - cos(f(t-1, g), f(t, g))))^2."""
    rng = np.random.default_rng(seed)
    num_frames, num_patches, dim = int(rng.integers(2, 6)), 7, 3
    features = rng.standard_normal((num_frames, num_patches, dim))
    features[1] = features[0]  # a static frame: target 0
    groups = np.array([[0, 1, 2], [3, 4, -1], [5, 6, -1]])
    scores = rng.random((num_frames, len(groups)))
    squared = []
    for t in range(1, num_frames):
        for patches in groups:
            previous = features[t - 1, patches[patches >= 0]].reshape(-1)
            current = features[t, patches[patches >= 0]].reshape(-1)
            squared.append((scores[t, len(squared) % len(groups)] - (1.0 - numpy_cos(previous, current))) ** 2)
    loss = temporal_aux_loss(torch.from_numpy(scores), torch.from_numpy(features), torch.from_numpy(groups))
    assert math.isclose(float(loss), float(np.mean(squared)), rel_tol=1e-5, abs_tol=1e-7)
    target = temporal_redundancy(torch.from_numpy(features), torch.from_numpy(groups))
    np.testing.assert_allclose(target[0].numpy(), 0.0, atol=1e-6)


def test_redundancy_target_by_hand():
    f = TINY_FEATURES.double().numpy()
    groups = TINY_GROUPS.numpy()
    expected = np.array(
        [
            [1.0 - numpy_cos(f[t - 1, groups[g]].reshape(-1), f[t, groups[g]].reshape(-1)) for g in range(2)]
            for t in (1, 2)
        ]
    )
    # frame 1 group 0 is unchanged, group 1: [1,1,2,0] vs [0,1,1,1] -> cos = 3 / sqrt(18);
    # frame 2 group 0 swaps its patches (orthogonal), group 1 is frame 1's scaled by 2.
    np.testing.assert_allclose(expected, [[0.0, 1.0 - 1.0 / math.sqrt(2.0)], [1.0, 0.0]], atol=1e-12)
    target = temporal_redundancy(TINY_FEATURES, TINY_GROUPS)
    assert target.shape == (2, 2)
    np.testing.assert_allclose(target.numpy(), expected, atol=1e-6)


def test_aux_loss_by_hand():
    loss = temporal_aux_loss(TINY_SCORES, TINY_FEATURES, TINY_GROUPS)
    target_11 = 1.0 - 1.0 / math.sqrt(2.0)
    expected = ((0.2 - 0.0) ** 2 + (0.5 - target_11) ** 2 + (0.6 - 1.0) ** 2 + (0.1 - 0.0) ** 2) / 4
    assert loss.dim() == 0
    assert math.isclose(float(loss), expected, abs_tol=1e-6)


def test_aux_loss_ignores_first_frame_scores():
    other = TINY_SCORES.clone()
    other[0] = torch.tensor([0.0, 0.3])
    assert float(temporal_aux_loss(other, TINY_FEATURES, TINY_GROUPS)) == float(
        temporal_aux_loss(TINY_SCORES, TINY_FEATURES, TINY_GROUPS)
    )


def test_group_features_are_normalised_and_padding_is_zero():
    features = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    groups = torch.tensor([[1, 2], [3, -1], [4, 0]])
    flat = group_patch_features(features, groups)
    assert flat.shape == (3, 3, 8)
    torch.testing.assert_close(flat.norm(dim=-1), torch.ones(3, 3))
    assert torch.equal(flat[:, 1, 4:], torch.zeros(3, 4))
    torch.testing.assert_close(flat[:, 1, :4], F.normalize(features[:, 3], dim=-1))
    changed = features.clone()
    changed[:, 0] += 5.0
    torch.testing.assert_close(group_patch_features(changed, groups)[:, :2], flat[:, :2])


def test_aux_loss_zero_when_scores_equal_target():
    features = torch.randn(5, 6, 4, generator=torch.Generator().manual_seed(1))
    groups = torch.tensor([[0, 1, 2], [3, 4, 5]])
    target = temporal_redundancy(features, groups)
    scores = torch.cat([torch.rand(1, 2), target], dim=0)
    loss = temporal_aux_loss(scores, features, groups)
    assert float(loss) < 1e-12
    assert float(temporal_aux_loss(scores + 0.1, features, groups)) > 1e-3


def test_single_frame_loss_is_zero_and_differentiable():
    scores = torch.rand(1, 4, requires_grad=True)
    features = torch.randn(1, 8, 3)
    loss = temporal_aux_loss(scores, features, torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]]))
    assert float(loss.detach()) == 0.0
    assert loss.requires_grad
    loss.backward()
    assert scores.grad is not None
    assert torch.equal(scores.grad, torch.zeros(1, 4))


def test_target_gets_no_gradient():
    features = torch.randn(4, 6, 4, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    groups = torch.tensor([[0, 1, 2], [3, 4, 5]])
    scores = torch.rand(4, 2, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    temporal_aux_loss(scores, features, groups).backward()
    assert features.grad is None or torch.equal(features.grad, torch.zeros_like(features))
    assert scores.grad is not None
    assert scores.grad[1:].abs().min() > 0
    assert torch.equal(scores.grad[0], torch.zeros(2))
    assert not temporal_redundancy(features, groups).requires_grad


# ---------------------------------------------------------------- gradient into the scorer


class ToyModel(nn.Module):
    """Features -> scorer -> scores; block 1 attends over each frame with the scorer's key bias; block 2 an MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scorer = TokenScorer(dim, num_heads=2, hidden=16)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.scorer(x, groups)
        bias = attention_bias(scores, groups, x.shape[1])
        q, k, v = (proj(x)[:, None] for proj in (self.q, self.k, self.v))
        h = x + F.scaled_dot_product_attention(q, k, v, attn_mask=bias[:, None, None, :])[:, 0]
        return h + self.mlp(h), scores


def toy_setup():
    torch.manual_seed(0)
    dim, num_frames = 8, 4
    groups = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]])
    model = ToyModel(dim)
    x = torch.randn(num_frames, 8, dim)
    target = torch.randn(num_frames, dim)
    return model, x, groups, target


def scorer_grads(model: ToyModel) -> dict[str, torch.Tensor | None]:
    params = dict(model.scorer.named_parameters())
    return {name: params[name].grad for name in ("mlp.w1.weight", "patch_token_pooler.wq.weight")}


def test_aux_loss_alone_trains_the_scorer():
    model, x, groups, _ = toy_setup()
    _, scores = model(x, groups)
    temporal_aux_loss(scores, x, groups).backward()
    for name, grad in scorer_grads(model).items():
        assert grad is not None, name
        assert torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name
    assert model.q.weight.grad is None


def test_task_loss_alone_reaches_the_scorer_through_the_bias():
    model, x, groups, target = toy_setup()
    out, _ = model(x, groups)
    F.mse_loss(out.mean(dim=1), target).backward()
    for name, grad in scorer_grads(model).items():
        assert grad is not None, name
        assert torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name


def test_total_loss_combines_both_paths():
    model, x, groups, target = toy_setup()
    out, scores = model(x, groups)
    task = F.mse_loss(out.mean(dim=1), target)
    aux = temporal_aux_loss(scores, x, groups)
    torch.autograd.backward([task, AUX_LOSS_WEIGHT * aux])
    combined = model.scorer.mlp.w1.weight.grad.clone()

    parts = []
    for use_task in (True, False):
        model.zero_grad(set_to_none=True)
        out, scores = model(x, groups)
        loss = (
            F.mse_loss(out.mean(dim=1), target) if use_task else AUX_LOSS_WEIGHT * temporal_aux_loss(scores, x, groups)
        )
        loss.backward()
        parts.append(model.scorer.mlp.w1.weight.grad.clone())
    torch.testing.assert_close(combined, parts[0] + parts[1])
    assert (parts[0] - parts[1]).abs().max() > 0


def test_bce_form_equals_a_hand_computation():
    """The BCE form: mean over frames >= 1 and groups of -[y log s + (1 - y) log(1 - s)], y the same
    redundancy target as the MSE form's."""
    target = temporal_redundancy(TINY_FEATURES, TINY_GROUPS).double().numpy()
    s = TINY_SCORES[1:].double().numpy()
    expected = -np.mean(target * np.log(s) + (1 - target) * np.log(1 - s))
    loss = temporal_aux_loss(TINY_SCORES, TINY_FEATURES, TINY_GROUPS, "bce")
    assert math.isclose(float(loss), float(expected), rel_tol=1e-5)
    assert float(loss) != pytest.approx(float(temporal_aux_loss(TINY_SCORES, TINY_FEATURES, TINY_GROUPS, "mse")))


@pytest.mark.parametrize("form", ["mse", "bce"])
def test_both_forms_have_their_minimum_at_the_target(form):
    """Same minimiser: scores equal to the target give the smallest loss, in either form."""
    target = temporal_redundancy(TINY_FEATURES, TINY_GROUPS)
    best = torch.cat([TINY_SCORES[:1], target.clamp(1e-4, 1 - 1e-4)])
    at_target = float(temporal_aux_loss(best, TINY_FEATURES, TINY_GROUPS, form))
    for shift in (-0.05, 0.05):
        moved = torch.cat([TINY_SCORES[:1], (target + shift).clamp(1e-4, 1 - 1e-4)])
        assert float(temporal_aux_loss(moved, TINY_FEATURES, TINY_GROUPS, form)) > at_target


def test_bce_keeps_its_gradient_where_the_sigmoid_saturates():
    """A changing group (target 0.2) scored at logit -40: the MSE form's gradient on the logit is
    2 (s - y) s (1 - s) ~ 1e-18, the BCE form's is (s - y) / n = -0.2 / n."""
    features = torch.tensor([[[1.0, 0.0]], [[0.8, 0.6]]])  # cos 0.8 -> target 0.2
    groups = torch.tensor([[0]])
    grads = {}
    for form in ("mse", "bce"):
        logit = torch.tensor([[0.0], [-40.0]], requires_grad=True)
        temporal_aux_loss(torch.sigmoid(logit), features, groups, form).backward()
        grads[form] = float(logit.grad[1, 0])
    assert abs(grads["mse"]) < 1e-15
    assert grads["bce"] == pytest.approx(-0.2, rel=1e-4)


def test_unknown_aux_form_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown auxiliary loss 'l1'"):
        temporal_aux_loss(TINY_SCORES, TINY_FEATURES, TINY_GROUPS, "l1")
