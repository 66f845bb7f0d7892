"""EVS (Efficient Video Sampling, arXiv 2510.14624) as vLLM serves it for Qwen-VL
(``--video-pruning-method evs``).

Source: vLLM ``vllm/multimodal/evs.py``, ``compute_retention_mask`` and ``compute_retained_tokens_count``
(read at commit 094f1178). The rule, on the tokens that leave the connector (vLLM: the merger's output):

- each token's score is 1 - cosine similarity to the token at the same position in the previous frame;
- every token of the first frame gets a score above any other (vLLM: 255; a cosine dissimilarity is at
  most 2), so the first frame is kept whole whenever the budget covers it;
- one global top-k over all frames together, by a stable descending sort: among equal scores the token
  with the lower flat index (earlier frame, then lower position) is kept first.

What this version changes, and why:

- the count: vLLM keeps ``max(G, int(T * G * (1 - q)))`` tokens (floor, with ``q = 1 - keep``); here every
  method keeps ``budget.kept_group_count(T, G, keep)`` = ``max(G, round(keep * T * G))`` so all methods
  reach the LLM with the same number of tokens. The two differ by at most one token (vLLM's count is
  `vllm_retained_count`, shown beside ours in docs/methods.md);
- the input is (T, G, D) group features (any family, any connector), not a flat (T*H*W, D) tensor plus a
  grid; the scores are computed in float32.
"""

from __future__ import annotations

import torch

from stts_core.methods.budget import kept_group_count, validate_keep_ratio
from stts_core.methods.registry import Method, register_method

SOURCE = "vLLM vllm/multimodal/evs.py compute_retention_mask (EVS, arXiv 2510.14624)"
FIRST_FRAME_SCORE = 255.0  # above any cosine dissimilarity (at most 2), as vLLM sets it


def vllm_retained_count(num_frames: int, groups_per_frame: int, keep_ratio: float) -> int:
    """vLLM's own count for this video (`compute_retained_tokens_count`): the floor of the kept share,
    never less than one frame. For comparison only; the selection uses `kept_group_count`."""
    ratio = validate_keep_ratio(keep_ratio)
    total = num_frames * groups_per_frame
    return max(groups_per_frame, int(total * (1.0 - (1.0 - ratio))))


def evs_scores(features: torch.Tensor) -> torch.Tensor:
    """(T, G) dissimilarity to the same position in the previous frame; the first frame scores 255."""
    x = features.detach().float()
    first = torch.full_like(x[:1, :, 0], FIRST_FRAME_SCORE)
    if x.shape[0] == 1:
        return first
    rest = 1.0 - torch.nn.functional.cosine_similarity(x[1:], x[:-1], dim=-1)  # (T-1, G)
    return torch.cat([first, rest], dim=0)


def evs_select(features: torch.Tensor, keep_ratio: float, seed: int = 0) -> torch.Tensor:
    """(T, G) keep mask: the `kept_group_count` highest-scoring tokens of the whole video, ties to the
    earlier token (vLLM's stable descending sort)."""
    t, g, _ = features.shape
    scores = evs_scores(features).reshape(-1)
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = torch.zeros(t * g, dtype=torch.bool, device=features.device)
    keep[order[:kept_group_count(t, g, keep_ratio)]] = True
    return keep.view(t, g)


EVS = register_method(Method(
    name="evs", stage="visual", select=evs_select, color="#1e88e5", source=SOURCE,
    summary="1 - cosine to the same token in the previous frame on the connector's output, one top-k per "
            "video, first frame whole (vLLM's EVS)"))
