"""`stts train` / `python -m stts_core.train`: train a checkpoint with STTS (task loss + 0.5 x the
auxiliary temporal loss); see `stts_core.train.loop`."""

from __future__ import annotations

import argparse
import dataclasses
import json

from stts_core.cli import common as cli
from stts_core.data.synthetic import WORLDS
from stts_core.methods.losses import AUX_LOSS_FORMS, AUX_LOSS_WEIGHT
from stts_core.models.base import ModelLoadError
from stts_core.models.registry import list_families
from stts_core.train import loop
from stts_core.train.config import TrainConfig
from stts_core.train.from_scratch import parse_stage
from stts_core.train.objective import LOGIT_L2


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("stts train", loop.__doc__, [
        cli.model_options(), cli.stts_options(keep=(0.5,), scorer=("learned",), frames_default=16, new_tokens=4),
        cli.output_options()])
    p.set_defaults(model=None)
    p.add_argument("--preset", choices=sorted(x for f in list_families() for x in f.presets), help="train this architecture from scratch (instead of --model)")
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


def config_from(p: argparse.ArgumentParser, argv: list[str] | None) -> tuple[TrainConfig, argparse.Namespace]:
    """Parse into a TrainConfig; combinations a single flag cannot check are argparse errors (exit 2)."""
    args = p.parse_args(argv)
    if len(args.scorer) != 1:
        p.error("training uses one --scorer")
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    values.update(keep=tuple(args.keep), scorer=args.scorer[0])
    try:
        return TrainConfig(**values).check(), args
    except ValueError as err:
        p.error(str(err))


def main(argv: list[str] | None = None) -> int:
    cfg, args = config_from(build_parser(), argv)
    try:
        record = loop.train(cfg)
    except (ModelLoadError, ValueError, OSError) as err:
        cli.exit_with_error(str(err))
    if args.json is not None and record:
        args.json.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
