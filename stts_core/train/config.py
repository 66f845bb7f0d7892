"""What a training run is configured with: one typed dataclass, one documented field per option.
`stts train` builds it from its flags; a script builds it directly and calls `train.loop.train`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stts_core.methods.losses import AUX_LOSS_WEIGHT
from stts_core.train.from_scratch import Stage
from stts_core.train.objective import LOGIT_L2


@dataclass
class TrainConfig:
    out: Path  # checkpoint directory (also holds train_log.jsonl)
    model: str | None = None  # checkpoint to fine-tune (or give `preset`)
    preset: str | None = None  # an architecture to train from scratch, random weights
    device: str | None = None  # cuda when available, else cpu
    dtype: str | None = None  # bf16 / fp16 / fp32; None: bf16 on CUDA, fp32 on the CPU
    trust_remote_code: bool = False  # allow a hub model's own code (off unless asked for)
    keep: tuple[float, ...] = (0.5,)  # each sample draws its keep ratio from these (1.0 = an unpruned step)
    scorer: str = "learned"  # the method whose selections train the model (a registered method)
    frames: int = 16  # frames per clip
    max_new_tokens: int = 4  # tokens generated per answer in validation
    data: str = "synthetic"  # "synthetic" or a JSONL of {video, question, answer}
    world: str = "plain"  # synthetic data: which world renders the clips (data.synthetic.WORLDS)
    steps: int = 1000  # optimiser steps
    batch: int = 8  # samples per optimiser step (all processes together)
    lr: float = 1e-3  # peak learning rate (linear warm-up, cosine decay to 10%)
    warmup: int = 100  # warm-up steps
    weight_decay: float = 0.01  # AdamW decay on matrices
    aux_weight: float = AUX_LOSS_WEIGHT  # weight of the auxiliary temporal loss (the paper: 0.5)
    aux_loss: str = "mse"  # its form: the paper's mse, or bce (same minimiser, no vanishing gradient)
    logit_l2: float = LOGIT_L2  # weight of mean(scorer logit^2) against saturation (0: the paper's loss)
    freeze_scorer: bool = False  # keep the scorer's weights (e.g. fitted by fit-scorer) while the rest trains
    detach_scorer_input: bool = False  # stop-gradient between ViT block k and the scorer
    seed: int = 0
    eval_every: int = 200  # validate every N steps (process 0)
    save_every: int = 200  # checkpoint every N steps
    resume: bool = False  # continue from `out`'s last checkpoint
    threads: int | None = None  # torch CPU threads
    max_minutes: float | None = None  # stop (and save) after this wall time
    grad_checkpoint: bool = False  # recompute activations in backward (long videos)
    # Aids for a model trained from nothing (train.from_scratch), synthetic data only:
    vision_lr_scale: float = 1.0  # learning rate of the ViT, connector and scorer relative to lr
    text_warmup: int = 0  # the first N steps train the LLM only
    freeze_vision_constants: bool = False  # ViT/connector biases and norm affines stay fixed
    dense_weight: float = 0.0  # weight of the per-group label loss (GroupProbe)
    dense_llm_layer: int = 2  # its target is read from the LLM's states after this many layers
    dense_steps: int | None = None  # apply dense_weight during the first K steps only
    curriculum: list[Stage] = field(default_factory=list)  # easier stages first (objects, frames, steps)
    grounding: int = 0  # training-only one-step questions per clip
    grounding_steps: int | None = None  # ask them during the first K steps only

    def check(self) -> TrainConfig:
        """The combinations one field cannot check alone; a ValueError says which."""
        if (self.model is None) == (self.preset is None):
            raise ValueError("give exactly one of --model (fine-tune a checkpoint) and --preset (train from scratch)")
        if self.data != "synthetic" and (self.grounding or self.dense_weight or self.curriculum):
            raise ValueError("--grounding, --dense-weight and --curriculum need the synthetic data (their targets "
                             "come from the scenes)")
        if self.data != "synthetic" and not Path(self.data).is_file():
            raise ValueError(f"--data: no such file {self.data!r} (give 'synthetic' or a JSONL file)")
        return self
