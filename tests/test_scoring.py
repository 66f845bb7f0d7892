"""Scorers: the learned TokenScorer and the heuristic and random baselines."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stts_core.methods.scorers import TokenScorer, heuristic_scores, random_scores

DIM, HEADS, HIDDEN = 8, 2, 16
# Six patches per frame; group 1 is partial (its padded slots clamp to patch 0, which it does not own).
GROUPS = torch.tensor([[1, 2, 0], [3, -1, -1], [4, 5, -1]])
NUM_PATCHES = 6


def make_scorer(seed: int = 0) -> TokenScorer:
    torch.manual_seed(seed)
    scorer = TokenScorer(DIM, HEADS, HIDDEN)
    return scorer.eval()


def make_features(num_frames: int = 5, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(num_frames, NUM_PATCHES, DIM, generator=gen)


def manual_pool(scorer: TokenScorer, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Attention pooling written out group by group: query = mean of the valid patches."""
    pool = scorer.patch_token_pooler
    hd = DIM // HEADS
    out = torch.zeros(features.shape[0], groups.shape[0], DIM)
    for t in range(features.shape[0]):
        for g in range(groups.shape[0]):
            idx = groups[g][groups[g] >= 0]
            patches = features[t, idx]
            query = patches.mean(0, keepdim=True)
            q = pool.wq(query).view(1, HEADS, hd)
            k = pool.wk(patches).view(-1, HEADS, hd)
            v = pool.wv(patches).view(-1, HEADS, hd)
            heads = []
            for h in range(HEADS):
                w = torch.softmax(q[:, h] @ k[:, h].T / hd**0.5, dim=-1)
                heads.append(w @ v[:, h])
            out[t, g] = pool.wo(torch.cat(heads, dim=-1))[0]
    return out


def manual_mlp(scorer: TokenScorer, x: torch.Tensor) -> torch.Tensor:
    mlp = scorer.mlp
    return torch.sigmoid(mlp.w3(F.silu(mlp.w2(F.silu(mlp.w1(x))))).squeeze(-1))


def test_scorer_shape_and_open_unit_range():
    scorer = make_scorer()
    features = make_features(7)
    with torch.no_grad():
        scores = scorer(features, GROUPS)
    assert scores.shape == (7, 3)
    assert scores.dtype == features.dtype
    assert (scores > 0).all() and (scores < 1).all()


