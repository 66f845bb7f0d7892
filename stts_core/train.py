"""`python -m stts_core.train`: end-to-end training of a Molmo2 checkpoint with STTS on.

Loss = next-token loss on the answer + 0.5 x the auxiliary temporal loss. The scorer learns
temporally from the auxiliary loss and spatially from the task loss through the attention bias.
The same loop trains the built-in model on a CPU and Molmo2-4B on a GPU; data is the synthetic
generator or a JSONL of {"video", "question", "answer"}. AdamW, seeded, resumable: checkpoints are
`save_pretrained` directories (safetensors) plus the optimiser state, also as safetensors.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from stts_core.backends.molmo2 import Molmo2Backend, load_molmo2
from stts_core.backends.molmo2_build import PRESETS, build_model, build_processor, build_tokenizer
from stts_core.losses import AUX_LOSS_WEIGHT, temporal_aux_loss
from stts_core.pipeline import visual_pass
from stts_core.selection import validate_keep_ratio


@dataclass
class Sample:
    frames: np.ndarray  # (T, H, W, 3) uint8
    question: str
    answer: str
    metadata: dict | None = None
    more: list[tuple[str, str]] = field(default_factory=list)  # further (question, answer) pairs on the same clip
    grounding: list[tuple[str, str]] = field(default_factory=list)  # training-only one-step questions (--grounding)
    labels: np.ndarray | None = None  # (T, rows * cols, heads) per-group classes for --dense-weight (synthetic)

    @property
    def qas(self) -> list[tuple[str, str]]:
        return [(self.question, self.answer), *self.more]


def synthetic_samples(start: int, num_frames: int, grounding: int = 0,
                      grid: tuple[int, int] | None = None, max_objects: int = 3) -> Iterator[Sample]:
    """Endless training samples: clip i has train-split seed i, with all of its questions,
    `grounding` one-step questions (seeded by the clip too) and per-group labels on a `grid`."""
    from stts_core.synthetic import SPLIT_SEEDS, grounding_questions, group_labels, make_clip

    index = start
    while True:
        seed = SPLIT_SEEDS["train"] + index
        clip = make_clip(seed, num_frames=num_frames, max_objects=max_objects)
        first, *rest = clip.qas
        extra = grounding_questions(clip.scene, np.random.default_rng([seed, 1]), grounding) if grounding else []
        yield Sample(clip.frames, first.question, first.answer, more=[(q.question, q.answer) for q in rest],
                     grounding=[(q.question, q.answer) for q in extra], labels=group_labels(clip.scene, *grid) if grid else None)
        index += 1


def jsonl_samples(path: Path, num_frames: int, seed: int, start: int) -> Iterator[Sample]:
    """Endless passes over a JSONL file of {"video", "question", "answer"}, shuffled per pass."""
    from stts_core.video import load_video

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} holds no samples.")
    for row in rows:
        if not {"video", "question", "answer"} <= row.keys():
            raise ValueError(f"Every line of {path} needs video, question and answer; got {sorted(row)}.")
    epoch, offset = divmod(start, len(rows))
    while True:
        order = list(range(len(rows)))
        random.Random(seed + epoch).shuffle(order)
        for i in order[offset:]:
            row = rows[i]
            video = Path(row["video"]) if Path(row["video"]).is_absolute() else path.parent / row["video"]
            sampled = load_video(video, num_frames)
            yield Sample(sampled.frames, row["question"], row["answer"], sampled.metadata())
        epoch, offset = epoch + 1, 0


def answer_ids(backend: Molmo2Backend, answer: str) -> list[int]:
    ids = backend.tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"]
    return [*ids, backend.tokenizer.eos_token_id]


def answer_loss(backend: Molmo2Backend, prompts: list[dict[str, torch.Tensor]], answers: list[str],
                visual: torch.Tensor) -> torch.Tensor:
    """Mean over questions of the next-token loss on each answer (see `answer_pass`)."""
    return answer_pass(backend, prompts, answers, visual)[0]


def answer_pass(backend: Molmo2Backend, prompts: list[dict[str, torch.Tensor]], answers: list[str],
                visual: torch.Tensor, hidden_layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean over questions of the next-token loss on each answer, and, with `hidden_layer`, the
    LLM's hidden states after that many layers at the visual tokens (visual tokens, LLM width).

    The prompts of one clip share everything up to the end of the video (`prepare_questions`), so
    that prefix, the bulk of the tokens, runs through the LLM once and each question's text and
    answer run on its KV cache. Prompts that differ before the end of the video, and training with
    gradient checkpointing (which turns the cache off), fall back to `_padded_answer_pass`.
    """
    model = backend.model
    if model.training and getattr(model, "is_gradient_checkpointing", False):
        return _padded_answer_pass(backend, prompts, answers, visual, hidden_layer)
    ids = [p["input_ids"][0] for p in prompts]
    shortest = min(len(x) for x in ids)
    shared = shortest - 1  # every row keeps at least one prompt token, whose logits give the first answer token
    for x in ids[1:]:
        differ = (x[:shared] != ids[0][:shared]).nonzero()
        if len(differ):
            shared = int(differ[0])
    if bool((ids[0][shared:] == backend.image_token_id).any()):
        return _padded_answer_pass(backend, prompts, answers, visual, hidden_layer)
    device = backend.device
    types = prompts[0]["mm_token_type_ids"][:, :shared]
    prefix = model(input_ids=ids[0][None, :shared], attention_mask=torch.ones_like(types),
                   mm_token_type_ids=types, mm_encoder_outputs=backend.encoder_outputs(visual),
                   use_cache=True, logits_to_keep=1, output_hidden_states=hidden_layer is not None)
    cache = prefix.cache
    if len(prompts) > 1:
        cache.batch_repeat_interleave(len(prompts))
    targets = [torch.tensor(answer_ids(backend, a), device=device) for a in answers]
    tails = [torch.cat([x[shared:], t]) for x, t in zip(ids, targets, strict=True)]
    width = max(len(t) for t in tails)
    pad = backend.tokenizer.pad_token_id
    tail_ids = torch.stack([torch.cat([t, t.new_full((width - len(t),), pad)]) for t in tails])
    tail_mask = torch.stack([torch.arange(width, device=device) < len(t) for t in tails]).long()
    out = model(input_ids=tail_ids, attention_mask=torch.cat([tail_mask.new_ones(len(tails), shared), tail_mask], 1),
                mm_token_type_ids=torch.zeros_like(tail_ids), cache=cache, use_cache=True)
    losses = []
    for i, (x, t) in enumerate(zip(ids, targets, strict=True)):
        start = len(x) - shared - 1
        losses.append(torch.nn.functional.cross_entropy(out.logits[i, start:start + len(t)].float(), t))
    hidden = None
    if hidden_layer is not None:
        hidden = _visual_hidden(prefix.hidden_states, hidden_layer, ids[0][:shared] == backend.image_token_id, visual)
    return torch.stack(losses).mean(), hidden


