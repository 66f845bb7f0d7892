"""Token scorers: the learned STTS scorer and the two training-free baselines.

Every scorer maps patch features (T, N, D) taken after an early ViT block, plus a group table
(G, P), to scores (T, G) in [0, 1]. High score = important = keep.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stts_core.methods.budget import gather_groups
from stts_core.methods.losses import group_patch_features

# The reference implementation's initialiser range for the pooler's projections (Molmo2's ViT config).
POOLER_INIT_STD = 0.02


class GroupAttentionPool(nn.Module):
    """Multi-head attention pooling of a group's patches, queried by the group's mean.

    Parameter names (wq, wk, wv, wo) follow the reference implementation so checkpoints map by renaming.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Scorer width {dim} is not divisible by {num_heads} heads.")
        self.num_heads = num_heads
        self.wq = nn.Linear(dim, dim)
        self.wk = nn.Linear(dim, dim)
        self.wv = nn.Linear(dim, dim)
        self.wo = nn.Linear(dim, dim)

    def forward(self, patches: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """patches (T, G, P, D), valid (G, P) -> pooled (T, G, D).

        Multi-head attention with one query per group, without projecting every patch: a head's logit
        q . (Wk x + bk) is (Wk^T q) . x plus q . bk, the same for every key of the group (the softmax
        drops it); and as the weights sum to one, the weighted value sum (Wv x + bv) is Wv applied to
        the weighted patch sum, plus bv. The numbers of per-patch key/value projections for about 1/P
        of their work (P patches per group), which is most of the scorer's cost.
        """
        t, g, p, d = patches.shape
        heads, hd = self.num_heads, d // self.num_heads
        whole = bool(valid.all())  # no padded slot (every group of a frame whose grid the windows tile)
        if whole:
            query = patches.mean(2)  # (T, G, D)
        else:
            query = patches.sum(2) / valid.sum(-1).clamp(min=1).to(patches.dtype)[None, :, None]
        q = self.wq(query).reshape(t * g, heads, hd)
        read = torch.bmm(q.transpose(0, 1), self.wk.weight.view(heads, hd, d))  # (H, TG, D): Wk_h^T q_h
        x = patches.reshape(t * g, p, d)
        logits = torch.bmm(x, read.permute(1, 2, 0)) * hd**-0.5  # (TG, P, H)
        if not whole:  # padded slots are no keys; a fully padded group (none in practice) sees every slot
            key_mask = valid | ~valid.any(-1, keepdim=True)
            hidden = ~key_mask.to(logits.device)[None].expand(t, g, p).reshape(t * g, p, 1)
            logits = logits.masked_fill(hidden, float("-inf"))
        weights = torch.softmax(logits.float(), dim=1).to(x.dtype)
        mixed = torch.bmm(weights.transpose(1, 2), x)  # (TG, H, D): each head's weighted patch sum
        values = torch.bmm(mixed.transpose(0, 1), self.wv.weight.view(heads, hd, d).transpose(1, 2))  # (H, TG, hd)
        # wo(values + bv) with bv folded into wo's bias (Wo bv + bo): one pass over the output fewer.
        return F.linear(values.transpose(0, 1).reshape(t, g, d), self.wo.weight,
                        torch.addmv(self.wo.bias, self.wo.weight, self.wv.bias))

    def reset_parameters(self, std: float = POOLER_INIT_STD) -> None:
        """The reference initialisation: every projection N(0, std), biases zero."""
        for proj in (self.wq, self.wk, self.wv, self.wo):
            nn.init.normal_(proj.weight, std=std)
            nn.init.zeros_(proj.bias)


class ScorerMLP(nn.Module):
    """2D -> H -> H -> 1 with SiLU; names w1/w2/w3 as in the reference implementation."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(in_dim, hidden)
        self.w2 = nn.Linear(hidden, hidden)
        self.w3 = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(F.silu(self.w2(F.silu(self.w1(x))))).squeeze(-1)

    def reset_parameters(self) -> None:
        """The reference initialisation: truncated normal (std sqrt(1 / fan-in), cut at +-2), biases zero."""
        for layer in (self.w1, self.w2, self.w3):
            nn.init.trunc_normal_(layer.weight, std=math.sqrt(1 / layer.in_features), a=-2.0, b=2.0)
            nn.init.zeros_(layer.bias)


class TokenScorer(nn.Module):
    """The learned STTS scorer: pooled group feature of frame t next to frame t-1's, MLP, sigmoid.

    Frame 0 is compared against a zero vector; its scores are never used for pruning (the first
    frame is kept whole) but they are produced so the output is a full (T, G) map.

    `hidden` is the MLP's width: the reference uses the ViT's MLP width; None means `dim` (the
    width of checkpoints saved before `scorer_hidden` was recorded). A new scorer starts from the
    reference initialisation; a loaded one is overwritten by its checkpoint.
    """

    def __init__(self, dim: int, num_heads: int, hidden: int | None = None) -> None:
        super().__init__()
        self.patch_token_pooler = GroupAttentionPool(dim, num_heads)
        self.mlp = ScorerMLP(2 * dim, hidden or dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.patch_token_pooler.reset_parameters()
        self.mlp.reset_parameters()

    def pooled(self, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        patches, valid = gather_groups(features, groups)
        return self.patch_token_pooler(patches, valid)

    def logits(self, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """features (T, N, D), groups (G, P) -> (T, G) float32 logits (before the sigmoid)."""
        current = self.pooled(features, groups)
        previous = torch.cat([torch.zeros_like(current[:1]), current[:-1]], dim=0)
        return self.mlp(torch.cat([previous, current], dim=-1)).float()

    def forward(self, features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """features (T, N, D), groups (G, P) -> scores (T, G) in (0, 1)."""
        return torch.sigmoid(self.logits(features, groups)).to(features.dtype)


def heuristic_scores(features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Training-free temporal score: 1 - cos(group in frame t-1, group in frame t), clamped to [0, 1].

    Groups are compared on their concatenated, L2-normalised patch features (as in the auxiliary
    loss's target), so a region that did not change scores 0. Frame 0 compares against zeros (score 1).
    """
    flat = group_patch_features(features.detach().float(), groups)
    previous = torch.cat([torch.zeros_like(flat[:1]), flat[:-1]], dim=0)
    cos = (flat * previous).sum(-1)
    return (1.0 - cos).clamp(0.0, 1.0).to(features.dtype)


def random_scores(num_frames: int, num_groups: int, seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniform random scores from a seeded generator: the random-pruning baseline, reproducible."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.rand(num_frames, num_groups, generator=gen).to(device)
