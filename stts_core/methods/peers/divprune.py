"""DivPrune (Alvar et al., "DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models",
CVPR 2025, arXiv 2503.02175), implemented from the paper's description only: the authors' code
(vbdi/divprune) is under a non-commercial licence and was not read.

The paper casts pruning as a Max-Min Diversity Problem: choose the subset of visual tokens whose smallest
pairwise cosine distance is largest, and solves it greedily. As we read its description: the first token
is the one farthest from its nearest neighbour; each next token is the remaining one whose distance to the
nearest already-chosen token is largest; stop at the budget. Tokens are the ones that enter the LLM (here the connector's
output); for a video, all its tokens compete in one selection.

What this version does that the paper does not say, and why:

- the budget is ``budget.kept_group_count(T, G, keep)`` tokens, the count every method here keeps;
- ties (equal distances) go to the lower flat index (earlier frame, then lower position), so a selection
  is reproducible;
- distances are float32 and the distance matrix is never held whole: rows are computed as they are
  needed (and the first pick's nearest-neighbour distances in blocks), so memory grows with the tokens,
  not with their square;
- no first-frame rule (the paper has none), so ``keeps_first_frame`` is False.
"""

from __future__ import annotations

import torch

from stts_core.methods.budget import kept_group_count
from stts_core.methods.registry import Method, register_method

SOURCE = "DivPrune, CVPR 2025 (arXiv 2503.02175), from the paper's description"
BLOCK = 1024  # rows of the distance matrix computed at once for the first pick


def _first_pick(x: torch.Tensor) -> int:
    """The token whose nearest neighbour is farthest (the lowest index among equals)."""
    n = x.shape[0]
    if n == 1:
        return 0
    nearest = torch.empty(n, dtype=x.dtype, device=x.device)
    for start in range(0, n, BLOCK):
        dist = 1.0 - x[start:start + BLOCK] @ x.T  # (block, N) cosine distances
        rows = torch.arange(start, min(start + BLOCK, n), device=x.device)
        dist[rows - start, rows] = torch.inf  # a token is not its own neighbour
        nearest[start:start + BLOCK] = dist.min(dim=1).values
    return int(torch.argmax(nearest))


def greedy_max_min(features: torch.Tensor, count: int) -> torch.Tensor:
    """(N,) bool: `count` of the N tokens chosen greedily for the largest minimum cosine distance."""
    x = torch.nn.functional.normalize(features.detach().float(), dim=-1)
    n = x.shape[0]
    chosen = torch.zeros(n, dtype=torch.bool, device=x.device)
    pick = _first_pick(x)
    nearest = torch.full((n,), torch.inf, device=x.device)  # distance to the nearest chosen token
    for _ in range(min(count, n)):
        chosen[pick] = True
        nearest = torch.minimum(nearest, 1.0 - x @ x[pick])
        pick = int(torch.argmax(torch.where(chosen, -torch.inf, nearest)))
    return chosen


def divprune_select(features: torch.Tensor, keep_ratio: float, seed: int = 0) -> torch.Tensor:
    """(T, G) keep mask: `kept_group_count(T, G, keep)` tokens of the whole video, chosen for diversity."""
    t, g, d = features.shape
    return greedy_max_min(features.reshape(t * g, d), kept_group_count(t, g, keep_ratio)).view(t, g)


DIVPRUNE = register_method(Method(
    name="divprune", stage="visual", select=divprune_select, keeps_first_frame=False, color="#c0ca33",
    source=SOURCE,
    summary="greedy max-min cosine diversity over all the video's tokens on the connector's output (DivPrune)"))
