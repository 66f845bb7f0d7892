"""`stts synthetic` / `python -m stts_core.synthetic`: write one split of synthetic clips (mp4) plus its
JSONL of questions (see `stts_core.data.synthetic`)."""

from __future__ import annotations

from collections.abc import Sequence

from stts_core.cli import common as cli
from stts_core.data.synthetic import SPLIT_SEEDS, WORLDS, write_split


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("stts synthetic", __doc__, [])
    p.add_argument("--out", type=cli.file_path, required=True, help="output folder")
    p.add_argument("--split", default="test", choices=sorted(SPLIT_SEEDS))
    p.add_argument("--world", default="plain", choices=WORLDS)
    p.add_argument("--clips", type=cli.whole_number(1, 1_000_000), default=200)
    p.add_argument("--frames", type=cli.frames, default=16)
    p.add_argument("--size", type=cli.whole_number(32, 2048), default=252, help="frame side in pixels")
    p.add_argument("--fps", type=cli.positive_float, default=8.0)
    args = p.parse_args(argv)
    print(write_split(args.out, args.split, args.clips, num_frames=args.frames, size=args.size, fps=args.fps,
                      world=args.world))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
