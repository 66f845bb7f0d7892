"""The training loop (`stts train`): end-to-end training of a checkpoint of any family with STTS on.

The loss is `objective.stts_loss`: next-token loss on the answer + 0.5 x the auxiliary temporal loss.
The same loop trains the built-in model on a CPU and Molmo2-4B on a GPU; data is the synthetic
generator or a JSONL of {"video", "question", "answer"}. AdamW, seeded, resumable: checkpoints are
`backend.save` directories (safetensors) plus the optimiser moments (optimizer.safetensors) and the
step (trainer_state.json). `torchrun --nproc_per_node N -m stts_core.train ...` trains data-parallel:
each optimiser step's --batch samples are split across the processes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from stts_core.distributed import Ranks, start_ranks
from stts_core.models.base import VideoBackend
from stts_core.models.registry import family_of
from stts_core.pipeline import visual_pass
from stts_core.train.config import TrainConfig
from stts_core.train.from_scratch import (
    DenseTargets,
    GroupProbe,
    clip_gradients,
    set_vision_trainable,
    stage_at,
)
from stts_core.train.objective import stts_loss
from stts_core.train.samples import Sample, jsonl_samples, synthetic_samples, synthetic_validation

__all__ = ["Sample", "lr_at", "make_optimizer", "quick_accuracy", "stts_loss", "train", "validation_keep"]

SATURATED_LOGIT = -10.0  # a median scorer logit below this: sigmoid ~ 0 everywhere, no gradient left


def validation_keep(keeps: list[float]) -> float:
    """The keep ratio validation reports: the smallest pruning one trained with, else 0.5."""
    pruned = [k for k in keeps if k < 1.0]
    return min(pruned) if pruned else 0.5


# ----------------------------------------------------------------- optimiser and checkpoints
def make_optimizer(model: torch.nn.Module, vision_prefixes: tuple[str, ...], lr: float, weight_decay: float,
                   vision_lr_scale: float = 1.0) -> torch.optim.AdamW:
    """AdamW with decay on matrices only; the vision side's groups carry `lr_scale` (see `set_lr`)."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        groups.setdefault((name.startswith(vision_prefixes), param.dim() >= 2), []).append(param)
    return torch.optim.AdamW(
        [{"params": ps, "weight_decay": weight_decay if matrix else 0.0,
          "lr_scale": vision_lr_scale if vision else 1.0} for (vision, matrix), ps in groups.items()],
        lr=lr, betas=(0.9, 0.98))


