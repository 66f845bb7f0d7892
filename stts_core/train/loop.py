"""`python -m stts_core.train`: end-to-end training of a Molmo2 checkpoint with STTS on.

The loss is `objective.stts_loss`: next-token loss on the answer + 0.5 x the auxiliary temporal loss.
The same loop trains the built-in model on a CPU and Molmo2-4B on a GPU; data is the synthetic
generator or a JSONL of {"video", "question", "answer"}. AdamW, seeded, resumable: checkpoints are
`backend.save` directories (safetensors) plus the optimiser moments (optimizer.safetensors) and the
step (trainer_state.json). `torchrun --nproc_per_node N -m stts_core.train ...` trains data-parallel:
each optimiser step's --batch samples are split across the processes.
"""

from __future__ import annotations

import argparse
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

from stts_core.cli import common as cli
from stts_core.data.synthetic import WORLDS
from stts_core.distributed import Ranks, start_ranks
from stts_core.methods.losses import AUX_LOSS_FORMS, AUX_LOSS_WEIGHT
from stts_core.models.base import ModelLoadError, VideoBackend
from stts_core.models.molmo2.build import PRESETS
from stts_core.pipeline.request import visual_pass
from stts_core.train.from_scratch import (
    VISION_PREFIXES,
    DenseTargets,
    GroupProbe,
    clip_gradients,
    parse_stage,
    set_vision_trainable,
    stage_at,
)
from stts_core.train.objective import LOGIT_L2, stts_loss
from stts_core.train.samples import Sample, jsonl_samples, synthetic_samples, synthetic_validation

__all__ = ["Sample", "lr_at", "main", "make_optimizer", "quick_accuracy", "stts_loss", "validation_keep"]

SATURATED_LOGIT = -10.0  # a median scorer logit below this: sigmoid ~ 0 everywhere, no gradient left


# ----------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m stts_core.train", __doc__, [
        cli.model_options(), cli.stts_options(keep=(0.5,), scorer=("learned",), frames_default=16, new_tokens=4),
        cli.output_options()])
    p.set_defaults(model=None)
    p.add_argument("--preset", choices=sorted(PRESETS), help="train this architecture from scratch (instead of --model)")
    p.add_argument("--keep-choices", dest="keep", type=cli.keep_ratio, nargs="+", metavar="R", help=argparse.SUPPRESS)
    p.add_argument("--data", default="synthetic", help="'synthetic' or a JSONL of {video, question, answer}")
    p.add_argument("--out", type=cli.file_path, required=True, help="checkpoint directory (also holds train_log.jsonl)")
    p.add_argument("--steps", type=cli.whole_number(1), default=1000, help="optimiser steps")
    p.add_argument("--batch", type=cli.whole_number(1), default=8, help="samples per optimiser step (all processes)")
    p.add_argument("--lr", type=cli.positive_float, default=1e-3)
    p.add_argument("--warmup", type=cli.whole_number(0), default=100)
    p.add_argument("--weight-decay", type=cli.non_negative_float, default=0.01)
    p.add_argument("--aux-weight", type=cli.non_negative_float, default=AUX_LOSS_WEIGHT)
    p.add_argument("--aux-loss", choices=AUX_LOSS_FORMS, default="mse",
                   help="form of the auxiliary loss: the paper's mse, or bce (same minimiser, no vanishing gradient; "
                        "saved in the checkpoint's config)")
    p.add_argument("--logit-l2", type=cli.non_negative_float, default=LOGIT_L2,
                   help="weight of mean(scorer logit^2), which keeps the scorer out of saturation (0: the paper's loss)")
    p.add_argument("--freeze-scorer", action="store_true",
                   help="keep the scorer's weights (e.g. fitted by stts_core.scorer_fit); the rest of the model "
                        "trains with its selections and bias in the loop")
    p.add_argument("--detach-scorer-input", action="store_true",
                   help="stop-gradient between ViT block k and the scorer (saved in the checkpoint's config)")
    p.add_argument("--world", choices=WORLDS, default="plain", help="synthetic data: which world renders the clips")
    p.add_argument("--seed", type=cli.whole_number(0), default=0)
    p.add_argument("--eval-every", type=cli.whole_number(1), default=200)
    p.add_argument("--save-every", type=cli.whole_number(1), default=200)
    p.add_argument("--resume", action="store_true", help="continue from --out's last checkpoint")
    p.add_argument("--threads", type=cli.whole_number(1), default=None)
    p.add_argument("--max-minutes", type=cli.positive_float, default=None, help="stop (and save) after this wall time")
    p.add_argument("--grad-checkpoint", action="store_true", help="recompute activations in backward (long videos)")
    _from_scratch_options(p.add_argument_group("training from scratch (synthetic data)"))
    return p


