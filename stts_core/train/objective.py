"""The STTS training objective, as docs/method.md states it ("Training signal"):

    loss = task + 0.5 x aux

- task: the LLM's next-token loss on the answer, computed through the pruned path (scores ->
  selection + soft key bias -> packed ViT suffix -> connector on the kept groups -> LLM on the kept
  visual tokens). The bias is how the task loss reaches the scorer (spatial signal).
- aux: MSE between each group's score and its redundancy with the previous frame, 1 - cos(f(t-1),
  f(t)) on block k's features, over frames >= 1 (temporal signal). A BCE form against the same
  target is a training option (losses.AUX_LOSS_FORMS says why).

The vision side does not depend on the question, so it runs once per clip and every question of the
clip reuses it; the task loss is their mean. Extra training-only terms (the from-scratch aids) plug in
as an `ExtraLoss`; the objective itself knows none of them.
"""

from __future__ import annotations

from typing import Protocol

import torch

from stts_core.methods.losses import AUX_LOSS_WEIGHT, logits_of, temporal_aux_loss
from stts_core.methods.registry import get_method
from stts_core.models.base import PreparedInputs, VideoBackend
from stts_core.pipeline import VisualPass, visual_pass

# Weight of the scorer-logit anchor, mean(logit^2) over frames >= 1 (not in the paper): it keeps the
# auxiliary MSE from driving the static groups' logits toward minus infinity (docs/training-notes.md).
LOGIT_L2 = 1e-4



class ExtraLoss(Protocol):
    """A training-only term added to the objective, e.g. `from_scratch.DenseTargets`."""

    weight: float
    hidden_layer: int | None  # the LLM layer whose states at the visual tokens it reads (None: none)

    def __call__(self, vp: VisualPass, llm_hidden: torch.Tensor | None) -> torch.Tensor:
        """The term's value for this clip's visual pass (and the LLM states when asked for)."""
        ...


def stts_loss(
    backend: VideoBackend,
    prepared: list[PreparedInputs],
    answers: list[str],
    keep_ratio: float,
    *,
    scorer: str | None = "learned",
    aux_weight: float = AUX_LOSS_WEIGHT,
    dense: ExtraLoss | None = None,
    seed: int = 0,
    logit_l2: float = 0.0,
    aux_form: str = "mse",
) -> dict[str, torch.Tensor]:
    """Task + aux_weight x aux (+ the extra term) of one clip and its questions.

    `prepared` holds one PreparedInputs per question of the same clip (`backend.prepare_questions`),
    `answers` their answers. scorer None is the unmodified model: no scorer, no pruning, no aux
    loss (the baseline training step). `logit_l2` > 0 adds the logit anchor (LOGIT_L2) for the learned
    scorer; `aux_form` is the auxiliary loss's form (losses.AUX_LOSS_FORMS). Returns "loss" (to
    backpropagate) and, detached for logging,
    "task", "aux", "dense", "visual_rms" and, for the learned scorer, "score_logits" (prunable frames).
    """
    if len(prepared) != len(answers) or not prepared:
        raise ValueError(f"Need one answer per prepared question, got {len(prepared)} and {len(answers)}.")
    method = get_method(scorer) if scorer is not None else None
    trained = method is not None and method.needs_weights
    vp = visual_pass(backend, prepared[0], keep_ratio, method, seed=seed)
    prompts = [backend.llm_inputs(inputs, vp.prune) for inputs in prepared]
    hidden_layer = dense.hidden_layer if dense is not None else None
    task, llm_hidden = backend.answer_pass(prompts, answers, vp.visual, hidden_layer)
    at_block_k = vp.scores is not None and method is not None and method.stage == "vit"
    aux = auxiliary_loss(vp, prepared[0], aux_form) if at_block_k else task.new_zeros(())
    loss = task + aux_weight * aux
    if logit_l2 and vp.scores is not None and trained:
        loss = loss + logit_l2 * logit_anchor(vp.scores)
    extra = task.new_zeros(())
    if dense is not None:
        extra = dense(vp, llm_hidden)
        loss = loss + dense.weight * extra
    parts = {"loss": loss, "task": task.detach(), "aux": aux.detach(), "dense": extra.detach(),
             "visual_rms": vp.visual.detach().float().pow(2).mean().sqrt(),
             "visual_tokens": torch.tensor(vp.visual.shape[0])}
    if trained and vp.scores is not None:
        parts["score_logits"] = score_logits(vp.scores)
    return parts


def auxiliary_loss(vp: VisualPass, inputs: PreparedInputs, form: str = "mse") -> torch.Tensor:
    """MSE(s(t, g), 1 - cos(f(t-1, g), f(t, g))) over frames t >= 1, f = block k's group features
    (or the BCE form against the same target)."""
    return temporal_aux_loss(vp.scores, vp.prefix.hidden, inputs.groups, form)


def logit_anchor(scores: torch.Tensor) -> torch.Tensor:
    """mean(logit^2) of the scores of frames >= 1 (differentiable; see LOGIT_L2)."""
    prunable = scores[1:] if scores.shape[0] > 1 else scores
    return logits_of(prunable).pow(2).mean()


def score_logits(scores: torch.Tensor) -> torch.Tensor:
    """The scorer's pre-sigmoid logits of the prunable frames (1..T-1; frame 0 when alone), detached, flat."""
    prunable = scores[1:] if scores.shape[0] > 1 else scores
    return logits_of(prunable.detach()).reshape(-1)
