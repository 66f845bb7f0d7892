"""`stts bench` / `python -m stts_core.bench`: how much faster STTS makes a video VLM, stage by stage
(the measurement itself: `stts_core.analysis.bench`)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from stts_core.analysis import bench
from stts_core.analysis.bench import BenchConfig, _log, format_table, make_report, run_bench, write_html
from stts_core.cli import common as cli
from stts_core.methods.packing import ATTENTION_BACKENDS, resolve_backend
from stts_core.models.base import VideoBackend
from stts_core.models.registry import family_of, list_families
from stts_core.pipeline import resolve_scorer


def _choices(field: str) -> tuple[str, ...]:
    """Every family's serving choices of one kind (a family refuses the ones it lacks, in `_setup`)."""
    return tuple(dict.fromkeys(c for f in list_families() for c in getattr(f, field)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The shared vocabulary (stts_core.cli) plus the bench's own flags; --preset or --model."""
    p = cli.parser("stts bench", bench.__doc__, [
        cli.model_options(required=False),
        cli.stts_options(keep=(1.0, 0.5, 0.3), frames_default=(16, 32), new_tokens=8, multi_frames=True),
        cli.output_options()])
    p.set_defaults(model=None)
    p.add_argument("--preset", choices=[x for f in list_families() for x in f.presets], metavar="PRESET",
                   help="build this architecture with random weights (" +
                        "; ".join(f"{f.name}: {', '.join(f.presets)}" for f in list_families()) + ")")
    p.add_argument("--repeats", type=cli.whole_number(1), default=5, help="timed baseline/STTS pairs per cell")
    p.add_argument("--warmup", type=cli.whole_number(0), default=1, help="untimed pairs before the timed ones")
    p.add_argument("--train", action="store_true", help="time a forward + backward training step instead")
    p.add_argument("--grad-checkpoint", action="store_true",
                   help="with --train: recompute activations in backward (both runs), for long videos on one GPU")
    p.add_argument("--attention-impl", "--attention", dest="attention_impl",
                   choices=ATTENTION_BACKENDS, default="auto",
                   help="packed attention kernel of the STTS path")
    p.add_argument("--serving", choices=_choices("serving_choices"), default="eager",
                   help="LLM decoding: eager (the stock loop), static (static KV cache), compiled (static + CUDA graphs)")
    p.add_argument("--prefill", choices=_choices("prefill_choices"), default="sdpa",
                   help="LLM prefill attention: sdpa (dense mask) or flex (block mask from the image-token spans)")
    p.add_argument("--cpu-preprocess", action="store_true",
                   help="resize and normalise on the CPU even when the model runs on a GPU (default: on the model's device)")
    p.add_argument("--threads", type=cli.whole_number(1), default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--html", type=Path, default=None, help="write a speedup chart here")
    args = p.parse_args(argv)
    if (args.preset is None) == (args.model is None):
        p.error("give exactly one of --preset (random weights) or --model (a checkpoint)")
    args.scorers = list(dict.fromkeys(args.scorer))  # each method runs after the same baseline in every cell
    if args.train and len(args.scorers) != 1:
        p.error("--scorer takes one method with --train (a training step compares one method with the baseline)")
    args.scorer = args.scorers[0]
    if args.max_new_tokens < 2:
        p.error("--max-new-tokens must be at least 2 (decoding per token needs a second token)")
    if args.grad_checkpoint and not args.train:
        p.error("--grad-checkpoint only applies with --train")
    return args


def _setup(args: argparse.Namespace) -> tuple[VideoBackend, torch.device, torch.dtype]:
    """Device, dtype and backend from the parsed flags; a one-line error (exit 2) when they cannot be had."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        cli.exit_with_error("--device cuda asked for, but CUDA is not available")
    dtype = cli.torch_dtype(args.dtype, device.type)
    _log(f"building {'preset ' + args.preset if args.preset else args.model} on {device} ({dtype})")
    try:
        backend = cli.backend_from_args(args, str(device), preset=args.preset)
        resolve_backend(args.attention_impl, device)
    except (ValueError, RuntimeError, OSError) as err:
        cli.exit_with_error(str(err))
    backend.attention_impl = args.attention_impl
    backend.preprocess_on_device = not args.cpu_preprocess
    backend.set_gradient_checkpointing(args.grad_checkpoint)
    family = family_of(backend)
    if args.serving not in family.serving_choices or args.prefill not in family.prefill_choices:
        cli.exit_with_error(f"The {family.label} family serves with --serving {'/'.join(family.serving_choices)} and "
                            f"--prefill {'/'.join(family.prefill_choices)}.")
    if family.serving is not None:
        family.serving(backend, args.serving, args.prefill)
    return backend, device, dtype


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    backend, device, dtype = _setup(args)
    cfg = BenchConfig(frames=list(args.frames), keeps=list(args.keep), repeats=args.repeats, warmup=args.warmup,
                      train=args.train, scorer=args.scorer, new_tokens=args.max_new_tokens, seed=args.seed,
                      grad_checkpoint=args.grad_checkpoint, scorers=tuple(args.scorers))
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    scorer_used, notes = resolve_scorer(backend, cfg.scorer)

    def write_json(cells: list[dict[str, Any]]) -> None:
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            report = make_report(args, argv_list, backend, dtype, started, cells, scorer_used, notes)
            args.json.write_text(json.dumps(report, indent=2))

    cells, scorer_used, notes = run_bench(backend, cfg, _log, on_cell=write_json)
    report = make_report(args, argv_list, backend, dtype, started, cells, scorer_used, notes)
    print(format_table(report))
    for note in notes:
        print(f"note: {note}")
    write_json(cells)
    if args.html is not None:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        write_html(report, args.html)
    # Running out of memory is a result (the cell does not fit this device); any other failure is not.
    failed = [c for c in cells if c["error"] and not c["error"].startswith("OutOfMemoryError")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
