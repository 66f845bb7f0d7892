"""`stts analyze` / `python -m stts_core.analyze`: where does pruning change the answer, and why?
(the library's side: `stts_core.analysis.runner`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from stts_core.analysis.bench_tables import PAPER_TABLE, format_tables
from stts_core.analysis.records import Analysis, AnalysisSettings, default_methods
from stts_core.analysis.runner import _broadcast, compare_naive, run_analysis
from stts_core.analysis.store import REPORT, RESULTS, SUMMARY
from stts_core.cli import common as cli
from stts_core.data.benchmarks import list_benchmarks
from stts_core.data.tables import DEFAULT_SYNTHETIC, Dataset, DatasetError, combine_datasets, load_dataset
from stts_core.models.base import VideoBackend


def _out_dir(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty string")
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("stts analyze", __doc__,
                   [cli.model_options(), cli.stts_options(keep=(0.5, 0.3, 0.2), scorer=default_methods(),
                                                             new_tokens=8), cli.output_options()])
    g = p.add_argument_group("analysis")
    names = ", ".join(f"{b.name}:/path" for b in list_benchmarks())
    g.add_argument("--data", nargs="+", default=[f"synthetic:test:{DEFAULT_SYNTHETIC}"], metavar="SPEC",
                   help="folder with questions.csv/.jsonl, one of those files, a .zip, synthetic:test[:N], or a "
                        f"benchmark's local copy ({names}); several specs run as one table")
    g.add_argument("--subset", default=None, metavar="NAMES",
                   help="comma-separated benchmark tasks, splits or classes (a table: question types) to keep")
    g.add_argument("--out", type=_out_dir, required=True, help="output folder; rerunning into it resumes")
    g.add_argument("--limit", type=cli.whole_number(1), default=None,
                   help="use only the first N questions (a benchmark: the first of each task in turn)")
    g.add_argument("--seed", type=cli.whole_number(0), default=0, help="random scorer seed (video i uses seed + i)")
    g.add_argument("--compare-naive", type=cli.whole_number(1), default=None, metavar="N",
                   help="afterwards, time the shared path against pipeline.run per setting on N examples")
    g.add_argument("--no-report", action="store_true", help="skip report.html")
    return p


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_summary(analysis: Analysis) -> str:
    lines = [f"{'setting':<16}{'n':>6}{'accuracy':>10}{'agree':>9}{'R->W':>6}{'W->R':>6}{'no ans':>8}"
             f"{'tokens':>8}{'model ms':>10}"]
    for c in (c for c in analysis.summary if c["type"] == "all"):
        lines.append(f"{c['setting']:<16}{c['n']:>6}{_pct(c['accuracy']):>10}{_pct(c['agreement']):>9}"
                     f"{'-' if c['right_to_wrong'] is None else c['right_to_wrong']:>6}"
                     f"{'-' if c['wrong_to_right'] is None else c['wrong_to_right']:>6}{c['no_answer']:>8}"
                     f"{(c['visual_tokens'] or 0):>8.0f}{1e3 * (c['model_s'] or 0):>10.1f}")
    failed = analysis.failed
    lines.append(f"{analysis.examples} examples ({analysis.examples_computed} run now), {len(analysis.rows)} rows "
                 f"({analysis.computed} computed now, {len(failed)} failed) in {analysis.wall_s:.1f} s, "
                 f"{analysis.examples_per_s:.2f} examples/s")
    seen: set[str] = set()
    for row in failed:
        if row["id"] not in seen:
            seen.add(row["id"])
            lines.append(f"failed: {row['id']} ({row['video'] or 'no video'}): {row['error']}")
    return "\n".join(lines)


def _load(args: argparse.Namespace) -> Dataset:
    """Every --data spec as one dataset. With several, one that cannot be read (a missing or broken
    annotation file) is skipped with its one-line reason in the notes and the others run."""
    parts, skipped = [], []
    for spec in args.data:
        try:
            parts.append(load_dataset(spec, workdir=args.out / "data", limit=args.limit, num_frames=args.frames,
                                      subset=args.subset))
        except DatasetError as err:
            if len(args.data) == 1:
                raise
            skipped.append(f"skipped {spec}: {err}")
    if not parts:
        raise DatasetError("No --data spec could be read: " + " ".join(skipped))
    dataset = combine_datasets(parts)
    dataset.notes[:0] = skipped
    return dataset


def _dataset(args: argparse.Namespace, rank: int, world: int) -> Dataset:
    """Rank 0 loads (and writes generated clips) first; the others then reuse what it wrote."""
    dataset, error = None, None
    if rank == 0:
        try:
            dataset = _load(args)
        except DatasetError as err:
            error = str(err)
    error = _broadcast(error, world)
    if error:
        cli.exit_with_error(error)
    if dataset is None:
        dataset = _load(args)
    return dataset


def _finish(args: argparse.Namespace, backend: VideoBackend, analysis: Analysis, dataset: Dataset) -> int:
    print(format_summary(analysis))
    if analysis.benchmarks:
        print("\n" + format_tables(analysis.benchmarks))
    naive = None
    if args.compare_naive:
        naive = compare_naive(backend, dataset.examples, analysis.settings, args.compare_naive)
        (args.out / "naive_comparison.json").write_text(json.dumps(naive, indent=2))
        if naive:
            print(f"sharing: {naive['shared_s']:.1f} s vs {naive['naive_s']:.1f} s with pipeline.run per setting "
                  f"on {naive['examples']} examples x {naive['settings']} settings: {naive['speedup']:.2f}x faster "
                  f"({100 * naive['saving']:.0f}% less time); {naive['same_answers']}/{naive['answers_compared']} "
                  "answers identical")
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": analysis.summary, "examples": analysis.examples,
                                         "rows": len(analysis.rows), "failed_rows": len(analysis.failed),
                                         "wall_s": analysis.wall_s, "examples_per_s": analysis.examples_per_s,
                                         "naive": naive, "model": args.model}, indent=2))
    print(f"wrote {args.out / RESULTS}, {args.out / SUMMARY}" + ("" if args.no_report else f", {args.out / REPORT}"))
    if analysis.benchmarks:
        print(f"wrote {args.out / PAPER_TABLE} and {len(analysis.exports)} lmms-eval sample logs under "
              f"{args.out / 'lmms_eval'}")
    skipped = [n for n in dataset.notes if n.startswith("skipped ")]
    return 1 if analysis.failed or skipped else 0


def main(argv: Sequence[str] | None = None) -> int:
    from stts_core.distributed import start_ranks

    args = build_parser().parse_args(argv)
    ranks = start_ranks(args.device)
    rank, world = ranks.rank, ranks.world
    try:
        backend = cli.backend_from_args(args, ranks.device)
        cfg = AnalysisSettings(keeps=tuple(args.keep), scorers=tuple(args.scorer), num_frames=args.frames,
                               max_new_tokens=args.max_new_tokens, seed=args.seed)
        if rank == 0:
            cli.print_fallback_notes(backend, cfg.scorers)
        dataset = _dataset(args, rank, world)
        if dataset.limits is not None:  # a benchmark's long videos
            cfg = replace(cfg, limits=replace(dataset.limits, max_frames=cfg.limits.max_frames))
        if rank == 0:
            for note in dataset.notes:
                print(note)
        try:
            analysis = run_analysis(backend, dataset.examples, cfg, args.out, show_bar=rank == 0,
                                    report=not args.no_report, model_name=args.model, rank=rank, world=world)
        except DatasetError as err:
            cli.exit_with_error(str(err))
        if rank != 0:
            return 0
        return _finish(args, backend, analysis, dataset)
    finally:
        ranks.close()


if __name__ == "__main__":
    raise SystemExit(main())
