"""Aids for training a model from random weights on the synthetic world (the built-in STTS-tiny).

None of these is part of the STTS method; a pretrained VLM fine-tuned with STTS needs none of them.
From scratch the LLM first fits the answer prior and nothing pays for reading the video until it can,
so these give the vision side something to learn early:
- `GroupProbe` / `DenseTargets`: per-group labels (colour, shape, position, motion) read from the visual
  tokens, added to the objective as an extra term (`objective.ExtraLoss`);
- `stage_at`: a curriculum of easier clips (fewer objects, fewer frames) first;
- `set_vision_trainable`: a text-only warm-up and frozen additive constants on the vision side;
- `clip_gradients`: the vision side and the LLM clipped apart, so one cannot shrink the other's step.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from stts_core.models.base import PreparedInputs
from stts_core.models.registry import ModelFamily
from stts_core.pipeline import VisualPass

Stage = tuple[int, int, int]  # (at most this many objects, frames, steps)


class GroupProbe(torch.nn.Module):
    """Training-only linear heads that name the object in each token's group. Not part of the checkpoint.

    From scratch, the visual tokens at first carry too little of what the questions ask for the LLM
    to find it (a linear probe on the pooled tokens of a fresh model reads "is there a red object" at
    54-64%), so the LLM fits the answer prior and never learns to look. Colour, shape and position
    are read from the visual tokens, which see one frame. Motion (still, appeared, direction) is in no single
    frame, so it is read from the LLM's hidden states at the visual tokens after `llm_layer` layers,
    which see the other frames (Molmo2's LLM lets all visual tokens attend to each other): it teaches
    the LLM to compare frames, once, for every question."""

    def __init__(self, dim: int, llm_layer: int = 2) -> None:
        super().__init__()
        from stts_core.data.synthetic import LABEL_HEADS

        if list(LABEL_HEADS)[-1] != "motion":
            raise ValueError("GroupProbe reads the last label head, motion, from the LLM states.")
        self.sizes = [len(v) for v in LABEL_HEADS.values()]
        self.llm_layer = llm_layer
        self.head = torch.nn.Linear(dim, sum(self.sizes[:-1]))
        self.motion = torch.nn.Linear(dim, self.sizes[-1])

    def loss(self, visual: torch.Tensor, labels: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy over heads; visual and context (n, dim), labels (n, heads), where a
        motion label of -100 is ignored. Without context (or any motion label) the motion head is left out."""
        parts = self.head(visual.float()).split(self.sizes[:-1], dim=-1)
        losses = [torch.nn.functional.cross_entropy(x, labels[:, i]) for i, x in enumerate(parts)]
        if context is not None and bool((labels[:, -1] >= 0).any()):
            losses.append(torch.nn.functional.cross_entropy(self.motion(context.float()), labels[:, -1]))
        return torch.stack(losses).mean()


class DenseTargets:
    """One clip's per-group labels as an extra term of the objective (an `objective.ExtraLoss`):
    the probe's loss on the kept visual tokens, motion read from the LLM states at `probe.llm_layer`."""

    def __init__(self, probe: GroupProbe, labels: np.ndarray | torch.Tensor, weight: float,
                 inputs: PreparedInputs) -> None:
        """labels (T, G, heads) per group of the clip that `inputs` was prepared from."""
        self.probe = probe
        self.labels = torch.as_tensor(labels)
        self.weight = float(weight)
        self.hidden_layer: int | None = probe.llm_layer
        if tuple(self.labels.shape[:2]) != (inputs.num_frames, int(inputs.groups.shape[0])):
            raise ValueError(f"Labels of shape {tuple(self.labels.shape)} do not match the model's token groups "
                             f"({inputs.num_frames} frames x {int(inputs.groups.shape[0])} groups).")

    def __call__(self, vp: VisualPass, llm_hidden: torch.Tensor | None) -> torch.Tensor:
        labels = self.labels.to(vp.visual.device)
        if vp.prune is not None:
            labels = labels[vp.prune.to(labels.device)]
        return self.probe.loss(vp.visual, labels.reshape(-1, labels.shape[-1]), llm_hidden)


def parse_stage(text: str) -> Stage:
    """argparse type of one curriculum stage, OBJECTS:FRAMES:STEPS."""
    try:
        objects, frames, steps = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected OBJECTS:FRAMES:STEPS, got {text!r}") from None
    if not (1 <= objects <= 3 and frames >= 4 and steps >= 1):
        raise argparse.ArgumentTypeError(f"need 1-3 objects, at least 4 frames and 1 step, got {text!r}")
    return objects, frames, steps


def stage_at(curriculum: list[Stage], step: int, frames: int) -> tuple[int, int]:
    """(max objects, frames) of the synthetic clips at `step` of a curriculum of
    (objects, frames, steps) stages; after the last stage, the real data: 3 objects, `frames`.

    From scratch every question first needs the model to find the right object, and nothing pays
    for reading the video until it can: with one object per clip there is nothing to find, so
    colour, shape and motion are learned first (seen on the tiny preset: prior-level for 1400
    steps on full clips, 90% on single-object colour questions after 300 curriculum steps)."""
    end = 0
    for objects, stage_frames, steps in curriculum:
        end += steps
        if step < end:
            return objects, stage_frames
    return 3, frames


def set_vision_trainable(model: torch.nn.Module, family: ModelFamily, trainable: bool,
                         frozen_constants: bool = False) -> None:
    """Switch gradient flow into the vision side (ViT, adapter, scorer).

    From scratch the LLM first fits the answer prior; if the vision side trains then, the cheapest
    way to feed the LLM a bias is a constant added to every visual token, which grows until it drowns
    the video (all frames look alike and the auxiliary target collapses to 0). Holding the vision side
    still for a short text warm-up, and keeping its additive constants (biases, LayerNorm shifts) at
    zero, removes that shortcut. The scorer keeps its biases trainable (it needs them to say "static").
    """
    for name, p in model.named_parameters():
        if name.startswith(family.vision_prefixes):
            constant = name.startswith(family.constant_prefixes) and p.dim() == 1
            p.requires_grad_(trainable and not (frozen_constants and constant))


def clip_gradients(model: torch.nn.Module, family: ModelFamily, max_norm: float) -> None:
    """Clip the vision side (ViT, adapter, scorer) and the LLM each to `max_norm`, not jointly.

    The vision side's gradient can be a hundred times the LLM's (dense targets, a rescaled adapter);
    one joint clip then shrinks the LLM's step by the same factor, and it stops learning."""
    vision, language = [], []
    for name, p in model.named_parameters():
        if p.grad is not None:
            (vision if name.startswith(family.vision_prefixes) else language).append(p)
    for params in (vision, language):
        if params:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
