"""From scores to a keep mask under a per-video budget, and the soft attention bias.

Groups are the connector's pooling windows. A group table is a (G, P) integer tensor of patch
indices *within one frame*; -1 marks the padding slots of a partial window at the border.
"""

from __future__ import annotations

import math

import torch

# Lower end of the rescaled score range: log(e^-2) = -2 is the strongest bias a token can get.
BIAS_FLOOR = math.exp(-2.0)


def validate_keep_ratio(keep_ratio: float) -> float:
    """Return keep_ratio as a float, or raise ValueError saying what is wrong with it."""
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)):
        raise ValueError(f"The keep ratio must be a number in (0, 1], got {keep_ratio!r}.")
    ratio = float(keep_ratio)
    if math.isnan(ratio) or not 0.0 < ratio <= 1.0:
        raise ValueError(
            f"The keep ratio must be in (0, 1] (the fraction of vision tokens kept), got {keep_ratio!r}."
        )
    return ratio


def kept_group_count(num_frames: int, groups_per_frame: int, keep_ratio: float) -> int:
    """Groups that survive in one video: round(r * G * T), but never fewer than the whole first frame.

    The budget is counted over all frames, the first included; since the first frame is always kept
    whole, a ratio below 1/T is capped there (the other frames lose everything).
    """
    ratio = validate_keep_ratio(keep_ratio)
    if num_frames < 1 or groups_per_frame < 1:
        raise ValueError(f"Need at least one frame and one group, got T={num_frames}, G={groups_per_frame}.")
    total = num_frames * groups_per_frame
    # Round half up; the tiny slack keeps a product that is a half in decimal (0.35 * 90 = 31.5) from
    # landing just below it in binary floating point and rounding down.
    kept = int(math.floor(ratio * total + 0.5 + 1e-9))
    return max(min(kept, total), groups_per_frame)


def select_groups(scores: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """Keep mask (T, G) for one video: first frame whole, then the highest-scoring groups of all
    other frames together (not per frame), so a static frame may lose everything while a frame
    with motion keeps most of its groups.

    Ties are broken deterministically: among equal scores the group with the lower flat index
    (earlier frame, then lower group index) is pruned first.
    """
    if scores.dim() != 2:
        raise ValueError(f"Scores must have shape (frames, groups), got {tuple(scores.shape)}.")
    if torch.isnan(scores).any():
        raise ValueError("The scores contain NaN; the scorer produced invalid values for this video.")
    num_frames, groups = scores.shape
    kept = kept_group_count(num_frames, groups, keep_ratio)
    keep = torch.ones(num_frames, groups, dtype=torch.bool, device=scores.device)
    n_prune = num_frames * groups - kept
    if n_prune == 0:
        return keep
    rest = scores[1:].detach().float().reshape(-1)
    order = torch.sort(rest, stable=True).indices
    flat = keep[1:].reshape(-1).clone()
    flat[order[:n_prune]] = False
    keep[1:] = flat.view(num_frames - 1, groups)
    return keep


def _check_groups(groups: torch.Tensor, patches_per_frame: int) -> None:
    if groups.dim() != 2:
        raise ValueError(f"The group table must have shape (groups, patches per group), got {tuple(groups.shape)}.")
    if groups.numel() and int(groups.max()) >= patches_per_frame:
        raise ValueError(f"The group table points past the {patches_per_frame} patches of a frame.")


def groups_to_patch_mask(keep: torch.Tensor, groups: torch.Tensor, patches_per_frame: int) -> torch.Tensor:
    """Patch keep mask (T, N): a patch survives when a kept group covers it; padded slots are ignored."""
    _check_groups(groups, patches_per_frame)
    num_frames = keep.shape[0]
    valid = groups >= 0
    idx = groups.clamp(min=0).to(keep.device)
    mask = torch.zeros(num_frames, patches_per_frame, dtype=torch.int32, device=keep.device)
    contrib = (keep[:, :, None] & valid.to(keep.device)[None]).to(torch.int32)
    mask.scatter_add_(1, idx.reshape(1, -1).expand(num_frames, -1), contrib.reshape(num_frames, -1))
    return mask > 0


def attention_bias(scores: torch.Tensor, groups: torch.Tensor, patches_per_frame: int) -> torch.Tensor:
    """Additive key bias (T, N) = log(s'): per frame, scores min-max rescaled into [e^-2, 1] and
    broadcast to their patches; the first frame (always kept) and uncovered patches get 0.

    Differentiable in `scores`: this is the path by which the task loss trains the scorer.
    """
    _check_groups(groups, patches_per_frame)
    num_frames = scores.shape[0]
    lo = scores.amin(dim=1, keepdim=True)
    hi = scores.amax(dim=1, keepdim=True)
    span = hi - lo
    unit = torch.where(span > 0, (scores - lo) / span.clamp(min=torch.finfo(scores.dtype).tiny), torch.ones_like(scores))
    rescaled = BIAS_FLOOR + (1.0 - BIAS_FLOOR) * unit
    group_bias = torch.log(rescaled)
    group_bias = torch.cat([torch.zeros_like(group_bias[:1]), group_bias[1:]], dim=0)
    valid = (groups >= 0).to(scores.device)
    idx = groups.clamp(min=0).to(scores.device)
    bias = torch.zeros(num_frames, patches_per_frame, dtype=scores.dtype, device=scores.device)
    contrib = (group_bias[:, :, None] * valid[None]).reshape(num_frames, -1)
    return bias.scatter_add(1, idx.reshape(1, -1).expand(num_frames, -1), contrib)


def gather_groups(features: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, G, P, D) patch features of every group with padded slots zeroed, and the (G, P) validity mask."""
    valid = (groups >= 0).to(features.device)
    index = groups.clamp(min=0).to(features.device)
    patches = features.index_select(1, index.reshape(-1)).view(features.shape[0], *index.shape, features.shape[-1])
    if bool(valid.all()):  # no partial window at the border: nothing to zero
        return patches, valid
    return patches * valid[None, :, :, None].to(patches.dtype), valid