def test_scorer_matches_manual_computation_with_zero_previous_for_frame_zero():
    scorer = make_scorer()
    features = make_features(4)
    with torch.no_grad():
        scores = scorer(features, GROUPS)
        pooled = manual_pool(scorer, features, GROUPS)
        frame0 = manual_mlp(scorer, torch.cat([torch.zeros_like(pooled[0]), pooled[0]], dim=-1))
        later = manual_mlp(scorer, torch.cat([pooled[:-1], pooled[1:]], dim=-1))
    torch.testing.assert_close(scores[0], frame0, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(scores[1:], later, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(scorer.pooled(features, GROUPS), pooled, atol=1e-6, rtol=1e-5)


def test_scorer_is_temporally_local():
    scorer = make_scorer()
    features = make_features(6)
    changed = features.clone()
    changed[2] += torch.randn(NUM_PATCHES, DIM, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        before, after = scorer(features, GROUPS), scorer(changed, GROUPS)
    diff = (before - after).abs().amax(dim=1)
    # Frames 2 and 3 see the change (100x above float32 rounding: how much depends on the seeded
    # weights, whose draws differ between torch releases); every other frame is untouched.
    assert diff[2] > 1e-5 and diff[3] > 1e-5
    assert torch.allclose(before[[0, 1, 4, 5]], after[[0, 1, 4, 5]], atol=1e-7, rtol=0)


def test_attention_pool_ignores_padded_slots():
    scorer = make_scorer()
    features = make_features(4)
    changed = features.clone()
    changed[:, 0] = 100.0 * torch.randn(4, DIM, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before, after = scorer(features, GROUPS), scorer(changed, GROUPS)
        pooled = scorer.pooled(features, GROUPS)
        single = scorer.patch_token_pooler.wo(scorer.patch_token_pooler.wv(features[:, 3]))
    assert (before[:, 0] - after[:, 0]).abs().max() > 1e-4
    torch.testing.assert_close(after[:, 1:], before[:, 1:], atol=1e-7, rtol=0)
    torch.testing.assert_close(pooled[:, 1], single, atol=1e-6, rtol=1e-5)


def test_parameter_names_follow_reference():
    names = {name for name, _ in make_scorer().named_parameters()}
    expected = {f"patch_token_pooler.{w}.{p}" for w in ("wq", "wk", "wv", "wo") for p in ("weight", "bias")}
    expected |= {f"mlp.{w}.{p}" for w in ("w1", "w2", "w3") for p in ("weight", "bias")}
    assert names == expected


def test_parameter_shapes():
    params = dict(make_scorer().named_parameters())
    assert params["patch_token_pooler.wq.weight"].shape == (DIM, DIM)
    assert params["mlp.w1.weight"].shape == (HIDDEN, 2 * DIM)
    assert params["mlp.w2.weight"].shape == (HIDDEN, HIDDEN)
    assert params["mlp.w3.weight"].shape == (1, HIDDEN)


def test_new_scorer_has_the_reference_initialisation():
    torch.manual_seed(0)
    scorer = TokenScorer(64, 4, 256)
    pool, mlp = scorer.patch_token_pooler, scorer.mlp
    for proj in (pool.wq, pool.wk, pool.wv, pool.wo):
        assert abs(float(proj.weight.detach().std()) - 0.02) < 0.002
        assert not proj.bias.any()
    for layer in (mlp.w1, mlp.w2, mlp.w3):
        assert not layer.bias.any()
        assert float(layer.weight.detach().abs().max()) <= 2.0
    # Truncation at +-2 is far out for these widths, so the spread is the target sqrt(1 / fan_in).
    for layer, fan_in in ((mlp.w1, 128), (mlp.w2, 256)):
        assert abs(float(layer.weight.detach().std()) * fan_in**0.5 - 1.0) < 0.05
    assert mlp.w1.out_features == 256


def test_scorer_width_defaults_to_the_feature_width():
    assert TokenScorer(DIM, HEADS).mlp.w1.out_features == DIM


def test_logits_are_the_pre_sigmoid_scores():
    scorer = make_scorer()
    features = make_features(5)
    with torch.no_grad():
        logits = scorer.logits(features, GROUPS)
        scores = scorer(features, GROUPS)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(torch.sigmoid(logits), scores)
    assert float(logits.abs().max()) > 0


def test_scorer_rejects_indivisible_heads():
    with pytest.raises(ValueError):
        TokenScorer(10, 3)


# ---------------------------------------------------------------- heuristic


def test_heuristic_static_video_scores_zero_after_first_frame():
    frame = make_features(1)[0]
    features = frame[None].repeat(5, 1, 1)
    scores = heuristic_scores(features, GROUPS)
    assert scores.shape == (5, 3)
    torch.testing.assert_close(scores[0], torch.ones(3))
    assert scores[1:].abs().max() < 1e-6


def test_heuristic_changed_group_scores_higher():
    frame = make_features(1)[0]
    features = frame[None].repeat(4, 1, 1)
    features[2, 4] = -features[2, 4] + 0.5
    scores = heuristic_scores(features, GROUPS)
    assert scores[2, 2] > 0.1
    assert scores[2, 2] > scores[2, 0] + 0.1 and scores[2, 2] > scores[2, 1] + 0.1
    assert scores[3, 2] > 0.1
    assert scores[1].abs().max() < 1e-6
    assert scores[2, :2].abs().max() < 1e-6


def test_heuristic_range_and_clamping():
    features = make_features(6, seed=4)
    features[3] = -features[2]
    scores = heuristic_scores(features, GROUPS)
    assert (scores >= 0).all() and (scores <= 1).all()
    torch.testing.assert_close(scores[0], torch.ones(3))
    torch.testing.assert_close(scores[3], torch.ones(3))


def test_heuristic_ignores_padded_slots():
    base = make_features(1, seed=5)
    features = base + 0.3 * make_features(3, seed=6)
    changed = features.clone()
    changed[1, 0] += 3.0
    before, after = heuristic_scores(features, GROUPS), heuristic_scores(changed, GROUPS)
    torch.testing.assert_close(before[:, 1:], after[:, 1:])
    assert (before[1:, 0] - after[1:, 0]).abs().min() > 1e-4


def test_heuristic_does_not_track_gradients():
    features = make_features(3).requires_grad_(True)
    assert not heuristic_scores(features, GROUPS).requires_grad


# ---------------------------------------------------------------- random


def test_random_scores_seeded():
    a, b = random_scores(6, 9, seed=3), random_scores(6, 9, seed=3)
    c = random_scores(6, 9, seed=4)
    assert a.shape == (6, 9)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a >= 0).all() and (a < 1).all()
    assert torch.unique(a).numel() == a.numel()


def test_random_scores_do_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    random_scores(4, 4, seed=11)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- training signal reaching the ViT


@pytest.mark.parametrize("detach", [False, True])
def test_scores_send_gradient_into_the_early_vit_unless_detached(micro_backend, monkeypatch, detach):
    """As in the reference, the auxiliary loss reaches ViT blocks 0..k through the scorer's input;
    `stts.detach_scorer_input` cuts that path (the target itself is always detached)."""
    from stts_core.data.synthetic import make_clip
    from stts_core.methods.losses import temporal_aux_loss

    monkeypatch.setitem(micro_backend.model.config.stts, "detach_scorer_input", detach)
    inputs = micro_backend.prepare(make_clip(2, num_frames=4).frames, "what color is the moving object ?")
    block0 = micro_backend.model.model.vision_tower.layers[0].mlp.fc1.weight
    prefix = micro_backend.vit_prefix(inputs)
    scores = micro_backend.learned_scores(prefix, inputs)
    loss = temporal_aux_loss(scores, prefix.hidden, inputs.groups)
    grad = torch.autograd.grad(loss, block0, allow_unused=True)[0]
    if detach:
        assert grad is None
    else:
        assert grad is not None and float(grad.abs().max()) > 0


def test_logit_anchor_is_the_mean_square_logit_of_later_frames():
    from stts_core.train.objective import logit_anchor

    logits = torch.tensor([[9.0, 9.0], [-3.0, 1.0], [2.0, -6.0]], requires_grad=True)
    value = logit_anchor(torch.sigmoid(logits))
    assert float(value.detach()) == pytest.approx((9 + 1 + 4 + 36) / 4, rel=1e-4)
    (grad,) = torch.autograd.grad(value, logits)
    assert not grad[0].any()  # frame 0 is never pruned: not anchored
    torch.testing.assert_close(grad[1:], logits[1:].detach() / 2, rtol=1e-3, atol=1e-4)  # d/dl mean(l^2) = 2l/4