def lr_at(step: int, total: int, peak: float, warmup: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak.

    With a wall-time budget, progress is whichever is further along, steps or time, so a run cut
    short by its budget still ends with a decayed learning rate.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = max((step - warmup) / max(1, total - warmup), time_fraction)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def save_training_state(out: Path, backend: VideoBackend, optimizer: torch.optim.Optimizer, step: int,
                        args: dict, elapsed_s: float = 0.0) -> None:
    """Checkpoint = `backend.save` directory + optimiser moments (safetensors) + step (JSON)."""
    backend.save(out)
    names = {id(p): n for n, p in backend.model.named_parameters()}
    tensors: dict[str, torch.Tensor] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    tensors[f"{names[id(p)]}::{key}"] = state[key].detach().cpu().contiguous()
    save_file(tensors, str(out / "optimizer.safetensors"))
    state = {"step": step, "elapsed_s": round(elapsed_s, 1), "args": args}
    (out / "trainer_state.json").write_text(json.dumps(state, indent=2, default=str))


def load_training_state(out: Path, backend: VideoBackend, optimizer: torch.optim.Optimizer) -> tuple[int, float]:
    """Restore the optimiser moments saved with the checkpoint; -> (step, training seconds so far)."""
    state = json.loads((out / "trainer_state.json").read_text())
    moments = load_file(str(out / "optimizer.safetensors"))
    step = int(state["step"])
    for name, p in backend.model.named_parameters():
        if f"{name}::exp_avg" in moments:
            optimizer.state[p] = {
                "step": torch.tensor(float(step)),
                "exp_avg": moments[f"{name}::exp_avg"].to(p.device, p.dtype),
                "exp_avg_sq": moments[f"{name}::exp_avg_sq"].to(p.device, p.dtype),
            }
    return step, float(state.get("elapsed_s", 0.0))


# ----------------------------------------------------------------- the run
@dataclass
class Trainer:
    """Everything the loop reads and advances."""

    cfg: TrainConfig
    backend: VideoBackend
    optimizer: torch.optim.Optimizer
    ranks: Ranks
    step: int = 0
    spent_s: float = 0.0  # training time of earlier sessions (resume)
    probe: GroupProbe | None = None
    probe_optimizer: torch.optim.Optimizer | None = None
    grid: tuple[int, int] | None = None  # groups per frame, for the dense labels
    stage: tuple[int, int] = (3, 16)  # curriculum: (max objects, frames) of the clips now drawn
    data: Iterator[Sample] = field(default_factory=lambda: iter(()))
    val: list[Sample] = field(default_factory=list)
    val_grounding: list[Sample] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return self.spent_s + time.perf_counter() - self.started

    def time_fraction(self) -> float:
        return self.elapsed() / (self.cfg.max_minutes * 60) if self.cfg.max_minutes else 0.0

    def parameters(self) -> list[torch.nn.Parameter]:
        extra = list(self.probe.parameters()) if self.probe is not None else []
        return [*self.backend.model.parameters(), *extra]


def load_model(cfg: TrainConfig, resume: bool) -> VideoBackend:
    """The backend to train: the last checkpoint (resume), a preset from scratch, or --model."""
    from stts_core.models.loading import backend_from_preset, dtype_for, load_backend, resolve_device

    device = resolve_device(cfg.device)
    # A preset trains from scratch in fp32 unless asked otherwise; a checkpoint takes the one rule.
    dtype = torch.float32 if cfg.preset and cfg.dtype is None and not resume else dtype_for(cfg.dtype, device)
    if resume:
        return load_backend(str(cfg.out), device=device, dtype=dtype)
    if cfg.preset:
        return backend_from_preset(cfg.preset, device=device, dtype=dtype, seed=cfg.seed)
    return load_backend(cfg.model, device=device, dtype=dtype, trust_remote_code=cfg.trust_remote_code)


def build(cfg: TrainConfig) -> Trainer:
    """Model, optimiser (restored on resume), the from-scratch aids, data and validation sets."""
    ranks = start_ranks(cfg.device)
    if ranks.device is not None:
        cfg.device = ranks.device
    torch.manual_seed(cfg.seed)
    resume = cfg.resume and (cfg.out / "trainer_state.json").exists()
    backend = load_model(cfg, resume)
    if cfg.dense_weight > 0 and cfg.dense_llm_layer > backend.llm_num_layers:
        raise ValueError(f"--dense-llm-layer must be at most the LLM's {backend.llm_num_layers} layers, "
                         f"got {cfg.dense_llm_layer}")
    backend.model.train()
    if cfg.detach_scorer_input:
        backend.model.config.stts["detach_scorer_input"] = True
    backend.model.config.stts["aux_loss"] = cfg.aux_loss
    backend.set_gradient_checkpointing(cfg.grad_checkpoint)
    optimizer = make_optimizer(backend.model, family_of(backend).vision_prefixes, cfg.lr, cfg.weight_decay,
                               cfg.vision_lr_scale)
    t = Trainer(cfg, backend, optimizer, ranks)
    if resume:
        t.step, t.spent_s = load_training_state(cfg.out, backend, optimizer)
    if cfg.dense_weight > 0:
        t.probe = GroupProbe(backend.llm_hidden_size, cfg.dense_llm_layer).to(backend.device)
        if resume and (cfg.out / "probe.safetensors").exists():
            t.probe.load_state_dict(load_file(str(cfg.out / "probe.safetensors")))
        t.probe_optimizer = torch.optim.AdamW(t.probe.parameters(), lr=cfg.lr, weight_decay=0.0)
    ranks.broadcast_parameters(t.parameters())
    _start_data(t)
    t.rng = random.Random(cfg.seed + t.step)
    return t


def _start_data(t: Trainer) -> None:
    cfg = t.cfg
    if cfg.data != "synthetic":
        t.data = jsonl_samples(Path(cfg.data), cfg.frames, cfg.seed, t.step * cfg.batch)
        return
    if cfg.dense_weight > 0:
        t.grid = t.backend.prepare(np.zeros((cfg.frames, 252, 252, 3), dtype=np.uint8), "?").grid
    t.stage = stage_at(cfg.curriculum, t.step, cfg.frames)
    t.data = synthetic_samples(t.step * cfg.batch, t.stage[1], cfg.grounding, t.grid, t.stage[0], cfg.world)
    if t.ranks.main:
        t.val, t.val_grounding = synthetic_validation(cfg.frames, bool(cfg.grounding), cfg.world)


def next_sample(t: Trainer) -> Sample:
    """The next training clip; at a curriculum stage's end the stream restarts with the next stage's clips."""
    cfg = t.cfg
    if cfg.data == "synthetic" and stage_at(cfg.curriculum, t.step, cfg.frames) != t.stage:
        t.stage = stage_at(cfg.curriculum, t.step, cfg.frames)
        if t.ranks.main:
            tqdm.write(f"step {t.step}: clips of at most {t.stage[0]} objects and {t.stage[1]} frames from here on")
        t.data = synthetic_samples(t.step * cfg.batch, t.stage[1], cfg.grounding, t.grid, t.stage[0], cfg.world)
    sample = next(t.data)
    if cfg.grounding_steps is None or t.step < cfg.grounding_steps:
        sample.more = [*sample.more, *sample.grounding]
    return sample


def sample_loss(t: Trainer, sample: Sample, keep_ratio: float, dense_weight: float) -> dict[str, torch.Tensor]:
    """`stts_loss` of one clip: preprocessing here, then the objective (with the dense term when on)."""
    questions, answers = zip(*sample.qas, strict=True)
    prepared = t.backend.prepare_questions(sample.frames, list(questions), sample.metadata)
    dense = None
    if t.probe is not None and dense_weight > 0 and sample.labels is not None:
        dense = DenseTargets(t.probe, sample.labels, dense_weight, prepared[0])
    return stts_loss(t.backend, prepared, list(answers), keep_ratio, scorer=t.cfg.scorer,
                     aux_weight=t.cfg.aux_weight, dense=dense, seed=t.cfg.seed, logit_l2=t.cfg.logit_l2,
                     aux_form=t.cfg.aux_loss)


# ----------------------------------------------------------------- one step
def train_step(t: Trainer) -> dict:
    """One optimiser step over --batch samples (this process's share of them); -> the log record."""
    cfg = t.cfg
    set_vision_trainable(t.backend.model, family_of(t.backend), t.step >= cfg.text_warmup, cfg.freeze_vision_constants)
    if cfg.freeze_scorer:
        t.backend.scorer.requires_grad_(False)
    lr = lr_at(t.step, cfg.steps, cfg.lr, cfg.warmup, t.time_fraction())
    for group in t.optimizer.param_groups:
        group["lr"] = group["lr_scale"] * lr
    t.optimizer.zero_grad(set_to_none=True)
    dense_weight = cfg.dense_weight if cfg.dense_steps is None or t.step < cfg.dense_steps else 0.0
    sums = dict.fromkeys(("task", "aux", "dense", "visual_rms"), 0.0)
    logits: list[torch.Tensor] = []
    for i in range(cfg.batch):
        keep = t.rng.choice(cfg.keep)  # drawn by every process for every sample, so all agree
        sample = next_sample(t)
        if i % t.ranks.world != t.ranks.rank:
            continue
        parts = sample_loss(t, sample, keep, dense_weight)
        (parts["loss"] / cfg.batch).backward()
        for key in sums:
            sums[key] += float(parts[key]) / cfg.batch
        if "score_logits" in parts:
            logits.append(parts["score_logits"].cpu())
    t.ranks.sum_gradients(t.parameters())
    sums = t.ranks.sum_values(sums)
    clip_gradients(t.backend.model, family_of(t.backend), 1.0)
    t.optimizer.step()
    if t.probe_optimizer is not None and dense_weight > 0:
        t.probe_optimizer.step()
        t.probe_optimizer.zero_grad(set_to_none=True)
    t.step += 1
    record = {"step": t.step, "task_loss": sums["task"], "aux_loss": sums["aux"], "dense_loss": sums["dense"],
              "visual_rms": round(sums["visual_rms"], 4), "lr": lr}
    return record | logit_range(t.ranks.gather(logits)) | {"elapsed_s": round(t.elapsed(), 1)}


def logit_range(logits: list[torch.Tensor]) -> dict[str, float]:
    """min / median / max of the learned scorer's logits over the step's clips (empty without them)."""
    if not logits:
        return {}
    flat = torch.cat(logits)
    return {"score_logit_min": round(float(flat.min()), 4), "score_logit_median": round(float(flat.median()), 4),
            "score_logit_max": round(float(flat.max()), 4)}


def quick_accuracy(backend: VideoBackend, samples: list[Sample], keep_ratio: float, max_new_tokens: int = 4) -> float:
    """Greedy exact-match accuracy on a few held-out samples (progress signal during training)."""
    backend.model.eval()
    correct = 0
    with torch.no_grad():
        for s in samples:
            inputs = backend.prepare(s.frames, s.question, s.metadata)
            vp = visual_pass(backend, inputs, keep_ratio, None if keep_ratio >= 1 else "learned")
            gen = backend.generate(inputs, vp.visual, vp.prune, max_new_tokens=max_new_tokens)
            correct += gen.text.strip() == s.answer
    backend.model.train()
    return correct / max(1, len(samples))


def validate(t: Trainer, record: dict) -> None:
    """Held-out accuracy unpruned and at the validation keep ratio, into the record."""
    new_tokens = t.cfg.max_new_tokens
    record["val_acc_unpruned"] = quick_accuracy(t.backend, t.val, 1.0, new_tokens)
    record["val_acc_keep"] = quick_accuracy(t.backend, t.val, validation_keep(t.cfg.keep), new_tokens)
    if t.val_grounding:
        record["val_acc_grounding"] = quick_accuracy(t.backend, t.val_grounding, 1.0, new_tokens)


def save(t: Trainer) -> None:
    cfg = t.cfg
    save_training_state(cfg.out, t.backend, t.optimizer, t.step, dataclasses.asdict(cfg) | {"out": str(cfg.out)}, t.elapsed())
    if t.probe is not None:
        save_file({k: v.contiguous() for k, v in t.probe.state_dict().items()}, str(cfg.out / "probe.safetensors"))


def warn_if_saturated(record: dict) -> None:
    median = record.get("score_logit_median")
    if median is not None and median < SATURATED_LOGIT:
        tqdm.write(f"step {record['step']}: warning: the scorer is saturated (median logit {median:.1f} < "
                   f"{SATURATED_LOGIT:g}); its sigmoid passes almost no gradient")


# ----------------------------------------------------------------- the loop
def train_loop(t: Trainer) -> dict:
    """Steps until --steps or --max-minutes; process 0 validates, logs and saves. -> the last record."""
    cfg, main_rank = t.cfg, t.ranks.main
    if main_rank:
        cfg.out.mkdir(parents=True, exist_ok=True)
    record: dict = {}
    bar = tqdm(total=cfg.steps, initial=t.step, desc="train", dynamic_ncols=True, disable=not main_rank)
    with (cfg.out / "train_log.jsonl").open("a") if main_rank else nullcontext() as log:
        while t.step < cfg.steps:
            record = train_step(t)
            out_of_time = t.ranks.any(cfg.max_minutes is not None and t.elapsed() > cfg.max_minutes * 60)
            bar.update(1)
            bar.set_postfix(task=f"{record['task_loss']:.3f}", aux=f"{record['aux_loss']:.4f}")
            if main_rank:
                report(t, record, log, out_of_time)
            if out_of_time:
                break
    bar.close()
    return record


def report(t: Trainer, record: dict, log: IO[str], out_of_time: bool) -> None:
    """Process 0 after a step: saturation warning, validation when due, the log line, checkpoint when due."""
    cfg = t.cfg
    warn_if_saturated(record)
    last = t.step == cfg.steps or out_of_time
    if t.val and (t.step % cfg.eval_every == 0 or last):
        validate(t, record)
        tqdm.write(json.dumps(record))
    log.write(json.dumps(record) + "\n")
    log.flush()
    if t.step % cfg.save_every == 0 or last:
        save(t)
    if out_of_time:
        tqdm.write(f"stopping at step {t.step}: --max-minutes reached")


def train(cfg: TrainConfig) -> dict:
    """Build and run one training; -> the last log record. Raises ValueError / ModelLoadError with one
    sentence for a configuration or model that cannot be used."""
    cfg.check()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    trainer = build(cfg)
    try:
        record = train_loop(trainer)
    finally:
        trainer.ranks.close()
    return record if trainer.ranks.main else {}
