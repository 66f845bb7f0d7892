"""`stts evaluate` / `python -m stts_core.evaluate`: accuracy of the unpruned model and of every method x
keep ratio on held-out questions (by default the synthetic world's test split)."""

from __future__ import annotations

import json
import tempfile
from typing import Any

from stts_core.analysis.evaluate import DEFAULT_METHODS, evaluate, format_table
from stts_core.cli import common as cli
from stts_core.data.tables import DatasetError, load_dataset


def build_parser() -> Any:
    p = cli.parser("stts evaluate", __doc__,
                   [cli.model_options(), cli.stts_options(keep=(0.5, 0.3, 0.2), scorer=DEFAULT_METHODS, new_tokens=4),
                    cli.output_options()])
    p.add_argument("--data", default=None,
                   help="folder with questions.csv/.jsonl, one of those files, a .zip, or synthetic:test[:N] "
                        "(default: the synthetic test split)")
    p.add_argument("--limit", type=cli.whole_number(1), default=500, help="number of questions")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    backend = cli.backend_from_args(args)
    cli.print_fallback_notes(backend, args.scorer)
    with tempfile.TemporaryDirectory(prefix="stts-eval-") as tmp:
        try:
            dataset = load_dataset(args.data or f"synthetic:test:{args.limit}", workdir=tmp, limit=args.limit,
                                   num_frames=args.frames)
        except DatasetError as err:
            cli.exit_with_error(str(err))
        report = evaluate(backend, dataset.examples, args.keep, args.scorer, args.frames, args.max_new_tokens,
                          show_bar=True)
    report["model"] = args.model
    print(format_table(report, args.keep, args.scorer))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if report["failed_rows"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
