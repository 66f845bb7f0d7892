"""Which loss term drives the learned scorer's logits into saturation?

Measures, on training clips of the synthetic world:

1. ``shipped``: the checkpoint's scorer as it is: logit range, the auxiliary target's range, and the
   gradient of each loss term (task loss through the attention bias, auxiliary MSE) with respect to
   the scorer's logits and its output bias ``mlp.w3.bias``.
2. ``fresh``: the same body with a freshly initialised scorer (the reference initialisation): the
   same per-term gradients before any training.
3. ``ablation``: a few optimiser steps from the fresh scorer with one term changed at a time
   (``full``, ``task_only`` = no auxiliary loss, ``aux_only`` = the bias sees detached scores so the
   task loss cannot reach the scorer, ``no_detach`` = the scorer reads block k without a
   stop-gradient, and any extra variants given), tracking the logit median and the output bias.

Usage: PYTHONPATH=. python scripts/diagnose_saturation.py --model assets/stts-tiny --steps 80 --warmup 40 \
    --batch 4 --json out.json (the numbers in assets/stts-tiny/README.md)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from stts_core.methods.budget import attention_bias, select_groups
from stts_core.methods.losses import temporal_aux_loss, temporal_redundancy

# sigmoid(-6): a static group's auxiliary optimum sits at logit -6 instead of at minus infinity.
FLOOR = 1.0 / (1.0 + math.exp(6.0))


@dataclass
class Variant:
    name: str
    aux_weight: float = 0.5
    task_to_scorer: bool = True  # False: the bias is built from detached scores
    detach_input: bool = True  # the scorer reads block k through a stop-gradient
    logit_bound: float | None = None  # soft bound on the logits (bound * tanh(logit / bound))
    target_floor: float = 0.0  # the auxiliary target clamped to at least this
    logit_l2: float = 0.0  # weight of mean(logit^2) added to the auxiliary loss (anchors the logit scale)
    barrier: float | None = None  # logits beyond +-barrier pay 1e-3 x mean(excess^2) (free inside)


VARIANTS = {
    "full": Variant("full"),
    "task_only": Variant("task_only", aux_weight=0.0),
    "aux_only": Variant("aux_only", task_to_scorer=False),
    "no_detach": Variant("no_detach", detach_input=False),
    "no_detach_bounded": Variant("no_detach_bounded", detach_input=False, logit_bound=6.0),
    "full_floor": Variant("full_floor", target_floor=FLOOR),
    "no_detach_floor": Variant("no_detach_floor", detach_input=False, target_floor=FLOOR),
    "no_detach_l2_1e-4": Variant("no_detach_l2_1e-4", detach_input=False, logit_l2=1e-4),
    "no_detach_l2_1e-5": Variant("no_detach_l2_1e-5", detach_input=False, logit_l2=1e-5),
    "full_l2_1e-4": Variant("full_l2_1e-4", logit_l2=1e-4),
    "no_detach_barrier8": Variant("no_detach_barrier8", detach_input=False, barrier=8.0),
}


def answer_fn(backend) -> Callable:
    return backend.answer_pass


def clips(start: int, count: int, frames: int) -> list:
    from stts_core.data.synthetic import SPLIT_SEEDS, make_clip

    return [make_clip(SPLIT_SEEDS["train"] + start + i, num_frames=frames) for i in range(count)]


def forward(backend, clip, keep: float, variant: Variant) -> dict[str, torch.Tensor]:
    """One clip through the STTS path with the variant's gradient routing; returns the pieces."""
    questions = [qa.question for qa in clip.qas]
    prepared = backend.prepare_questions(clip.frames, questions)
    inputs = prepared[0]
    prefix = backend.vit_prefix(inputs)
    features = prefix.hidden.detach() if variant.detach_input else prefix.hidden
    logits = backend.model.temporal_token_scorer.logits(features, inputs.groups)
    if variant.logit_bound:
        logits = variant.logit_bound * torch.tanh(logits / variant.logit_bound)
    scores = torch.sigmoid(logits)
    keep_mask = select_groups(scores, keep)
    prune = None if bool(keep_mask.all()) else keep_mask
    bias = None
    if prune is not None:
        bias_scores = scores if variant.task_to_scorer else scores.detach()
        bias = attention_bias(bias_scores, inputs.groups, inputs.patches_per_frame)
    suffix = backend.vit_suffix(prefix, inputs, prune, bias)
    visual = backend.connect(suffix, inputs, prune)
    prompts = [backend.llm_inputs(p, prune) for p in prepared]
    task, _ = answer_fn(backend)(prompts, [qa.answer for qa in clip.qas], visual)
    target = temporal_redundancy(prefix.hidden, inputs.groups)
    if variant.target_floor:
        aux = F.mse_loss(scores[1:], target.clamp(min=variant.target_floor))
    else:
        aux = temporal_aux_loss(scores, prefix.hidden, inputs.groups)
    if variant.logit_l2:
        aux = aux + variant.logit_l2 / variant.aux_weight * logits[1:].pow(2).mean()
    if variant.barrier:
        excess = (logits[1:].abs() - variant.barrier).clamp(min=0)
        aux = aux + 1e-3 / variant.aux_weight * excess.pow(2).mean()
    s, y = scores[1:].detach().reshape(-1), target.reshape(-1)
    corr = float(torch.corrcoef(torch.stack([s, y]))[0, 1]) if s.std() > 0 and y.std() > 0 else float("nan")
    return {"logits": logits, "scores": scores, "task": task, "aux": aux, "target": target, "corr": corr,
            "feature_rms": prefix.hidden.detach().pow(2).mean().sqrt()}


