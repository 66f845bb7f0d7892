"""The auxiliary temporal loss that teaches the scorer what "redundant with the previous frame" means."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stts_core.methods.budget import gather_groups

AUX_LOSS_WEIGHT = 0.5
# "mse" is the paper's auxiliary loss; "bce" has the same minimiser (both are proper scoring rules) and a
# gradient on the logit, (score - target), that does not vanish as the sigmoid saturates
# (docs/training-notes.md has the measurements).
AUX_LOSS_FORMS = ("mse", "bce")
# Scores are recovered as logits down to about -87 (float32 and bfloat16 alike); the top end saturates near
# +16 (float32) or +5.5 (bfloat16).
_PROB_EPS = 1e-38


def group_patch_features(features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(T, G, P*D): each group's patch vectors concatenated (padded slots zero), then L2-normalised."""
    patches, _ = gather_groups(features, groups)
    flat = patches.reshape(features.shape[0], groups.shape[0], -1)
    return F.normalize(flat, dim=-1, eps=1e-6)


def logits_of(scores: torch.Tensor) -> torch.Tensor:
    """The scorer's pre-sigmoid logits recovered from its scores, in float32 and differentiable."""
    return torch.logit(scores.float().clamp(_PROB_EPS, 1.0 - torch.finfo(torch.float32).eps))


def temporal_redundancy(features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Target (T-1, G) = 1 - cos(f(t-1, g), f(t, g)) for frames 1..T-1; no gradient flows into it."""
    flat = group_patch_features(features.detach().float(), groups)
    return 1.0 - (flat[1:] * flat[:-1]).sum(-1)


def temporal_aux_loss(scores: torch.Tensor, features: torch.Tensor, groups: torch.Tensor,
                      form: str = "mse") -> torch.Tensor:
    """MSE (or BCE, see AUX_LOSS_FORMS) between scores of frames >= 1 and their temporal redundancy
    target, averaged over them.

    A single-frame video has nothing to compare; the loss is then 0 (still attached to the graph).
    """
    if form not in AUX_LOSS_FORMS:
        raise ValueError(f"Unknown auxiliary loss {form!r}; expected one of {', '.join(AUX_LOSS_FORMS)}.")
    if scores.shape[0] < 2:
        return scores.sum() * 0.0
    target = temporal_redundancy(features, groups)
    if form == "mse":
        return F.mse_loss(scores[1:].float(), target)
    # From the logit, so a score near 0 keeps its gradient (score - target) in float32.
    return F.binary_cross_entropy_with_logits(logits_of(scores[1:]), target.clamp(0.0, 1.0))
