"""The methods STTS itself brings (docs/method.md): the learned scorer, its two training-free
baselines over the same block-k features, and sampling fewer frames."""

from __future__ import annotations

import torch

from stts_core.methods.registry import Method, register_method
from stts_core.methods.scorers import heuristic_scores, random_scores

PAPER = "STTS, arXiv 2603.18004 (docs/method.md)"


def _heuristic(features: torch.Tensor, groups: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return heuristic_scores(features, groups)


def _random(features: torch.Tensor, groups: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return random_scores(features.shape[0], groups.shape[0], seed=seed, device=features.device)


LEARNED = register_method(Method(
    name="learned", stage="vit", needs_weights=True, key_bias=True, color="#00897b", source=PAPER,
    summary="the trained STTS scorer at ViT block k (pruned for the later ViT blocks and the LLM)"))
HEURISTIC = register_method(Method(
    name="heuristic", stage="vit", score=_heuristic, color="#8e24aa", source=PAPER,
    summary="1 - cosine similarity to the same group in the previous frame at ViT block k (training-free)"))
RANDOM = register_method(Method(
    name="random", stage="vit", score=_random, color="#757575", source=PAPER,
    summary="random scores from a seeded generator, same budget and first-frame rule"))
FRAMES = register_method(Method(
    name="frames", stage="frames", keeps_first_frame=False, color="#ef6c00", source=PAPER,
    summary="round(keep x T) frames sampled uniformly, nothing pruned (the same visual-token budget)"))
