"""The auxiliary temporal loss that teaches the scorer what "redundant with the previous frame" means."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stts_core.selection import gather_groups

AUX_LOSS_WEIGHT = 0.5


def group_patch_features(features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(T, G, P*D): each group's patch vectors concatenated (padded slots zero), then L2-normalised."""
    patches, _ = gather_groups(features, groups)
    flat = patches.reshape(features.shape[0], groups.shape[0], -1)
    return F.normalize(flat, dim=-1, eps=1e-6)


def temporal_redundancy(features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Target (T-1, G) = 1 - cos(f(t-1, g), f(t, g)) for frames 1..T-1; no gradient flows into it."""
    flat = group_patch_features(features.detach().float(), groups)
    return 1.0 - (flat[1:] * flat[:-1]).sum(-1)


def temporal_aux_loss(scores: torch.Tensor, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """MSE between scores of frames >= 1 and their temporal redundancy target, averaged over them.

    A single-frame video has nothing to compare; the loss is then 0 (still attached to the graph).
    """
    if scores.shape[0] < 2:
        return scores.sum() * 0.0
    target = temporal_redundancy(features, groups)
    return F.mse_loss(scores[1:].float(), target)
