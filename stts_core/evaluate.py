"""`python -m stts_core.evaluate`: accuracy of the unpruned model and of every scorer x keep ratio.

By default on the synthetic world's held-out test split (fixed by seed), written as mp4 files and
read back through the same decoding path the app uses. The vision side does not depend on the
question, so each clip's ViT/scorer/connector pass is computed once per setting and shared by its
questions.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from stts_core.pipeline import normalize_answer, visual_pass
from stts_core.scoring import SCORER_KINDS
from stts_core.selection import validate_keep_ratio
from stts_core.video import load_video


def load_questions(jsonl: Path, limit: int | None) -> dict[Path, list[dict[str, Any]]]:
    """Questions grouped by video file, in file order, at most `limit` questions."""
    by_video: dict[Path, list[dict[str, Any]]] = defaultdict(list)
    count = 0
    for line in jsonl.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        video = Path(row["video"])
        by_video[video if video.is_absolute() else jsonl.parent / video].append(row)
        count += 1
        if limit is not None and count >= limit:
            break
    return dict(by_video)


def synthetic_test_split(out_dir: Path, num_questions: int, num_frames: int) -> Path:
    """Write enough held-out clips for `num_questions` questions; return the JSONL path."""
    from stts_core.synthetic import write_split

    clips = max(1, int(num_questions / 2.0) + 8)
    while True:
        jsonl = write_split(out_dir, "test", clips, num_frames=num_frames)
        if sum(1 for line in jsonl.read_text().splitlines() if line.strip()) >= num_questions:
            return jsonl
        clips = int(clips * 1.3) + 1


def evaluate(
    backend: Any,
    questions: dict[Path, list[dict[str, Any]]],
    keeps: list[float],
    scorers: list[str],
    num_frames: int,
    max_new_tokens: int = 4,
) -> dict[str, Any]:
    """Exact-match accuracy (normalised) for the unpruned model and each (scorer, keep)."""
    settings = [("none", 1.0)] + [(s, k) for s in scorers for k in keeps]
    correct: dict[tuple[str, float], int] = defaultdict(int)
    by_type: dict[tuple[str, float], dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    total = 0
    with torch.no_grad():
        for clip_index, (video, rows) in enumerate(tqdm(questions.items(), desc="evaluate", dynamic_ncols=True)):
            sampled = load_video(video, num_frames)
            prepared = [backend.prepare(sampled.frames, row["question"], sampled.metadata()) for row in rows]
            total += len(rows)
            for scorer, keep in settings:
                vp = visual_pass(backend, prepared[0], keep, scorer, seed=clip_index)
                for row, inputs in zip(rows, prepared, strict=True):
                    gen = backend.generate(inputs, vp.visual, vp.prune, max_new_tokens=max_new_tokens)
                    ok = int(normalize_answer(gen.text) == normalize_answer(row["answer"]))
                    correct[(scorer, keep)] += ok
                    stats = by_type[(scorer, keep)][row.get("qtype", "all")]
                    stats[0] += ok
                    stats[1] += 1

    def acc(key: tuple[str, float]) -> float:
        return correct[key] / max(1, total)

    def types(key: tuple[str, float]) -> dict[str, float]:
        return {t: c / n for t, (c, n) in sorted(by_type[key].items())}

    return {
        "unpruned": {"accuracy": acc(("none", 1.0)), "n": total, "by_type": types(("none", 1.0))},
        "results": [{"scorer": s, "keep": k, "accuracy": acc((s, k)), "n": total, "by_type": types((s, k))}
                    for s, k in settings[1:]],
    }


def format_table(report: dict[str, Any], keeps: list[float], scorers: list[str]) -> str:
    n = report["unpruned"]["n"]
    lines = [f"held-out questions: {n}", f"unpruned: {100 * report['unpruned']['accuracy']:.1f}%", ""]
    lines.append("scorer      " + "".join(f"keep {k:<6g}" for k in keeps))
    for s in scorers:
        row = {r["keep"]: r["accuracy"] for r in report["results"] if r["scorer"] == s}
        lines.append(f"{s:<12}" + "".join(f"{100 * row[k]:>6.1f}%    " for k in keeps))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from stts_core.run import DEFAULT_MODEL, load_backend

    p = argparse.ArgumentParser(prog="python -m stts_core.evaluate", description=__doc__)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--data", type=Path, default=None, help="JSONL of {video, question, answer}; default: synthetic test")
    p.add_argument("--limit", type=int, default=500, help="number of questions")
    p.add_argument("--keep", type=float, nargs="+", default=[0.5, 0.3, 0.2])
    p.add_argument("--scorers", nargs="+", choices=SCORER_KINDS, default=list(SCORER_KINDS))
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--device", default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    for k in args.keep:
        validate_keep_ratio(k)
    if args.limit < 1:
        p.error("--limit must be at least 1")
    backend = load_backend(args.model, args.device)
    scorers = list(args.scorers)
    if "learned" in scorers and not backend.has_learned_scorer:
        print("note: this model has no trained scorer; 'learned' rows use random scorer weights")
    with tempfile.TemporaryDirectory(prefix="stts-eval-") as tmp:
        jsonl = args.data or synthetic_test_split(Path(tmp), args.limit, args.frames)
        questions = load_questions(jsonl, args.limit)
        report = evaluate(backend, questions, args.keep, scorers, args.frames)
    report["model"] = args.model
    print(format_table(report, args.keep, scorers))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