def quantiles(x: torch.Tensor) -> dict[str, float]:
    q = torch.quantile(x.detach().float().reshape(-1), torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]))
    return dict(zip(("min", "p10", "median", "p90", "max"), (round(float(v), 4) for v in q), strict=True))


def term_gradients(backend, batch: list, keep: float, variant: Variant) -> dict:
    """Per loss term: d term / d logits (frames >= 1) and d term / d mlp.w3.bias, summed over clips."""
    w3b = backend.model.temporal_token_scorer.mlp.w3.bias
    out = {"task": [], "aux": []}
    bias_grad = {"task": 0.0, "aux": 0.0}
    logits_all, target_all, corr = [], [], []
    for clip in batch:
        parts = forward(backend, clip, keep, variant)
        logits = parts["logits"]
        logits_all.append(logits[1:].detach())
        target_all.append(parts["target"])
        s, y = parts["scores"][1:].detach().reshape(-1), parts["target"].reshape(-1)
        if s.std() > 0 and y.std() > 0:
            corr.append(float(torch.corrcoef(torch.stack([s, y]))[0, 1]))
        for name, weight in (("task", 1.0), ("aux", variant.aux_weight)):
            loss = weight * parts[name]
            if not loss.requires_grad:
                continue
            g_logit, g_bias = torch.autograd.grad(loss, [logits, w3b], retain_graph=True, allow_unused=True)
            if g_logit is not None:
                out[name].append(g_logit[1:].reshape(-1))
            bias_grad[name] += 0.0 if g_bias is None else float(g_bias.sum())
    result = {"logits": quantiles(torch.cat([x.reshape(-1) for x in logits_all])),
              "aux_target": quantiles(torch.cat([x.reshape(-1) for x in target_all])),
              "corr_score_target": round(float(np.mean(corr)), 3) if corr else None}
    for name, grads in out.items():
        if not grads:
            continue
        g = torch.cat(grads)
        # Gradient descent moves a logit by -lr * grad: "down" = the share of groups it pushes lower.
        result[f"dlogit_{name}"] = {"mean": float(g.mean()), "abs_mean": float(g.abs().mean()),
                                    "share_pushed_down": round(float((g > 0).float().mean()), 3),
                                    "sum": float(g.sum())}
        result[f"dw3bias_{name}"] = bias_grad[name]
    return result


def train_variant(backend, variant: Variant, steps: int, batch: int, lr: float, keep_choices: list[float],
                  start: int, frames: int, log_every: int, warmup: int = 0) -> list[dict]:
    """`steps` AdamW steps on all parameters with the variant's routing; the logit track per step."""
    model = backend.model
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.98),
                            weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / max(1, warmup)))
    rng = random.Random(0)
    track = []
    index = start
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        meds, tasks, auxes, rms, corrs = [], [], [], [], []
        for clip in clips(index, batch, frames):
            parts = forward(backend, clip, rng.choice(keep_choices), variant)
            loss = parts["task"] + variant.aux_weight * parts["aux"]
            (loss / batch).backward()
            meds.append(float(parts["logits"][1:].detach().median()))
            tasks.append(float(parts["task"].detach()))
            auxes.append(float(parts["aux"].detach()))
            rms.append(float(parts["feature_rms"]))
            corrs.append(parts["corr"])
        index += batch
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            record = {"step": step + 1, "logit_median": round(float(np.median(meds)), 3),
                      "w3_bias": round(float(model.temporal_token_scorer.mlp.w3.bias), 3),
                      "task": round(float(np.mean(tasks)), 4), "aux": round(float(np.mean(auxes)), 5),
                      "block_k_rms": round(float(np.mean(rms)), 3),
                      "corr_score_target": round(float(np.nanmean(corrs)), 3) if not np.isnan(corrs).all() else None}
            print(variant.name, json.dumps(record), flush=True)
            track.append(record)
    model.eval()
    return track


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="assets/stts-tiny")
    p.add_argument("--clips", type=int, default=8, help="training clips for the gradient measurements")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--keep", type=float, default=0.5)
    p.add_argument("--steps", type=int, default=40, help="optimiser steps per ablation variant (0: skip)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--variants", nargs="*", default=["full", "task_only", "aux_only", "no_detach"],
                   choices=sorted(VARIANTS))
    p.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps")
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from stts_core.models.loading import load_backend

    backend = load_backend(args.model, device="cpu")
    report: dict = {"model": args.model, "settings": vars(args)}
    batch = clips(0, args.clips, args.frames)
    started = time.perf_counter()
    report["shipped"] = term_gradients(backend, batch, args.keep, VARIANTS["full"])
    print("shipped", json.dumps(report["shipped"]), flush=True)
    torch.manual_seed(0)
    backend.model.temporal_token_scorer.reset_parameters()  # the reference initialisation
    initial = copy.deepcopy(backend.model.state_dict())
    report["fresh"] = term_gradients(backend, batch, args.keep, VARIANTS["full"])
    print("fresh", json.dumps(report["fresh"]), flush=True)
    report["ablation"] = {}
    for name in args.variants if args.steps else []:
        print("variant", name, flush=True)
        backend.model.load_state_dict(initial)
        torch.manual_seed(0)
        report["ablation"][name] = train_variant(backend, VARIANTS[name], args.steps, args.batch, args.lr,
                                                 [1.0, 0.5, 0.3], 100_000, args.frames, args.log_every,
                                                 args.warmup)
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
