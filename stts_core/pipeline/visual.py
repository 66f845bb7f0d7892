"""The vision side of one run: ViT prefix -> (method) -> packed ViT suffix -> connector -> (method).

Where a method acts is its registry stage, and this module branches on the stage only:
``vit`` scores block k's features and prunes for the later ViT blocks and the LLM; ``visual`` prunes the
connector's output before the LLM; ``frames`` and ``llm`` leave the vision side unpruned (the request
samples fewer frames; the backend prunes inside the LLM). Shared by inference, training and analysis.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from stts_core.methods.budget import attention_bias, kept_group_count, select_groups
from stts_core.methods.registry import Method, get_method
from stts_core.models.base import PreparedInputs, VideoBackend, ViTState
from stts_core.timing import StageTimer

FALLBACK_NOTE = ("This model has no trained STTS scorer weights, so the heuristic scorer (1 - cosine similarity "
                 "to the previous frame) was used instead.")


@dataclass
class VisualPass:
    """What one pass through the vision side produced."""

    prefix: ViTState  # after block k (its features feed the auxiliary loss)
    scores: torch.Tensor | None  # (T, G) the method's scores; None for the baseline or a method without scores
    keep_mask: torch.Tensor | None  # (T, G) selection (all True at keep ratio 1); None for the baseline
    prune: torch.Tensor | None  # keep_mask when something is pruned, else None (the unmodified path)
    visual: torch.Tensor  # (kept groups, LLM width)
    suffix_tokens: int  # tokens each post-pruning ViT block ran on
    vit_tokens: int = 0  # patches ViT block 0 ran on


def resolve_scorer(backend: VideoBackend, requested: str) -> tuple[str, list[str]]:
    """The one fallback rule (run, evaluate, analyze, bench and the app use it): a method that needs
    trained weights the model does not have runs as the heuristic, and says so, rather than with
    random weights."""
    method = get_method(requested)
    if method.needs_weights and not backend.has_learned_scorer:
        return "heuristic", [FALLBACK_NOTE]
    return method.name, []


def method_scores(backend: VideoBackend, method: Method, state: ViTState, inputs: PreparedInputs,
                  seed: int) -> torch.Tensor:
    """(T, G) scores of a vit-stage method on block k's features."""
    if method.needs_weights:
        return backend.learned_scores(state, inputs)
    return method.scores(state.hidden, inputs.groups, seed)


def _vit_selection(backend: VideoBackend, method: Method, inputs: PreparedInputs, prefix: ViTState,
                   keep_ratio: float, seed: int, use_bias: bool | None, scores: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """scores, keep mask, prune mask (None when nothing is pruned) and the key bias (None when off)."""
    if scores is None:
        scores = method_scores(backend, method, prefix, inputs, seed)
    keep_mask = select_groups(scores, keep_ratio)
    prune = None if bool(keep_mask.all()) else keep_mask
    bias = None
    if prune is not None and (use_bias if use_bias is not None else method.key_bias):
        bias = attention_bias(scores, inputs.groups, inputs.patches_per_frame)
    return scores, keep_mask, prune, bias


def selects_nothing(inputs: PreparedInputs, keep_ratio: float) -> bool:
    """True when the budget keeps every group (keep ratio 1, or one that rounds to it): a vit-stage
    method's scores then decide nothing about this run."""
    t, g = inputs.num_frames, int(inputs.groups.shape[0])
    return kept_group_count(t, g, keep_ratio) >= t * g


def _defers_scoring(stage: str | None, inputs: PreparedInputs, keep_ratio: float, scores: torch.Tensor | None
                    ) -> bool:
    """Inference at a budget that prunes nothing runs the unmodified model, so the scorer need not run
    before the answer: its scores (for the page's maps) are computed after the timed stages. Training
    still scores in place, because the auxiliary loss reads them."""
    return stage == "vit" and scores is None and not torch.is_grad_enabled() and selects_nothing(inputs, keep_ratio)


def visual_selection(method: Method, visual: torch.Tensor, inputs: PreparedInputs, keep_ratio: float, seed: int,
                     width: int | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """A visual-stage method on the connector's output, seen as (T, G, D). ``width``: the LLM width, when
    a backend's visual rows carry more columns (Qwen3-VL's DeepStack features ride along in the same
    row, so pruning a row prunes them too); the method sees the first ``width`` columns only."""
    t, g = inputs.num_frames, int(inputs.groups.shape[0])
    if visual.shape[0] != t * g:
        raise ValueError(f"The connector gave {visual.shape[0]} tokens for {t} x {g} groups.")
    tokens = visual.detach()[:, :width].reshape(t, g, -1)
    identity = torch.arange(g, device=visual.device)[:, None]
    keep_mask, scores = method.keep_mask(tokens, identity, keep_ratio, seed=seed)
    return scores, keep_mask.to(visual.device)


def visual_pass(
    backend: VideoBackend,
    inputs: PreparedInputs,
    keep_ratio: float,
    method: str | Method | None,
    seed: int = 0,
    use_bias: bool | None = None,
    timer: StageTimer | None = None,
    prefix: ViTState | None = None,
    scores: torch.Tensor | None = None,
) -> VisualPass:
    """ViT prefix -> scores -> selection (+ bias) -> packed ViT suffix -> connector (-> selection).

    ``method`` None is the unmodified model (the baseline). ``use_bias`` None means the method's own
    choice. At a budget that prunes nothing a vit-stage method's scores are computed after the
    connector, outside the timed stages (`_defers_scoring`). A ``prefix`` (and ``scores``) computed once can be passed in to share them between settings
    of the same clip; the suffix never modifies them.
    """
    timed = timer.stage if timer is not None else (lambda _name: nullcontext())
    chosen = get_method(method) if method is not None else None
    stage = chosen.stage if chosen is not None else None
    with timed("vit_prefix"):
        prefix = prefix if prefix is not None else backend.vit_prefix(inputs)
    keep_mask = prune = bias = None
    deferred = _defers_scoring(stage, inputs, keep_ratio, scores)
    with timed("scoring"):  # entered by every run, so progress hears every stage (empty unless at this stage)
        if stage == "vit" and not deferred:
            scores, keep_mask, prune, bias = _vit_selection(backend, chosen, inputs, prefix, keep_ratio, seed,
                                                            use_bias, scores)
        elif stage != "visual":
            scores = None
    counter: list[int] = []
    with timed("vit_suffix"):
        suffix = backend.vit_suffix(prefix, inputs, prune, bias, counter=counter)
    with timed("connector"):
        visual = backend.connect(suffix, inputs, prune)
    if deferred:  # after the timed stages: the same scores and the all-kept selection, for the page
        scores = method_scores(backend, chosen, prefix, inputs, seed)
        keep_mask = select_groups(scores, keep_ratio)
    if stage == "visual":
        with timed("scoring"):
            scores, keep_mask = visual_selection(chosen, visual, inputs, keep_ratio, seed, backend.llm_hidden_size)
            prune = None if bool(keep_mask.all()) else keep_mask
            if prune is not None:
                visual = visual[prune.reshape(-1)]
    return VisualPass(prefix=prefix, scores=scores, keep_mask=keep_mask, prune=prune, visual=visual,
                      suffix_tokens=counter[-1] if counter else 0,
                      vit_tokens=int(inputs.num_frames * inputs.patches_per_frame))
