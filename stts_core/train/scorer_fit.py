"""`stts fit-scorer`: fit a checkpoint's scorer alone to the auxiliary target.

Everything but the scorer is frozen and only the ViT prefix (blocks 0..k) runs, so a step costs a
small part of a training step (on the 168 px built-in model, 0.06 s per clip against 0.16 s). The
target is the auxiliary loss's own, 1 - cos to the previous frame on block k's features, so the fit
teaches exactly what end-to-end training asks of the scorer, without the task loss's gradient through
the attention bias (noisier, and for a fresh scorer much larger) in the way. Uses: a fresh scorer on a
pretrained VLM before STTS fine-tuning, or a scorer that end-to-end training left near chance. The
result is a normal checkpoint (`backend.save`) whose config records the loss form it was fitted with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from stts_core.methods.losses import logits_of, temporal_aux_loss, temporal_redundancy
from stts_core.methods.scorers import TokenScorer
from stts_core.models.base import VideoBackend
from stts_core.models.registry import family_of
from stts_core.train.loop import lr_at
from stts_core.train.samples import Sample, jsonl_samples, synthetic_samples, synthetic_validation


@dataclass
class FitConfig:
    """What a scorer fit runs with (`stts fit-scorer` builds it from its flags)."""

    model: str  # checkpoint whose scorer is fitted
    out: Path  # checkpoint directory to write
    data: str = "synthetic"  # "synthetic" or a JSONL of {video, ...} (only the videos are read)
    world: str = "plain"  # synthetic data: which world renders the clips
    frames: int = 16
    steps: int = 2000  # optimiser steps
    batch: int = 4  # clips per step
    lr: float = 1e-3
    warmup: int = 50
    aux_loss: str = "bce"  # the auxiliary loss's form (methods.losses.AUX_LOSS_FORMS)
    reset: bool = False  # start from a freshly initialised scorer (always so without scorer weights)
    scorer_hidden: int | None = None  # a fresh MLP this wide (None: the checkpoint's); the pooler kept unless reset
    eval_every: int = 250
    seed: int = 0


def rebuild_scorer(backend: VideoBackend, hidden: int, keep_pooler: bool) -> bool:
    """Replace the scorer's MLP with a freshly initialised one `hidden` wide, recorded in the checkpoint's
    `stts.scorer_hidden` (so it loads back at that width); the attention pooler is kept when `keep_pooler`
    (its features are the part the MLP reads), else re-initialised too. False when the width already is."""
    old = backend.scorer
    if old.mlp.w1.out_features == hidden:
        return False
    pooler = old.patch_token_pooler
    fresh = TokenScorer(pooler.wq.in_features, pooler.num_heads, hidden)
    if keep_pooler:
        fresh.patch_token_pooler.load_state_dict(pooler.state_dict())
    backend.model.temporal_token_scorer = fresh.to(device=pooler.wq.weight.device, dtype=pooler.wq.weight.dtype)
    backend.model.config.stts["scorer_hidden"] = hidden
    return True


def freeze_all_but_scorer(backend: VideoBackend) -> list[torch.nn.Parameter]:
    """requires_grad only on the scorer (the family's scorer parameters); -> its parameters."""
    params = []
    prefix = family_of(backend).scorer_prefix
    for name, p in backend.model.named_parameters():
        p.requires_grad_(name.startswith(prefix))
        if p.requires_grad:
            params.append(p)
    if not params:
        raise ValueError("This model has no learned scorer to fit.")
    return params


def clip_loss(backend: VideoBackend, frames, form: str) -> torch.Tensor:
    """The auxiliary loss of one clip, with gradient into the scorer only."""
    inputs = backend.prepare(frames, "?")
    with torch.no_grad():
        prefix = backend.vit_prefix(inputs)
    scores = backend.learned_scores(prefix, inputs)
    return temporal_aux_loss(scores, prefix.hidden, inputs.groups, form)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two flat tensors (ties broken by position; NaN if one is constant)."""
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    if bool((a == a[0]).all()) or bool((b == b[0]).all()):
        return float("nan")
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


@torch.no_grad()
def target_agreement(backend: VideoBackend, clips: list[Sample]) -> dict[str, float]:
    """How well the scores follow the auxiliary target on held-out clips: rank correlation over all
    prunable groups, and the logit range (a collapse shows as a median far below -10)."""
    scores, targets = [], []
    for clip in clips:
        inputs = backend.prepare(clip.frames, "?")
        prefix = backend.vit_prefix(inputs)
        scores.append(backend.learned_scores(prefix, inputs)[1:].float().flatten())
        targets.append(temporal_redundancy(prefix.hidden, inputs.groups).flatten())
    s, t = torch.cat(scores), torch.cat(targets)
    logits = logits_of(s)
    return {"val_rank_corr": round(rank_correlation(s, t), 4), "val_logit_median": round(float(logits.median()), 3)}


def clip_stream(cfg: FitConfig) -> tuple[Iterator[Sample], list[Sample]]:
    """Training clips and (synthetic data only) the validation split's clips."""
    if cfg.data == "synthetic":
        val, _ = synthetic_validation(cfg.frames, False, cfg.world)
        return synthetic_samples(0, cfg.frames, world=cfg.world), val[:16]
    return jsonl_samples(Path(cfg.data), cfg.frames, cfg.seed, 0), []


def fit(backend: VideoBackend, cfg: FitConfig) -> dict:
    """The loop: --steps AdamW steps of --batch clips each; -> the last log record."""
    keep_pooler = backend.has_learned_scorer and not cfg.reset
    rebuilt = cfg.scorer_hidden is not None and rebuild_scorer(backend, cfg.scorer_hidden, keep_pooler)
    params = freeze_all_but_scorer(backend)
    if not rebuilt and (cfg.reset or not backend.has_learned_scorer):  # no scorer weights: start fresh
        backend.scorer.reset_parameters()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    data, val = clip_stream(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    record: dict = {}
    started = time.perf_counter()
    with (cfg.out / "scorer_fit_log.jsonl").open("a") as log:
        for step in tqdm(range(1, cfg.steps + 1), desc="scorer fit", dynamic_ncols=True):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step - 1, cfg.steps, cfg.lr, cfg.warmup)
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(cfg.batch):
                loss = clip_loss(backend, next(data).frames, cfg.aux_loss) / cfg.batch
                loss.backward()
                total += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            record = {"step": step, "aux_loss": round(total, 6), "elapsed_s": round(time.perf_counter() - started, 1)}
            if val and (step % cfg.eval_every == 0 or step == cfg.steps):
                record |= target_agreement(backend, val)
                tqdm.write(json.dumps(record))
            log.write(json.dumps(record) + "\n")
            log.flush()
    backend.model.config.stts["aux_loss"] = cfg.aux_loss
    backend.save(cfg.out)
    return record
