"""`python -m stts_core.ask`: answer a question about a video with STTS and with the unpruned model.

Prints both answers, the visual token counts and a per-stage timing table; --json writes the result.
--keep and --scorer take several values: every combination runs on the same decoded video, the
unpruned baseline once (its measurement is shared by the settings), and --json then holds a list.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from stts_core.cli import common as cli
from stts_core.data.video import VideoError, VideoFile, VideoLimits, open_video
from stts_core.models.base import VideoBackend
from stts_core.pipeline import STAGES, TTFT_STAGES, RunResult, RunSettings, run
from stts_core.pipeline.request import warm_up

WARMUP_FRAMES = 16  # the warm-up clip: enough to start every kernel and thread pool, cheap on any model


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("stts ask", __doc__,
                   [cli.model_options(), cli.stts_options(), cli.output_options()])
    p.add_argument("--video", required=True, help="the video file (checked by content before the model loads)")
    p.add_argument("--question", required=True, type=cli.question_text)
    p.add_argument("--seed", type=cli.whole_number(0), default=0, help="seed of the random scorer")
    p.add_argument("--match-budget", action="store_true",
                   help="STTS samples frames/keep frames: the baseline's token budget (test-time scaling)")
    p.add_argument("--no-baseline", action="store_true", help="run STTS only")
    p.add_argument("--no-warmup", action="store_true",
                   help="skip the untimed warm-up of both paths (the first timed run then pays one-off costs)")
    return p


def settings_from(args: argparse.Namespace) -> list[RunSettings]:
    """One RunSettings per (keep ratio, scorer) combination, in the order given."""
    return [RunSettings(keep_ratio=keep, scorer=scorer, num_frames=args.frames, max_new_tokens=args.max_new_tokens,
                        seed=args.seed, match_budget=args.match_budget, run_baseline=not args.no_baseline).validated()
            for keep in args.keep for scorer in args.scorer]


def run_all(backend: VideoBackend, video: VideoFile, question: str, settings: list[RunSettings],
            limits: VideoLimits) -> list[RunResult]:
    """Each setting on the one opened video; the baseline (the same work for every setting) runs once."""
    results: list[RunResult] = []
    for i, s in enumerate(settings):
        result = run(backend, video, question, dataclasses.replace(s, run_baseline=s.run_baseline and i == 0),
                     limits)
        if i > 0 and s.run_baseline:
            result = dataclasses.replace(result, baseline=results[0].baseline, notes=[
                *result.notes, "The baseline was measured once, with the first setting, and is shared."])
        results.append(result)
    return results


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def format_report(result: RunResult) -> str:
    """Answers, token counts and the stage table as plain text."""
    base, stts = result.baseline, result.stts
    lines = []
    if base is not None:
        lines.append(f"baseline answer : {base.answer!r}")
    lines.append(f"STTS answer     : {stts.answer!r}   (scorer {result.scorer_used}, "
                 f"keep {result.settings.keep_ratio:g})")
    if base is not None:
        lines.append(f"agree           : {'yes' if result.agree else 'no'}")
        lines.append(f"visual tokens   : {base.visual_tokens} -> {stts.visual_tokens}")
    else:
        lines.append(f"visual tokens   : {stts.visual_tokens}")
    lines += [f"device          : {result.device}", "", f"{'stage':<16}{'baseline ms':>12}{'STTS ms':>12}"]
    for stage in STAGES:
        lines.append(f"{stage:<16}{_ms(base.timings[stage] if base else None):>12}{_ms(stts.timings[stage]):>12}")
    for label, attr in (("time to 1st tok", "ttft_s"), ("model total", "model_s"), ("end to end", "e2e_s")):
        lines.append(f"{label:<16}{_ms(getattr(base, attr) if base else None):>12}{_ms(getattr(stts, attr)):>12}")
    if result.ttft_speedup is not None:
        lines.append(f"speedup: {result.ttft_speedup:.2f}x time to first token ({TTFT_STAGES[0]}..{TTFT_STAGES[-1]}), "
                     f"{result.model_speedup:.2f}x model, {result.e2e_speedup:.2f}x end to end; one run each")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """0 on success; a bad flag, video or model exits with code 2 and one `error:` line."""
    args = build_parser().parse_args(argv)
    limits = VideoLimits()
    try:
        settings = settings_from(args)
        video = open_video(args.video, limits)
    except (VideoError, ValueError, OSError) as err:
        cli.exit_with_error(str(err))
    with video:
        backend = cli.backend_from_args(args)
        if not args.no_warmup:
            warm_up(backend, num_frames=min(args.frames, WARMUP_FRAMES), rounds=1)
        try:
            results = run_all(backend, video, args.question, settings, limits)
        except (VideoError, ValueError, RuntimeError) as err:
            cli.exit_with_error(str(err))
    print("\n\n".join(format_report(r) for r in results))
    if args.json is not None:
        data = [r.to_json() for r in results]
        try:
            args.json.write_text(json.dumps(data[0] if len(data) == 1 else data, indent=2))
        except OSError as err:
            cli.exit_with_error(f"could not write {args.json}: {err.strerror or err}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