def _from_scratch_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--vision-lr-scale", type=cli.non_negative_float, default=1.0,
                   help="learning rate of the ViT, adapter and scorer relative to --lr")
    g.add_argument("--text-warmup", type=cli.whole_number(0), default=0,
                   help="first N steps train the LLM only (vision side frozen)")
    g.add_argument("--freeze-vision-constants", action="store_true",
                   help="keep ViT/adapter biases and norm affines fixed")
    g.add_argument("--dense-weight", type=cli.non_negative_float, default=0.0,
                   help="weight of the per-group label loss (GroupProbe)")
    g.add_argument("--dense-llm-layer", type=cli.whole_number(0), default=2,
                   help="the motion target is read from the LLM's hidden states after this many layers")
    g.add_argument("--dense-steps", type=cli.whole_number(0), default=None,
                   help="apply --dense-weight during the first K steps only (default: all steps)")
    g.add_argument("--curriculum", type=parse_stage, nargs="*", default=[], metavar="OBJECTS:FRAMES:STEPS",
                   help="easier stages first, e.g. 1:4:800 2:8:800 (at most OBJECTS objects, FRAMES frames, "
                        "for STEPS steps each); then 3 objects and --frames")
    g.add_argument("--grounding", type=cli.whole_number(0), default=0,
                   help="add N training-only one-step questions per clip")
    g.add_argument("--grounding-steps", type=cli.whole_number(0), default=None,
                   help="ask the --grounding questions during the first K steps only (default: all steps)")


