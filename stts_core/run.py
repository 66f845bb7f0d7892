"""`python -m stts_core.run`: answer a question about a video with STTS and with the unpruned model.

Prints both answers, the visual token counts and a per-stage timing table; --json writes the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stts_core.pipeline import STAGES, RunResult, RunSettings, run
from stts_core.scoring import SCORER_KINDS
from stts_core.video import VideoError

DEFAULT_MODEL = str(Path(__file__).resolve().parent.parent / "assets" / "stts-tiny")


def load_backend(model: str, device: str | None = None, trust_remote_code: bool = False):
    """The one place a model id or path becomes a backend (Molmo2 is the family supported today)."""
    from stts_core.backends.molmo2 import load_molmo2

    return load_molmo2(model, device=device, trust_remote_code=trust_remote_code)


def format_report(result: RunResult) -> str:
    """Answers, token counts and the stage table as plain text."""
    lines = []
    base = result.baseline
    if base is not None:
        lines.append(f"baseline answer : {base.answer!r}")
    lines.append(f"STTS answer     : {result.stts.answer!r}   (scorer {result.scorer_used}, "
                 f"keep {result.settings.keep_ratio:g})")
    if base is not None:
        lines.append(f"agree           : {'yes' if result.agree else 'no'}")
        lines.append(f"visual tokens   : {base.visual_tokens} -> {result.stts.visual_tokens}")
    else:
        lines.append(f"visual tokens   : {result.stts.visual_tokens}")
    lines.append(f"device          : {result.device}")
    lines.append("")
    lines.append(f"{'stage':<14}{'baseline ms':>14}{'STTS ms':>12}")
    for stage in STAGES:
        b = f"{base.timings[stage] * 1e3:.1f}" if base is not None else "-"
        lines.append(f"{stage:<14}{b:>14}{result.stts.timings[stage] * 1e3:>12.1f}")
    b_ttft = f"{base.ttft_s * 1e3:.1f}" if base is not None else "-"
    b_tot = f"{base.total_s * 1e3:.1f}" if base is not None else "-"
    lines.append(f"{'time to 1st tok':<14}{b_ttft:>14}{result.stts.ttft_s * 1e3:>12.1f}")
    lines.append(f"{'total':<14}{b_tot:>14}{result.stts.total_s * 1e3:>12.1f}")
    if result.ttft_speedup is not None:
        lines.append(f"speedup: {result.ttft_speedup:.2f}x time to first token, {result.e2e_speedup:.2f}x end to end")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stts_core.run", description=__doc__)
    p.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local checkpoint directory")
    p.add_argument("--video", required=True)
    p.add_argument("--question", required=True)
    p.add_argument("--keep", type=float, default=0.5, help="fraction of vision tokens kept, in (0, 1]")
    p.add_argument("--scorer", choices=SCORER_KINDS, default="learned")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--match-budget", action="store_true", help="STTS samples frames/keep frames (test-time scaling)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    args = p.parse_args(argv)
    settings = RunSettings(keep_ratio=args.keep, scorer=args.scorer, num_frames=args.frames,
                           max_new_tokens=args.max_new_tokens, seed=args.seed, match_budget=args.match_budget,
                           run_baseline=not args.no_baseline)
    try:
        settings.validated()
        backend = load_backend(args.model, args.device, args.trust_remote_code)
        result = run(backend, args.video, args.question, settings)
    except (VideoError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
