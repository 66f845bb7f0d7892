"""VidCom2 (Liu et al., EMNLP 2025, arXiv 2505.14454): frame budgets from frame uniqueness, then the
most distinctive tokens within each frame.

Sources: the authors' ``token_compressor/vidcom2/vidcom2.py`` (xuyang-liu16/VidCom2 at d31b1560:
``vidcom2_compression``, ``select_low_var_channels``, ``compute_gaussian_scores``, ``compute_scales``,
``select_outlier_indices``) and vLLM's ``vllm/multimodal/video_prune/vidcom2.py``
(``compute_retention_mask``, at 0f17ee06), which adds a reconciliation to an exact global count. The rule,
on the connector's output tokens of one video, (T, G, D):

1. keep the half of the channels with the lowest variance over all the video's tokens, L2-normalise
   each token on them;
2. each token's similarity to the video centre and to its frame's centre, each a sum of Gaussian kernels
   exp(-d^2 / 2a) for a in 1/8, 1/4, 1/2, 1, 2;
3. frame budgets: a frame's uniqueness is minus its mean video-centre similarity; p = softmax(uniqueness
   / 0.01), scale_t = min(1, keep x (1 + p_t - mean p)), k_t = round(scale_t x G) clamped to [1, G]
   (torch.round: half to even, as both sources round);
4. per frame, keep the k_t tokens with the lowest summed similarity (the most distinctive).

Budget reconciliation: the authors keep sum_t k_t tokens (which varies with the video and the rounding);
vLLM trims or fills to an exact global count by similarity. We follow vLLM's exact global count, with the
count every method here uses, ``budget.kept_group_count(T, G, keep)`` (vLLM's own target is
``max(T, int(T * G * keep))``; `authors_count` gives the per-frame sum for comparison). Too many kept:
drop the kept tokens of highest similarity; too few: add the pruned tokens of lowest similarity.

What this version changes, and why:

- ties are broken by flat index (a stable sort: the earlier token is kept first and dropped last)
  instead of `torch.topk`'s unspecified order, so a selection is reproducible;
- the trimming step never takes a frame's last token while the budget allows one per frame (budget >= T):
  the per-frame step promises every frame at least one token and vLLM's trim can break that promise;
- no first-frame rule (neither source has one), so ``keeps_first_frame`` is False.
"""

from __future__ import annotations

import torch

from stts_core.methods.budget import kept_group_count
from stts_core.methods.registry import Method, register_method

SOURCE = ("VidCom2 (arXiv 2505.14454): authors' token_compressor/vidcom2/vidcom2.py and vLLM "
          "vllm/multimodal/video_prune/vidcom2.py")
ALPHAS = tuple(2.0 ** k for k in range(-3, 2))  # Gaussian bandwidths 1/8 .. 2
CHANNEL_SHARE = 0.5  # the lowest-variance half of the channels
TEMPERATURE = 0.01  # of the softmax over frame uniqueness


def _gaussian(x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """(T, G) sum of Gaussian kernels of the squared distance to `centre`."""
    dist = ((x - centre) ** 2).sum(-1)
    return sum(torch.exp(-dist / (2.0 * a)) for a in ALPHAS)


def similarities(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, G) summed similarity (video + frame centre; high = redundant) and (T, G) video-centre similarity."""
    t, g, d = features.shape
    flat = features.detach().float().reshape(t * g, d)
    variance = flat.var(dim=0, unbiased=False)
    channels = torch.sort(variance, stable=True).indices[:max(1, int(d * CHANNEL_SHARE))]
    x = torch.nn.functional.normalize(flat[:, channels], dim=-1).view(t, g, -1)
    video = _gaussian(x, x.mean(dim=(0, 1), keepdim=True))
    frame = _gaussian(x, x.mean(dim=1, keepdim=True))
    return video + frame, video


def frame_budgets(video_similarity: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """(T,) tokens per frame before reconciliation: distinctive frames get a larger share."""
    g = video_similarity.shape[1]
    uniqueness = -video_similarity.mean(dim=-1)
    p = torch.softmax((uniqueness - uniqueness.max()) / TEMPERATURE, dim=0)
    scales = (keep_ratio * (1.0 + p - p.mean())).clamp(max=1.0)
    return (scales * g).round().long().clamp(min=1, max=g)


def authors_count(features: torch.Tensor, keep_ratio: float) -> int:
    """How many tokens the authors' version keeps for this video (the sum of the frame budgets)."""
    return int(frame_budgets(similarities(features)[1], keep_ratio).sum())


def _per_frame(similarity: torch.Tensor, budgets: torch.Tensor) -> torch.Tensor:
    keep = torch.zeros_like(similarity, dtype=torch.bool)
    for i, k in enumerate(budgets.tolist()):
        keep[i, torch.sort(similarity[i], stable=True).indices[:k]] = True
    return keep


def _reconcile(keep: torch.Tensor, similarity: torch.Tensor, target: int) -> torch.Tensor:
    """Trim or fill `keep` to exactly `target` tokens by similarity (vLLM's step 5, minus its tie order
    and with one token per frame kept through the trim while target >= T)."""
    t, g = keep.shape
    flat, sim = keep.reshape(-1).clone(), similarity.reshape(-1)
    current = int(flat.sum())
    if current < target:
        order = torch.sort(torch.where(flat, torch.inf, sim), stable=True).indices
        flat[order[:target - current]] = True
    elif current > target:
        per_frame = keep.sum(1).tolist()
        floor = 1 if target >= t else 0
        # Highest similarity first; among equals the later token first (a reversed stable ascending sort).
        order = torch.sort(torch.where(flat, sim, -torch.inf), stable=True).indices.flip(0)
        drop = current - target
        for i in order.tolist():
            if drop == 0:
                break
            if per_frame[i // g] > floor:
                flat[i] = False
                per_frame[i // g] -= 1
                drop -= 1
    return flat.view(t, g)


def vidcom2_select(features: torch.Tensor, keep_ratio: float, seed: int = 0) -> torch.Tensor:
    """(T, G) keep mask with exactly `kept_group_count(T, G, keep)` tokens."""
    t, g, _ = features.shape
    similarity, video = similarities(features)
    keep = _per_frame(similarity, frame_budgets(video, keep_ratio))
    return _reconcile(keep, similarity, kept_group_count(t, g, keep_ratio)).to(features.device)


VIDCOM2 = register_method(Method(
    name="vidcom2", stage="visual", select=vidcom2_select, keeps_first_frame=False, color="#6d4c41",
    source=SOURCE,
    summary="frame budgets from frame uniqueness, then each frame's most distinctive tokens (Gaussian "
            "similarity to the video and frame centres) on the connector's output (VidCom2)"))
