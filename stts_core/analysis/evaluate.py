"""`stts evaluate`: accuracy of the unpruned model and of every scorer x keep ratio.

A view over the batch analysis (`analysis.runner`), the one place accuracy is scored: the same datasets, the same shared
computation (each clip decoded and run through the ViT once, each scorer's scores reused across keep
ratios), the same scorer fallback (`pipeline.resolve_scorer`) and answer normalisation, reduced to one
table. By default on the synthetic world's held-out test split, written as mp4 files and read back
through the same decoding path the app uses.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stts_core.analysis.records import BASELINE, Analysis, AnalysisSettings
from stts_core.analysis.runner import run_analysis
from stts_core.data.tables import Example, synthetic_split
from stts_core.models.base import VideoBackend

DEFAULT_METHODS = ("learned", "heuristic", "random")


def synthetic_test_split(out_dir: Path, num_questions: int, num_frames: int) -> Path:
    """The first `num_questions` held-out questions (clips written as mp4); returns their JSONL."""
    return synthetic_split(Path(out_dir), "test", num_questions, num_frames)


def load_questions(jsonl: Path, limit: int | None) -> dict[Path, list[dict[str, Any]]]:
    """Raw JSONL rows grouped by video file, in file order, at most `limit` rows."""
    by_video: dict[Path, list[dict[str, Any]]] = defaultdict(list)
    rows = [json.loads(line) for line in Path(jsonl).read_text().splitlines() if line.strip()]
    for row in rows[:limit]:
        video = Path(row["video"])
        by_video[video if video.is_absolute() else Path(jsonl).parent / video].append(row)
    return dict(by_video)


def _entry(cells: list[dict[str, Any]], key: str) -> dict[str, Any]:
    overall = next(c for c in cells if c["setting"] == key and c["type"] == "all")
    by_type = {c["type"]: c["accuracy"] for c in cells if c["setting"] == key and c["type"] != "all"}
    return {"accuracy": overall["accuracy"], "n": overall["with_gold"],
            "by_type": dict(sorted(by_type.items())) or {"all": overall["accuracy"]}}


def accuracy_report(analysis: Analysis) -> dict[str, Any]:
    """The evaluate JSON: {"unpruned": {accuracy, n, by_type}, "results": [{scorer, keep, accuracy, n,
    by_type, scorer_used}], "failed_rows"}; accuracy counts rows with a gold answer."""
    cells = analysis.summary
    used = {r["setting"]: r.get("scorer_used") for r in analysis.rows if r.get("scorer_used")}
    results = [{"scorer": s.scorer, "keep": s.keep, **_entry(cells, s.key), "scorer_used": used.get(s.key)}
               for s in analysis.settings.settings() if not s.is_baseline]
    return {"unpruned": _entry(cells, BASELINE), "results": results, "failed_rows": len(analysis.failed)}


def evaluate(
    backend: VideoBackend,
    examples: Sequence[Example],
    keeps: Sequence[float],
    scorers: Sequence[str],
    num_frames: int,
    max_new_tokens: int = 4,
    show_bar: bool = False,
) -> dict[str, Any]:
    """Exact-match accuracy (normalised) for the unpruned model and each (scorer, keep)."""
    cfg = AnalysisSettings(keeps=tuple(keeps), scorers=tuple(scorers), num_frames=num_frames,
                           max_new_tokens=max_new_tokens)
    return accuracy_report(run_analysis(backend, examples, cfg, show_bar=show_bar))


def format_table(report: dict[str, Any], keeps: Sequence[float], scorers: Sequence[str]) -> str:
    def pct(value: float | None) -> str:
        return "     -    " if value is None else f"{100 * value:>6.1f}%    "

    lines = [f"held-out questions: {report['unpruned']['n']}", f"unpruned: {pct(report['unpruned']['accuracy'])}", ""]
    lines.append("scorer      " + "".join(f"keep {k:<6g}" for k in keeps))
    for s in scorers:
        row = {r["keep"]: r["accuracy"] for r in report["results"] if r["scorer"] == s}
        used = {r["scorer_used"] for r in report["results"] if r["scorer"] == s} - {s, None}
        lines.append(f"{s:<12}" + "".join(pct(row.get(k)) for k in keeps) + (f"(ran as {used.pop()})" if used else ""))
    if report.get("failed_rows"):
        lines.append(f"{report['failed_rows']} rows failed and are not counted (see stts analyze)")
    return "\n".join(lines)
