"""The contract a model family implements so the pipeline, training, evaluation and the bench can
run STTS inside it, and the data that crosses it.

Stages, in data-flow order (the pipeline times each one; `pipeline.STAGES` names them):
prepare -> vit_prefix -> scoring -> vit_suffix -> connect -> llm_inputs/generate.
Words used throughout: `keep_ratio` is a float in (0, 1]; `keep_mask` is a (T, G) bool tensor of
kept groups (None = nothing pruned, the unmodified path); `attention_impl` is the packed-attention
kernel choice of `packing.packed_attention`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says which and why in one sentence."""


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
    """Features after a ViT block, plus the earlier layer outputs the connector reads."""

    hidden: torch.Tensor  # (T, N, D)
    saved: dict[int, torch.Tensor] = field(default_factory=dict)  # layer index -> (T, N, D)


@dataclass
class Generation:
    token_ids: list[int]
    text: str
    prefill_s: float  # the LLM's prefill only (the pipeline adds the vision stages for time to first token)
    decode_s: float  # all later tokens
    prompt_tokens: int
    keep_mask: torch.Tensor | None = None  # (T, G) chosen inside the LLM (an llm-stage method), else None
    visual_tokens: int | None = None  # visual tokens after the LLM's pruning layer (an llm-stage method)


@dataclass(frozen=True)
class LLMPrune:
    """An llm-stage method's request to `generate`: keep `keep_tokens` visual tokens from the layer the
    method names on (the selection is made once, at prefill)."""

    method: str
    keep_tokens: int
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SuffixGeometry:
    """What the packed ViT suffix runs on, for costing its packing work (`bench.packing_cost`)."""

    packed_blocks: int  # ViT blocks that run on packed tokens
    unpacked_reads: int  # feature layers the connector reads after packing (one unpack each)
    heads: int
    head_dim: int


@runtime_checkable
class VideoBackend(Protocol):
    """What a model family provides (one folder per family under `stts_core.models`)."""

    name: str
    source: str  # the hub id, folder or "preset:<name>" it was built from
    scoring_layer: int  # k: zero-based ViT block after which scores are computed
    default_keep_ratio: float  # the keep ratio the checkpoint was trained for
    has_learned_scorer: bool  # False: no trained scorer weights (see pipeline.resolve_scorer)
    attention_impl: str  # packed-attention kernel: auto, flash, varlen, flex, rows or loop
    preprocess_on_device: bool  # resize and normalise on the model's accelerator (no effect on a CPU)
    warm: bool  # set once a timed run has gone through (the first one pays one-off costs)
    model: torch.nn.Module  # the parameters training updates
    capabilities: frozenset[str]  # optional abilities, e.g. "llm_prune" (llm-stage methods)
    frame_unit: str  # what one row of a keep mask is: "frame", or "temporal patch" (two frames, Qwen-VL)

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def llm_hidden_size(self) -> int: ...

    @property
    def llm_num_layers(self) -> int: ...

    @property
    def suffix_geometry(self) -> SuffixGeometry: ...

    def prepare(self, frames: np.ndarray, question: str, metadata: dict | None = None) -> PreparedInputs:
        """Frames (T, H, W, 3) uint8 and a question -> model inputs on the device + group geometry."""
        ...

    def prepare_questions(self, frames: np.ndarray, questions: list[str],
                          metadata: dict | None = None) -> list[PreparedInputs]:
        """`prepare` for several questions about one video, processing the video once."""
        ...

    def vit_prefix(self, inputs: PreparedInputs) -> ViTState:
        """Patch embedding and ViT blocks 0..k on every frame."""
        ...

    def learned_scores(self, state: ViTState, inputs: PreparedInputs) -> torch.Tensor:
        """(T, G) scores in [0, 1] from the trained scorer on block k's features."""
        ...

    def vit_suffix(self, state: ViTState, inputs: PreparedInputs, keep_mask: torch.Tensor | None,
                   bias: torch.Tensor | None, counter: list[int] | None = None) -> ViTState:
        """Block k+1 (with the key bias) on every patch, the later blocks on kept patches, packed."""
        ...

    def connect(self, state: ViTState, inputs: PreparedInputs, keep_mask: torch.Tensor | None) -> torch.Tensor:
        """The connector on kept groups only -> (kept groups, LLM width)."""
        ...

    def llm_inputs(self, inputs: PreparedInputs, keep_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The LLM's token inputs with the pruned visual placeholders removed."""
        ...

    def generate(self, inputs: PreparedInputs, visual: torch.Tensor, keep_mask: torch.Tensor | None,
                 max_new_tokens: int = 16, stop_at_eos: bool = True,
                 llm: dict[str, torch.Tensor] | None = None, llm_prune: LLMPrune | None = None) -> Generation:
        """Greedy decoding, prefill and decoding timed apart. ``llm_prune`` only where the backend has
        the "llm_prune" capability."""
        ...

    def answer_pass(self, prompts: list[dict[str, torch.Tensor]], answers: list[str], visual: torch.Tensor,
                    hidden_layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training: mean next-token loss on each answer given its prompt (and, with `hidden_layer`,
        the LLM's hidden states at the visual tokens after that many layers)."""
        ...

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in backward for every ViT and LLM block, packed ones included."""
        ...

    def save(self, out_dir: str | Path) -> Path:
        """Weights (safetensors), config and processor into one directory that `load_backend` reads."""
        ...
