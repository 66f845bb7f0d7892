"""`stts fit-scorer` / `python -m stts_core.scorer_fit`: fit a checkpoint's scorer alone to the auxiliary
target (see `stts_core.train.scorer_fit`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from stts_core.cli import common as cli
from stts_core.data.synthetic import WORLDS
from stts_core.methods.losses import AUX_LOSS_FORMS
from stts_core.models.base import ModelLoadError
from stts_core.train import scorer_fit
from stts_core.train.scorer_fit import FitConfig, fit


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("stts fit-scorer", scorer_fit.__doc__.split("\n\n")[0], [cli.model_options(required=True), cli.output_options()])
    p.add_argument("--out", type=cli.file_path, required=True, help="checkpoint directory to write")
    p.add_argument("--data", default="synthetic", help="'synthetic' or a JSONL of {video, ...} (only the videos are read)")
    p.add_argument("--world", choices=WORLDS, default="plain", help="synthetic data: which world renders the clips")
    p.add_argument("--frames", type=cli.whole_number(2, cli.MAX_FRAMES), default=16)
    p.add_argument("--steps", type=cli.whole_number(1), default=2000, help="optimiser steps")
    p.add_argument("--batch", type=cli.whole_number(1), default=4, help="clips per step")
    p.add_argument("--lr", type=cli.positive_float, default=1e-3)
    p.add_argument("--warmup", type=cli.whole_number(0), default=50)
    p.add_argument("--aux-loss", choices=AUX_LOSS_FORMS, default="bce",
                   help="the auxiliary loss's form (bce: see losses.AUX_LOSS_FORMS)")
    p.add_argument("--reset", action="store_true",
                   help="start from a freshly initialised scorer (always so for a checkpoint without scorer weights)")
    p.add_argument("--scorer-hidden", type=cli.whole_number(1), default=None,
                   help="a fresh MLP this wide (default: the checkpoint's scorer); the attention pooler is kept "
                        "from the checkpoint unless --reset")
    p.add_argument("--eval-every", type=cli.whole_number(1), default=250)
    p.add_argument("--seed", type=cli.whole_number(0), default=0)
    p.add_argument("--threads", type=cli.whole_number(1), default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.data != "synthetic" and not Path(args.data).is_file():
        p.error(f"--data: no such file {args.data!r} (give 'synthetic' or a JSONL file)")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    backend = cli.backend_from_args(args)
    cfg = FitConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FitConfig)})
    try:
        record = fit(backend, cfg)
    except (ModelLoadError, ValueError, OSError) as err:
        cli.exit_with_error(str(err))
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
