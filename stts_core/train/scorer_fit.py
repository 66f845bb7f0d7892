"""`python -m stts_core.scorer_fit`: fit a checkpoint's scorer alone to the auxiliary target.

Everything but the scorer is frozen and only the ViT prefix (blocks 0..k) runs, so a step costs a
small part of a training step (on the 168 px built-in model, 0.06 s per clip against 0.16 s). The
target is the auxiliary loss's own, 1 - cos to the previous frame on block k's features, so the fit
teaches exactly what end-to-end training asks of the scorer, without the task loss's gradient through
the attention bias (noisier, and for a fresh scorer much larger) in the way. Uses: a fresh scorer on a
pretrained VLM before STTS fine-tuning, or a scorer that end-to-end training left near chance. The
result is a normal checkpoint (`backend.save`) whose config records the loss form it was fitted with.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm import tqdm

from stts_core.cli import common as cli
from stts_core.data.synthetic import WORLDS
from stts_core.methods.losses import AUX_LOSS_FORMS, logits_of, temporal_aux_loss, temporal_redundancy
from stts_core.models.base import ModelLoadError, VideoBackend
from stts_core.models.molmo2.backend import SCORER_PREFIX
from stts_core.train.loop import lr_at
from stts_core.train.samples import Sample, jsonl_samples, synthetic_samples, synthetic_validation


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m stts_core.scorer_fit", __doc__.split("\n\n")[0], [cli.model_options(required=True), cli.output_options()])
    p.add_argument("--out", type=cli.file_path, required=True, help="checkpoint directory to write")
    p.add_argument("--data", default="synthetic", help="'synthetic' or a JSONL of {video, ...} (only the videos are read)")
    p.add_argument("--world", choices=WORLDS, default="plain", help="synthetic data: which world renders the clips")
    p.add_argument("--frames", type=cli.whole_number(2, 512), default=16)
    p.add_argument("--steps", type=cli.whole_number(1), default=2000, help="optimiser steps")
    p.add_argument("--batch", type=cli.whole_number(1), default=4, help="clips per step")
    p.add_argument("--lr", type=cli.positive_float, default=1e-3)
    p.add_argument("--warmup", type=cli.whole_number(0), default=50)
    p.add_argument("--aux-loss", choices=AUX_LOSS_FORMS, default="bce",
                   help="the auxiliary loss's form (bce: see losses.AUX_LOSS_FORMS)")
    p.add_argument("--reset", action="store_true",
                   help="start from a freshly initialised scorer (always so for a checkpoint without scorer weights)")
    p.add_argument("--eval-every", type=cli.whole_number(1), default=250)
    p.add_argument("--seed", type=cli.whole_number(0), default=0)
    p.add_argument("--threads", type=cli.whole_number(1), default=None)
    return p


def freeze_all_but_scorer(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """requires_grad only on the scorer; -> its parameters."""
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(SCORER_PREFIX))
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


def clip_stream(args: argparse.Namespace) -> tuple[Iterator[Sample], list[Sample]]:
    """Training clips and (synthetic data only) the validation split's clips."""
    if args.data == "synthetic":
        val, _ = synthetic_validation(args.frames, False, args.world)
        return synthetic_samples(0, args.frames, world=args.world), val[:16]
    return jsonl_samples(Path(args.data), args.frames, args.seed, 0), []


def fit(backend: VideoBackend, args: argparse.Namespace) -> dict:
    """The loop: --steps AdamW steps of --batch clips each; -> the last log record."""
    params = freeze_all_but_scorer(backend.model)
    if args.reset or not backend.has_learned_scorer:  # a checkpoint without scorer weights starts fresh
        backend.model.temporal_token_scorer.reset_parameters()
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    data, val = clip_stream(args)
    args.out.mkdir(parents=True, exist_ok=True)
    record: dict = {}
    started = time.perf_counter()
    with (args.out / "scorer_fit_log.jsonl").open("a") as log:
        for step in tqdm(range(1, args.steps + 1), desc="scorer fit", dynamic_ncols=True):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step - 1, args.steps, args.lr, args.warmup)
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(args.batch):
                loss = clip_loss(backend, next(data).frames, args.aux_loss) / args.batch
                loss.backward()
                total += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            record = {"step": step, "aux_loss": round(total, 6), "elapsed_s": round(time.perf_counter() - started, 1)}
            if val and (step % args.eval_every == 0 or step == args.steps):
                record |= target_agreement(backend, val)
                tqdm.write(json.dumps(record))
            log.write(json.dumps(record) + "\n")
            log.flush()
    backend.model.config.stts["aux_loss"] = args.aux_loss
    backend.save(args.out)
    return record


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.data != "synthetic" and not Path(args.data).is_file():
        p.error(f"--data: no such file {args.data!r} (give 'synthetic' or a JSONL file)")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from stts_core.models.loading import load_backend

    try:
        backend = load_backend(args.model, device=args.device,
                               dtype=cli.torch_dtype(args.dtype, args.device or "cpu") if args.dtype else None,
                               trust_remote_code=args.trust_remote_code)
        record = fit(backend, args)
    except (ModelLoadError, ValueError, OSError) as err:
        cli.exit_with_error(str(err))
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