def _visual_hidden(hidden_states: tuple[torch.Tensor, ...], layer: int, placeholders: torch.Tensor,
                   visual: torch.Tensor) -> torch.Tensor:
    """Row 0's hidden states after `layer` layers at the visual placeholders."""
    if not 0 <= layer < len(hidden_states):
        raise ValueError(f"hidden_layer must be in 0..{len(hidden_states) - 1}, got {layer}.")
    hidden = hidden_states[layer][0, placeholders]
    if hidden.shape[0] != visual.shape[0]:
        raise ValueError(f"{hidden.shape[0]} visual placeholders for {visual.shape[0]} visual tokens.")
    return hidden


def _padded_answer_pass(backend: Molmo2Backend, prompts: list[dict[str, torch.Tensor]], answers: list[str],
                        visual: torch.Tensor, hidden_layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`answer_pass` for prompts without a shared video prefix: all questions in one batched pass.

    Rows are left-padded (pads masked out), so every answer ends the row and only the last few
    positions need logits; RoPE is relative, so the shift changes nothing for the real tokens.
    Every row holds the same visual placeholders, so the clip's visual features are repeated per row.
    """
    device = backend.device
    pad = backend.tokenizer.pad_token_id
    targets = [torch.tensor(answer_ids(backend, a), device=device) for a in answers]
    rows = [torch.cat([p["input_ids"][0], t]) for p, t in zip(prompts, targets, strict=True)]
    types = [torch.cat([p["mm_token_type_ids"][0], torch.zeros_like(t)]) for p, t in zip(prompts, targets, strict=True)]
    width = max(len(r) for r in rows)

    def left_pad(x: torch.Tensor, value: int) -> torch.Tensor:
        return torch.cat([x.new_full((width - len(x),), value), x])

    input_ids = torch.stack([left_pad(r, pad) for r in rows])
    attention_mask = torch.stack([left_pad(torch.ones_like(r), 0) for r in rows])
    mm_token_type_ids = torch.stack([left_pad(t, 0) for t in types])
    keep = max(len(t) for t in targets) + 1
    out = backend.model(input_ids=input_ids, attention_mask=attention_mask, mm_token_type_ids=mm_token_type_ids,
                        mm_encoder_outputs=backend.encoder_outputs(visual.repeat(len(rows), 1)),
                        logits_to_keep=keep, output_hidden_states=hidden_layer is not None)
    losses = []
    for i, t in enumerate(targets):
        logits = out.logits[i, keep - 1 - len(t): keep - 1]
        losses.append(torch.nn.functional.cross_entropy(logits.float(), t))
    hidden = None
    if hidden_layer is not None:
        hidden = _visual_hidden(out.hidden_states, hidden_layer, input_ids[0] == backend.image_token_id, visual)
    return torch.stack(losses).mean(), hidden


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
        from stts_core.synthetic import LABEL_HEADS

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


def stts_loss(
    backend: Molmo2Backend,
    sample: Sample,
    keep_ratio: float,
    aux_weight: float = AUX_LOSS_WEIGHT,
    scorer: str = "learned",
    probe: GroupProbe | None = None,
    probe_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Task + aux loss of one clip through the STTS path (pruned ViT suffix and LLM).

    The vision side does not depend on the question, so it runs once and every question of the
    clip reuses it; the task loss is their mean. scorer "none" is the unmodified model (no scorer,
    no aux loss): the baseline training step.
    """
    prepared = backend.prepare_questions(sample.frames, [q for q, _ in sample.qas], sample.metadata)
    vp = visual_pass(backend, prepared[0], keep_ratio, scorer)
    dense_on = probe is not None and probe_weight > 0 and sample.labels is not None
    task, context = answer_pass(backend, [backend.llm_inputs(inputs, vp.prune) for inputs in prepared],
                                [answer for _, answer in sample.qas], vp.visual,
                                probe.llm_layer if dense_on else None)
    if vp.scores is None:
        aux = task.new_zeros(())
    else:
        aux = temporal_aux_loss(vp.scores, vp.prefix.hidden, prepared[0].groups)
    dense = task.new_zeros(())
    if dense_on:
        labels = torch.as_tensor(sample.labels, device=vp.visual.device)
        if labels.shape[:2] != (prepared[0].num_frames, prepared[0].groups.shape[0]):
            raise ValueError(f"Labels of shape {tuple(labels.shape)} do not match the model's token groups.")
        if vp.prune is not None:
            labels = labels[vp.prune.to(labels.device)]
        dense = probe.loss(vp.visual, labels.reshape(-1, labels.shape[-1]), context)
    return {"loss": task + aux_weight * aux + probe_weight * dense, "task": task.detach(), "aux": aux.detach(),
            "dense": dense.detach(), "visual_rms": vp.visual.detach().float().pow(2).mean().sqrt()}


def lr_at(step: int, total: int, peak: float, warmup: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak.

    With a wall-time budget, progress is whichever is further along, steps or time, so a run cut
    short by its budget still ends with a decayed learning rate.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = max((step - warmup) / max(1, total - warmup), time_fraction)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def save_training_state(out: Path, backend: Molmo2Backend, optimizer: torch.optim.Optimizer, step: int,
                        args: dict, elapsed_s: float = 0.0) -> None:
    """Checkpoint = save_pretrained directory + optimiser moments (safetensors) + step (JSON)."""
    backend.model.save_pretrained(out, safe_serialization=True)
    backend.processor.save_pretrained(out)
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
    (out / "trainer_state.json").write_text(json.dumps(state, indent=2))


def load_training_state(out: Path, backend: Molmo2Backend, optimizer: torch.optim.Optimizer) -> int:
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
    return step


VISION_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.", "temporal_token_scorer.")
CONSTANT_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.")


def set_vision_trainable(model: torch.nn.Module, trainable: bool, frozen_constants: bool = False) -> None:
    """Switch gradient flow into the vision side (ViT, adapter, scorer).

    From scratch the LLM first fits the answer prior; if the vision side trains then, the cheapest
    way to feed the LLM a bias is a constant added to every visual token, which grows until it drowns
    the video (all frames look alike and the auxiliary target collapses to 0). Holding the vision side
    still for a short text warm-up, and keeping its additive constants (biases, LayerNorm shifts) at
    zero, removes that shortcut. The scorer keeps its biases trainable (it needs them to say "static").
    """
    for name, p in model.named_parameters():
        if name.startswith(VISION_PREFIXES):
            constant = name.startswith(CONSTANT_PREFIXES) and p.dim() == 1
            p.requires_grad_(trainable and not (frozen_constants and constant))


def _stage(text: str) -> tuple[int, int, int]:
    try:
        objects, frames, steps = (int(x) for x in text.split(":"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected OBJECTS:FRAMES:STEPS, got {text!r}") from err
    if not (1 <= objects <= 3 and frames >= 4 and steps >= 1):
        raise argparse.ArgumentTypeError(f"need 1-3 objects, at least 4 frames and 1 step, got {text!r}")
    return objects, frames, steps


def stage_at(curriculum: list[tuple[int, int, int]], step: int, frames: int) -> tuple[int, int]:
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


def clip_gradients(model: torch.nn.Module, max_norm: float) -> None:
    """Clip the vision side (ViT, adapter, scorer) and the LLM each to `max_norm`, not jointly.

    The vision side's gradient can be a hundred times the LLM's (dense targets, a rescaled adapter);
    one joint clip then shrinks the LLM's step by the same factor, and it stops learning."""
    vision, language = [], []
    for name, p in model.named_parameters():
        if p.grad is not None:
            (vision if name.startswith(VISION_PREFIXES) else language).append(p)
    for params in (vision, language):
        if params:
            torch.nn.utils.clip_grad_norm_(params, max_norm)


def new_backend(preset: str, device: str | None, seed: int) -> Molmo2Backend:
    """A from-scratch model of a preset with a tokenizer over the synthetic world's words."""
    from stts_core.synthetic import VOCABULARY

    tokenizer = build_tokenizer(VOCABULARY)
    model = build_model(preset, tokenizer, seed=seed, device=device or "cpu")
    processor = build_processor(tokenizer, PRESETS[preset]["image_size"])
    return Molmo2Backend(model, processor, source=f"preset:{preset}")


def quick_accuracy(backend: Molmo2Backend, samples: list[Sample], keep_ratio: float) -> float:
    """Greedy exact-match accuracy on a few held-out samples (progress signal during training)."""
    backend.model.eval()
    correct = 0
    with torch.no_grad():
        for s in samples:
            inputs = backend.prepare(s.frames, s.question, s.metadata)
            vp = visual_pass(backend, inputs, keep_ratio, "none" if keep_ratio >= 1 else "learned")
            gen = backend.generate(inputs, vp.visual, vp.prune, max_new_tokens=4)
            correct += gen.text.strip() == s.answer
    backend.model.train()
    return correct / max(1, len(samples))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stts_core.train", description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint directory or hub id to fine-tune")
    src.add_argument("--preset", choices=sorted(PRESETS), help="train this architecture from scratch")
    p.add_argument("--data", default="synthetic", help="'synthetic' or a JSONL of {video, question, answer}")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps")
    p.add_argument("--batch", type=int, default=8, help="samples per optimiser step (gradient accumulation)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--keep", type=float, default=0.5, help="STTS keep ratio during training")
    p.add_argument("--keep-choices", type=float, nargs="*", default=None,
                   help="if given, each sample draws its keep ratio from these (1.0 = unpruned)")
    p.add_argument("--aux-weight", type=float, default=AUX_LOSS_WEIGHT)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--resume", action="store_true", help="continue from --out's last checkpoint")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this wall time")
    p.add_argument("--vision-lr-scale", type=float, default=1.0,
                   help="learning rate of the ViT, adapter and scorer relative to --lr")
    p.add_argument("--text-warmup", type=int, default=0,
                   help="first N steps train the LLM only (vision side frozen); for training from scratch")
    p.add_argument("--freeze-vision-constants", action="store_true",
                   help="keep ViT/adapter biases and norm affines fixed (for training from scratch)")
    p.add_argument("--dense-weight", type=float, default=0.0,
                   help="synthetic data: weight of the per-group label loss (GroupProbe) for training from scratch")
    p.add_argument("--dense-llm-layer", type=int, default=2,
                   help="the motion target is read from the LLM's hidden states after this many layers")
    p.add_argument("--dense-steps", type=int, default=None,
                   help="apply --dense-weight during the first K steps only (default: all steps)")
    p.add_argument("--curriculum", type=_stage, nargs="*", default=[], metavar="OBJECTS:FRAMES:STEPS",
                   help="synthetic data: easier stages first, e.g. 1:4:800 2:8:800 (at most OBJECTS objects, "
                        "FRAMES frames, for STEPS steps each); then 3 objects and --frames")
    p.add_argument("--grounding", type=int, default=0,
                   help="synthetic data: add N training-only one-step questions per clip (for training from scratch)")
    p.add_argument("--grounding-steps", type=int, default=None,
                   help="ask the --grounding questions during the first K steps only (default: all steps)")
    args = p.parse_args(argv)
    if args.data != "synthetic" and (args.grounding or args.dense_weight or args.curriculum):
        p.error("--grounding, --dense-weight and --curriculum need the synthetic data (their targets come from the scenes)")
    if args.grounding < 0 or args.dense_weight < 0:
        p.error("--grounding and --dense-weight cannot be negative")
    validate_keep_ratio(args.keep)
    if args.dense_llm_layer < 0:
        p.error("--dense-llm-layer cannot be negative")
    for r in args.keep_choices or []:
        validate_keep_ratio(r)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    resume = args.resume and (args.out / "trainer_state.json").exists()
    if resume:
        backend = load_molmo2(str(args.out), device=args.device)
    elif args.preset:
        backend = new_backend(args.preset, args.device, args.seed)
    else:
        backend = load_molmo2(args.model, device=args.device)
    model = backend.model
    model.train()
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        groups.setdefault((name.startswith(VISION_PREFIXES), param.dim() >= 2), []).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": ps, "weight_decay": args.weight_decay if matrix else 0.0,
          "lr_scale": args.vision_lr_scale if vision else 1.0} for (vision, matrix), ps in groups.items()],
        lr=args.lr, betas=(0.9, 0.98))
    step = load_training_state(args.out, backend, optimizer) if resume else 0
    probe = probe_optimizer = None
    if args.dense_weight > 0:
        layers = backend.model.config.text_config.num_hidden_layers
        if args.dense_llm_layer > layers:
            p.error(f"--dense-llm-layer must be at most the LLM's {layers} layers, got {args.dense_llm_layer}")
        probe = GroupProbe(backend.model.config.text_config.hidden_size, args.dense_llm_layer).to(backend.device)
        if resume and (args.out / "probe.safetensors").exists():
            probe.load_state_dict(load_file(str(args.out / "probe.safetensors")))
        probe_optimizer = torch.optim.AdamW(probe.parameters(), lr=args.lr, weight_decay=0.0)
    val_grounding: list[Sample] = []
    stage = (3, args.frames)
    if args.data == "synthetic":
        grid = None
        if args.dense_weight > 0:
            blank = np.zeros((args.frames, 252, 252, 3), dtype=np.uint8)
            grid = backend.prepare(blank, "?").grid
        stage = stage_at(args.curriculum, step, args.frames)
        data = synthetic_samples(step * args.batch, stage[1], args.grounding, grid, stage[0])
        from stts_core.synthetic import SPLIT_SEEDS, grounding_questions, make_clip

        clips = [make_clip(SPLIT_SEEDS["val"] + i, num_frames=args.frames) for i in range(48)]
        val = [Sample(c.frames, c.qas[0].question, c.qas[0].answer) for c in clips]
        if args.grounding:
            val_grounding = [Sample(c.frames, qa.question, qa.answer) for c in clips
                             for qa in grounding_questions(c.scene, np.random.default_rng([c.seed, 1]), 1)]
    else:
        data = jsonl_samples(Path(args.data), args.frames, args.seed, step * args.batch)
        val = []
    rng = random.Random(args.seed + step)
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "train_log.jsonl").open("a")
    spent_before = float(json.loads((args.out / "trainer_state.json").read_text()).get("elapsed_s", 0.0)) if resume else 0.0
    started = time.perf_counter() - spent_before
    budget_s = args.max_minutes * 60 if args.max_minutes else None
    bar = tqdm(total=args.steps, initial=step, desc="train", dynamic_ncols=True)
    while step < args.steps:
        set_vision_trainable(model, step >= args.text_warmup, args.freeze_vision_constants)
        elapsed = time.perf_counter() - started
        for group in optimizer.param_groups:
            group["lr"] = group["lr_scale"] * lr_at(step, args.steps, args.lr, args.warmup,
                                                    elapsed / budget_s if budget_s else 0.0)
        optimizer.zero_grad(set_to_none=True)
        dense_weight = args.dense_weight if args.dense_steps is None or step < args.dense_steps else 0.0
        task = aux = visual_rms = dense = 0.0
        for _ in range(args.batch):
            keep = rng.choice(args.keep_choices) if args.keep_choices else args.keep
            if args.data == "synthetic" and stage_at(args.curriculum, step, args.frames) != stage:
                stage = stage_at(args.curriculum, step, args.frames)
                tqdm.write(f"step {step}: clips of at most {stage[0]} objects and {stage[1]} frames from here on")
                data = synthetic_samples(step * args.batch, stage[1], args.grounding, grid, stage[0])
            sample = next(data)
            if args.grounding_steps is None or step < args.grounding_steps:
                sample.more = [*sample.more, *sample.grounding]
            parts = stts_loss(backend, sample, keep, args.aux_weight, probe=probe, probe_weight=dense_weight)
            (parts["loss"] / args.batch).backward()
            dense += float(parts["dense"]) / args.batch
            task += float(parts["task"]) / args.batch
            aux += float(parts["aux"]) / args.batch
            visual_rms += float(parts["visual_rms"]) / args.batch
        clip_gradients(model, 1.0)
        optimizer.step()
        if probe_optimizer is not None and dense_weight > 0:
            probe_optimizer.step()
            probe_optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        bar.set_postfix(task=f"{task:.3f}", aux=f"{aux:.4f}")
        record = {"step": step, "task_loss": task, "aux_loss": aux, "dense_loss": dense, "visual_rms": round(visual_rms, 4),
                  "lr": lr_at(step - 1, args.steps, args.lr, args.warmup, elapsed / budget_s if budget_s else 0.0),
                  "elapsed_s": round(time.perf_counter() - started, 1)}
        out_of_time = budget_s is not None and time.perf_counter() - started > budget_s
        if val and (step % args.eval_every == 0 or step == args.steps or out_of_time):
            record["val_acc_unpruned"] = quick_accuracy(backend, val, 1.0)
            record["val_acc_keep"] = quick_accuracy(backend, val, args.keep)
            if val_grounding:
                record["val_acc_grounding"] = quick_accuracy(backend, val_grounding, 1.0)
            tqdm.write(json.dumps(record))
        log.write(json.dumps(record) + "\n")
        log.flush()
        if step % args.save_every == 0 or step == args.steps or out_of_time:
            save_training_state(args.out, backend, optimizer, step, vars(args) | {"out": str(args.out)},
                                time.perf_counter() - started)
            if probe is not None:
                save_file({k: v.contiguous() for k, v in probe.state_dict().items()}, str(args.out / "probe.safetensors"))
        if out_of_time:
            tqdm.write(f"stopping at step {step}: --max-minutes reached")
            break
    bar.close()
    log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
