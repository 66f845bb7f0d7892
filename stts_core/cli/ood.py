"""`stts ood` / `python -m stts_core.ood`: does a scorer keep what moves, on clips unlike its training data?
(the check itself: `stts_core.analysis.ood`)."""

from __future__ import annotations

import json

from stts_core.analysis.ood import _fmt, evaluate_ood, ood_clips, table
from stts_core.cli import common as cli
from stts_core.methods.registry import method_names


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("stts ood", __doc__.split("\n\n")[0],
                   [cli.model_options(), cli.output_options()])
    p.add_argument("--clips", type=cli.whole_number(1, 10_000), default=40, help="OOD clips (kinds in turn)")
    p.add_argument("--frames", type=cli.whole_number(2, cli.MAX_FRAMES), default=16)
    p.add_argument("--keep", type=cli.keep_ratio, default=0.3, help="keep ratio for the recall")
    p.add_argument("--scorer", "--scorers", dest="scorer", nargs="+", choices=method_names("vit"),
                   default=list(method_names("vit")), help="vit-stage methods (they score block k's features)")
    args = p.parse_args(argv)
    backend = cli.backend_from_args(args)
    scorers = [s for s in args.scorer if s != "learned" or backend.has_learned_scorer]
    result = evaluate_ood(backend, ood_clips(args.clips, args.frames), scorers, args.keep)
    print(table(result, args.keep))
    for kind, per in result["by_kind"].items():
        cells = ", ".join(f"{name} AUC {_fmt(r['auc'], '{:.2f}')} / {_fmt(r['recall_over_chance'], '{:.1f}x')}"
                          for name, r in per.items())
        print(f"  {kind}: {cells}")
    if args.json is not None:
        args.json.write_text(json.dumps({"model": args.model, "clips": args.clips, "frames": args.frames,
                                         "keep": args.keep, "result": result}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
