"""The small protocol a model family implements so the pipeline can run STTS inside it.

The pipeline calls the stages in data-flow order and times each one:
prepare -> vit_prefix -> score -> select -> vit_suffix -> connect -> prefill -> decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass
class PreparedInputs:
    """Model inputs for one video and one question, plus the geometry STTS needs."""

    tensors: dict[str, torch.Tensor]  # whatever the model's own forward takes (the unpruned baseline)
    groups: torch.Tensor  # (G, P) patch indices of each group inside one frame, -1 = padding
    num_frames: int
    patches_per_frame: int
    grid: tuple[int, int]  # (rows, cols) of groups in a frame, for drawing
    patch_grid: tuple[int, int]  # (rows, cols) of patches in a frame


@dataclass
class ViTState:
    """Features after the scoring block, plus any earlier layer outputs the connector reads."""

    hidden: torch.Tensor  # (T, N, D) output of block k
    saved: dict[int, torch.Tensor] = field(default_factory=dict)  # layer index -> (T, N, D)


@dataclass
class Generation:
    token_ids: list[int]
    text: str
    prefill_s: float  # time to first token, the LLM part only
    decode_s: float  # all later tokens
    prompt_tokens: int


class VideoBackend(Protocol):
    """What a model family must provide. Implementations live one per file in this package."""

    name: str
    device: torch.device
    scoring_layer: int  # k: zero-based ViT block after which scores are computed
    default_keep_ratio: float
    has_learned_scorer: bool

    def prepare(self, frames: Any, question: str, metadata: dict | None = None) -> PreparedInputs: ...

    def vit_prefix(self, inputs: PreparedInputs) -> ViTState: ...

    def learned_scores(self, state: ViTState, inputs: PreparedInputs) -> torch.Tensor: ...

    def vit_suffix(
        self, state: ViTState, inputs: PreparedInputs, keep: torch.Tensor | None, bias: torch.Tensor | None
    ) -> ViTState: ...

    def connect(self, state: ViTState, inputs: PreparedInputs, keep: torch.Tensor | None) -> torch.Tensor: ...

    def generate(
        self, inputs: PreparedInputs, visual: torch.Tensor, keep: torch.Tensor | None, max_new_tokens: int
    ) -> Generation: ...
