"""`stts footage` / `python -m stts_core.footage`: does a scorer keep what moves in real videos? Motion
from optical flow (the check itself: `stts_core.analysis.footage_check`)."""

from __future__ import annotations

import json
from pathlib import Path

from stts_core.analysis.footage_check import footage_check, table
from stts_core.cli import common as cli
from stts_core.methods.registry import method_names


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("stts footage", __doc__.split("\n\n")[0], [cli.model_options(), cli.output_options()])
    p.add_argument("--video", nargs="+", type=Path, required=True, help="video files (any format the app reads)")
    p.add_argument("--frames", type=cli.whole_number(2, cli.MAX_FRAMES), default=16)
    p.add_argument("--keep", type=cli.keep_ratio, default=0.3, help="keep ratio for the recall")
    p.add_argument("--scorer", "--scorers", dest="scorer", nargs="+", choices=method_names("vit"),
                   default=list(method_names("vit")), help="vit-stage methods (they score block k's features)")
    args = p.parse_args(argv)
    missing = [str(v) for v in args.video if not v.is_file()]
    if missing:
        cli.exit_with_error(f"No such video file: {missing[0]}")
    backend = cli.backend_from_args(args)
    scorers = [s for s in args.scorer if s != "learned" or backend.has_learned_scorer]
    try:
        results = [footage_check(backend, v, scorers, args.frames, args.keep) for v in args.video]
    except ValueError as err:
        cli.exit_with_error(str(err))
    print(table(results, scorers))
    if args.json is not None:
        args.json.write_text(json.dumps({"model": args.model, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