def parse_args(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse and check the combinations a single flag's type cannot see (argparse errors, exit 2)."""
    args = p.parse_args(argv)
    if (args.model is None) == (args.preset is None):
        p.error("give exactly one of --model (fine-tune a checkpoint) and --preset (train from scratch)")
    if len(args.scorer) != 1:
        p.error("training uses one --scorer")
    if args.data != "synthetic" and (args.grounding or args.dense_weight or args.curriculum):
        p.error("--grounding, --dense-weight and --curriculum need the synthetic data (their targets come from the scenes)")
    if args.data != "synthetic" and not Path(args.data).is_file():
        p.error(f"--data: no such file {args.data!r} (give 'synthetic' or a JSONL file)")
    return args


def validation_keep(keeps: list[float]) -> float:
    """The keep ratio validation reports: the smallest pruning one trained with, else 0.5."""
    pruned = [k for k in keeps if k < 1.0]
    return min(pruned) if pruned else 0.5


# ----------------------------------------------------------------- optimiser and checkpoints
def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                   vision_lr_scale: float = 1.0) -> torch.optim.AdamW:
    """AdamW with decay on matrices only; the vision side's groups carry `lr_scale` (see `set_lr`)."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        groups.setdefault((name.startswith(VISION_PREFIXES), param.dim() >= 2), []).append(param)
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

    args: argparse.Namespace
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
        return self.elapsed() / (self.args.max_minutes * 60) if self.args.max_minutes else 0.0

    def parameters(self) -> list[torch.nn.Parameter]:
        extra = list(self.probe.parameters()) if self.probe is not None else []
        return [*self.backend.model.parameters(), *extra]


def load_model(args: argparse.Namespace, resume: bool) -> VideoBackend:
    """The backend to train: the last checkpoint (resume), a preset from scratch, or --model."""
    from stts_core.models.loading import backend_from_preset, load_backend

    device = torch.device(args.device) if args.device else None
    dtype = cli.torch_dtype(args.dtype, device.type if device else "cpu") if args.dtype else None
    if resume:
        return load_backend(str(args.out), device=device, dtype=dtype)
    if args.preset:
        return backend_from_preset(args.preset, device=device, dtype=dtype or torch.float32, seed=args.seed)
    return load_backend(args.model, device=device, dtype=dtype, trust_remote_code=args.trust_remote_code)


def build(args: argparse.Namespace, p: argparse.ArgumentParser) -> Trainer:
    """Model, optimiser (restored on resume), the from-scratch aids, data and validation sets."""
    ranks = start_ranks(args.device)
    if ranks.device is not None:
        args.device = ranks.device
    torch.manual_seed(args.seed)
    resume = args.resume and (args.out / "trainer_state.json").exists()
    backend = load_model(args, resume)
    if args.dense_weight > 0 and args.dense_llm_layer > backend.llm_num_layers:
        p.error(f"--dense-llm-layer must be at most the LLM's {backend.llm_num_layers} layers, got {args.dense_llm_layer}")
    backend.model.train()
    if args.detach_scorer_input:
        backend.model.config.stts["detach_scorer_input"] = True
    backend.model.config.stts["aux_loss"] = args.aux_loss
    backend.set_gradient_checkpointing(args.grad_checkpoint)
    optimizer = make_optimizer(backend.model, args.lr, args.weight_decay, args.vision_lr_scale)
    t = Trainer(args, backend, optimizer, ranks)
    if resume:
        t.step, t.spent_s = load_training_state(args.out, backend, optimizer)
    if args.dense_weight > 0:
        t.probe = GroupProbe(backend.llm_hidden_size, args.dense_llm_layer).to(backend.device)
        if resume and (args.out / "probe.safetensors").exists():
            t.probe.load_state_dict(load_file(str(args.out / "probe.safetensors")))
        t.probe_optimizer = torch.optim.AdamW(t.probe.parameters(), lr=args.lr, weight_decay=0.0)
    ranks.broadcast_parameters(t.parameters())
    _start_data(t)
    t.rng = random.Random(args.seed + t.step)
    return t


def _start_data(t: Trainer) -> None:
    args = t.args
    if args.data != "synthetic":
        t.data = jsonl_samples(Path(args.data), args.frames, args.seed, t.step * args.batch)
        return
    if args.dense_weight > 0:
        t.grid = t.backend.prepare(np.zeros((args.frames, 252, 252, 3), dtype=np.uint8), "?").grid
    t.stage = stage_at(args.curriculum, t.step, args.frames)
    t.data = synthetic_samples(t.step * args.batch, t.stage[1], args.grounding, t.grid, t.stage[0], args.world)
    if t.ranks.main:
        t.val, t.val_grounding = synthetic_validation(args.frames, bool(args.grounding), args.world)


def next_sample(t: Trainer) -> Sample:
    """The next training clip; at a curriculum stage's end the stream restarts with the next stage's clips."""
    args = t.args
    if args.data == "synthetic" and stage_at(args.curriculum, t.step, args.frames) != t.stage:
        t.stage = stage_at(args.curriculum, t.step, args.frames)
        if t.ranks.main:
            tqdm.write(f"step {t.step}: clips of at most {t.stage[0]} objects and {t.stage[1]} frames from here on")
        t.data = synthetic_samples(t.step * args.batch, t.stage[1], args.grounding, t.grid, t.stage[0], args.world)
    sample = next(t.data)
    if args.grounding_steps is None or t.step < args.grounding_steps:
        sample.more = [*sample.more, *sample.grounding]
    return sample


def sample_loss(t: Trainer, sample: Sample, keep_ratio: float, dense_weight: float) -> dict[str, torch.Tensor]:
    """`stts_loss` of one clip: preprocessing here, then the objective (with the dense term when on)."""
    questions, answers = zip(*sample.qas, strict=True)
    prepared = t.backend.prepare_questions(sample.frames, list(questions), sample.metadata)
    dense = None
    if t.probe is not None and dense_weight > 0 and sample.labels is not None:
        dense = DenseTargets(t.probe, sample.labels, dense_weight, prepared[0])
    return stts_loss(t.backend, prepared, list(answers), keep_ratio, scorer=t.args.scorer[0],
                     aux_weight=t.args.aux_weight, dense=dense, seed=t.args.seed, logit_l2=t.args.logit_l2,
                     aux_form=t.args.aux_loss)


# ----------------------------------------------------------------- one step
def train_step(t: Trainer) -> dict:
    """One optimiser step over --batch samples (this process's share of them); -> the log record."""
    args = t.args
    set_vision_trainable(t.backend.model, t.step >= args.text_warmup, args.freeze_vision_constants)
    if args.freeze_scorer:
        t.backend.model.temporal_token_scorer.requires_grad_(False)
    lr = lr_at(t.step, args.steps, args.lr, args.warmup, t.time_fraction())
    for group in t.optimizer.param_groups:
        group["lr"] = group["lr_scale"] * lr
    t.optimizer.zero_grad(set_to_none=True)
    dense_weight = args.dense_weight if args.dense_steps is None or t.step < args.dense_steps else 0.0
    sums = dict.fromkeys(("task", "aux", "dense", "visual_rms"), 0.0)
    logits: list[torch.Tensor] = []
    for i in range(args.batch):
        keep = t.rng.choice(args.keep)  # drawn by every process for every sample, so all agree
        sample = next_sample(t)
        if i % t.ranks.world != t.ranks.rank:
            continue
        parts = sample_loss(t, sample, keep, dense_weight)
        (parts["loss"] / args.batch).backward()
        for key in sums:
            sums[key] += float(parts[key]) / args.batch
        if "score_logits" in parts:
            logits.append(parts["score_logits"].cpu())
    t.ranks.sum_gradients(t.parameters())
    sums = t.ranks.sum_values(sums)
    clip_gradients(t.backend.model, 1.0)
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
            vp = visual_pass(backend, inputs, keep_ratio, "none" if keep_ratio >= 1 else "learned")
            gen = backend.generate(inputs, vp.visual, vp.prune, max_new_tokens=max_new_tokens)
            correct += gen.text.strip() == s.answer
    backend.model.train()
    return correct / max(1, len(samples))


def validate(t: Trainer, record: dict) -> None:
    """Held-out accuracy unpruned and at the validation keep ratio, into the record."""
    new_tokens = t.args.max_new_tokens
    record["val_acc_unpruned"] = quick_accuracy(t.backend, t.val, 1.0, new_tokens)
    record["val_acc_keep"] = quick_accuracy(t.backend, t.val, validation_keep(t.args.keep), new_tokens)
    if t.val_grounding:
        record["val_acc_grounding"] = quick_accuracy(t.backend, t.val_grounding, 1.0, new_tokens)


def save(t: Trainer) -> None:
    args = t.args
    save_training_state(args.out, t.backend, t.optimizer, t.step, vars(args) | {"out": str(args.out)}, t.elapsed())
    if t.probe is not None:
        save_file({k: v.contiguous() for k, v in t.probe.state_dict().items()}, str(args.out / "probe.safetensors"))


def warn_if_saturated(record: dict) -> None:
    median = record.get("score_logit_median")
    if median is not None and median < SATURATED_LOGIT:
        tqdm.write(f"step {record['step']}: warning: the scorer is saturated (median logit {median:.1f} < "
                   f"{SATURATED_LOGIT:g}); its sigmoid passes almost no gradient")


# ----------------------------------------------------------------- the loop
def train_loop(t: Trainer) -> dict:
    """Steps until --steps or --max-minutes; process 0 validates, logs and saves. -> the last record."""
    args, main_rank = t.args, t.ranks.main
    if main_rank:
        args.out.mkdir(parents=True, exist_ok=True)
    record: dict = {}
    bar = tqdm(total=args.steps, initial=t.step, desc="train", dynamic_ncols=True, disable=not main_rank)
    with (args.out / "train_log.jsonl").open("a") if main_rank else nullcontext() as log:
        while t.step < args.steps:
            record = train_step(t)
            out_of_time = t.ranks.any(args.max_minutes is not None and t.elapsed() > args.max_minutes * 60)
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
    args = t.args
    warn_if_saturated(record)
    last = t.step == args.steps or out_of_time
    if t.val and (t.step % args.eval_every == 0 or last):
        validate(t, record)
        tqdm.write(json.dumps(record))
    log.write(json.dumps(record) + "\n")
    log.flush()
    if t.step % args.save_every == 0 or last:
        save(t)
    if out_of_time:
        tqdm.write(f"stopping at step {t.step}: --max-minutes reached")


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = parse_args(p, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        trainer = build(args, p)
    except (ModelLoadError, ValueError, OSError) as err:
        cli.exit_with_error(str(err))
    try:
        record = train_loop(trainer)
    finally:
        trainer.ranks.close()
    if args.json is not None and trainer.ranks.main:
        args.json.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
