"""`stts <verb> ...`: the one command-line front door. Each verb is one module of `stts_core.cli`
(argparse -> a typed config -> a library call); `python -m stts_core.<verb>` runs the same code."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# verb -> (module in stts_core.cli, what it does)
VERBS: dict[str, tuple[str, str]] = {
    "ask": ("ask", "one video and question: the pruned and the unpruned answer, tokens and stage times"),
    "analyze": ("analyze", "error analysis over many videos: results.jsonl, summary.csv, report.html"),
    "evaluate": ("evaluate", "accuracy of the unpruned model and every method x keep ratio"),
    "train": ("train", "train a checkpoint with STTS (task loss + 0.5 x auxiliary loss)"),
    "fit-scorer": ("fit_scorer", "fit the scorer alone to the auxiliary target"),
    "bench": ("bench", "speed: baseline against a method, alternating, medians"),
    "ood": ("ood", "does a scorer keep what moves, on clips unlike its training data"),
    "footage": ("footage", "does a scorer keep what moves in real videos (motion from optical flow)"),
    "synthetic": ("synthetic", "write synthetic clips with questions (mp4 + JSONL)"),
}


def usage() -> str:
    width = max(len(v) for v in VERBS)
    lines = ["usage: stts <verb> [options]   (stts <verb> --help for a verb's options)", "", "verbs:"]
    lines += [f"  {verb:<{width}}  {text}" for verb, (_, text) in VERBS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    verb, rest = args[0], args[1:]
    if verb not in VERBS:
        print(f"stts: unknown verb {verb!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"stts_core.cli.{VERBS[verb][0]}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
