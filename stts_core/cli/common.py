"""One argument vocabulary for every command-line tool (`stts ask|analyze|evaluate|train|fit-scorer|bench|ood`).

Each tool builds its parser from the parent parsers here, so a flag means the same thing, takes
the same values and fails the same way everywhere: a bad value is argparse's one-line
``prog: error: ...`` with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

from stts_core.data.video import MAX_FRAMES

DTYPE_NAMES = ("bf16", "fp16", "fp32")
T = TypeVar("T")


def keep_ratio(text: str) -> float:
    """A keep ratio in (0, 1]: the fraction of vision tokens STTS keeps."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a keep ratio in (0, 1], got {text!r}") from None
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"a keep ratio must be in (0, 1], got {text!r}")
    return value


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type for whole numbers in [low, high]; '4.5' and 'nan' are refused, not rounded."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"expected a whole number {span}, got {text!r}")
        return value

    return parse


def finite_number(low: float, allow_low: bool) -> Callable[[str], float]:
    """An argparse type for finite numbers above `low` (or from `low` when `allow_low`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not allow_low):
            bound = f">= {low:g}" if allow_low else f"> {low:g}"
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}")
        return value

    return parse


positive_float = finite_number(0.0, allow_low=False)
non_negative_float = finite_number(0.0, allow_low=True)


def question_text(text: str) -> str:
    """A question: not empty, valid Unicode (no lone surrogates), at most 2000 characters."""
    from stts_core.pipeline import validate_question

    try:
        return validate_question(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


frames = whole_number(1, MAX_FRAMES)
max_new_tokens = whole_number(1, 1024)


def model_options(default_model: str | None = None, required: bool = False) -> argparse.ArgumentParser:
    """--model, --device, --dtype, --trust-remote-code: which model, where, in what precision."""
    from stts_core.models.loading import DEFAULT_MODEL

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model")
    if required:
        g.add_argument("--model", required=True, help="checkpoint directory or Hugging Face hub id")
    else:
        g.add_argument("--model", default=default_model or DEFAULT_MODEL,
                       help="checkpoint directory or Hugging Face hub id (default: the built-in model)")
    g.add_argument("--device", default=None, help="cuda when available, else cpu")
    g.add_argument("--dtype", choices=DTYPE_NAMES, default=None, help="bf16 on CUDA, fp32 on the CPU by default")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="allow a hub model's own Python code to run (off unless asked for)")
    return p


def stts_options(keep: Sequence[float] = (0.5,), scorer: Sequence[str] = ("learned",),
                 frames_default: int | Sequence[int] = 16, new_tokens: int = 16, multi_frames: bool = False,
                 scorers: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """--keep R [R ...], --scorer S [S ...], --frames N (or N [N ...]), --max-new-tokens: what STTS runs with.
    --scorer (also --method) takes registered methods (`stts_core.list_methods()`), all of them by default."""
    from stts_core.methods.registry import method_names

    scorers = tuple(scorers) if scorers is not None else method_names()
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("STTS")
    g.add_argument("--keep", type=keep_ratio, nargs="+", default=list(keep), metavar="R",
                   help=f"keep ratio(s) in (0, 1] (default: {' '.join(f'{k:g}' for k in keep)})")
    g.add_argument("--scorer", "--scorers", "--method", dest="scorer", choices=scorers, nargs="+",
                   default=list(scorer), metavar="S",
                   help=f"method(s): {', '.join(scorers)} (default: {' '.join(scorer)}; see docs/methods.md)")
    if multi_frames:
        g.add_argument("--frames", type=frames, nargs="+", default=list(frames_default),  # type: ignore[arg-type]
                       help=f"frame counts, one cell each (1-{MAX_FRAMES})")
    else:
        g.add_argument("--frames", type=frames, default=frames_default, help=f"frames sampled per video (1-{MAX_FRAMES})")
    g.add_argument("--max-new-tokens", "--new-tokens", dest="max_new_tokens", type=max_new_tokens,
                   default=new_tokens, help="tokens generated per answer")
    return p


def output_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", type=file_path, default=None, help="write the result as JSON here")
    return p


def file_path(text: str):  # noqa: ANN201 - argparse type
    from pathlib import Path

    if not text.strip():
        raise argparse.ArgumentTypeError("expected a file path, got an empty string")
    return Path(text)


def parser(prog: str, description: str | None, parents: Sequence[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description, parents=list(parents),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def exit_with_error(message: str, code: int = 2) -> NoReturn:
    """A failure found after parsing (a model that cannot load, a video that cannot be read): one line."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def torch_dtype(name: str | None, device_type: str):  # noqa: ANN201 - torch imported lazily
    """--dtype's name -> torch dtype by the one rule (`models.loading.dtype_for`)."""
    from stts_core.models.loading import dtype_for

    return dtype_for(name, device_type)


def resolve_device(device: str | None):  # noqa: ANN201 - torch imported lazily
    """--device, or cuda when available, else cpu (`models.loading.resolve_device`)."""
    from stts_core.models.loading import resolve_device as resolve

    return resolve(device)


def backend_from_args(args: argparse.Namespace, device: str | None = None, preset: str | None = None,
                      model: str | None = None):  # noqa: ANN201 - torch imported lazily
    """The one "backend from CLI arguments": ``--model`` (or ``model``, or a ``preset`` with random weights)
    on ``--device`` (``device`` overrides it: a torchrun rank's own GPU), in ``--dtype`` with one rule
    (bf16 on CUDA, fp32 elsewhere). A model that cannot be loaded exits with one line and code 2.
    A process that runs a model keeps its freed host memory (`stts_core.host_memory`)."""
    from stts_core.host_memory import retain_freed_memory
    from stts_core.models.base import ModelLoadError
    from stts_core.models.loading import backend_from_preset, load_backend

    retain_freed_memory()

    where = resolve_device(device or getattr(args, "device", None))
    dtype = torch_dtype(getattr(args, "dtype", None), where.type)
    try:
        if preset is not None:
            return backend_from_preset(preset, device=where, dtype=dtype, seed=getattr(args, "seed", 0) or 0)
        return load_backend(model or args.model, device=where, dtype=dtype,
                            trust_remote_code=getattr(args, "trust_remote_code", False))
    except ModelLoadError as err:
        exit_with_error(str(err))


def print_fallback_notes(backend: object, methods: Sequence[str]) -> None:
    """Say once per method when the fallback rule replaces it (a model without trained scorer weights)."""
    from stts_core.pipeline import resolve_scorer

    for name in dict.fromkeys(methods):
        for note in resolve_scorer(backend, name)[1]:  # type: ignore[arg-type]
            print(f"note: {note}", file=sys.stderr)
