"""LongVideoBench (longvideobench/LongVideoBench on Hugging Face): multiple-choice questions on videos of
8 s to an hour, in four duration groups; the long-video set of the paper-style table.

Layout (``longvideobench:/path/to/LongVideoBench``), as the benchmark's own loader reads it
(longvideobench/LongVideoBench ``longvideobench/longvideobench_dataset.py``: ``lvb_val.json``, the videos
in ``videos/<video_path>``, the letter ``chr(ord("A") + correct_choice)``) and as lmms-eval does
(``lmms_eval/tasks/longvideobench/utils.py``: the ``validation`` parquet's ``option0``..``option4``,
``"N/A"`` for an absent option, ``duration_group`` and ``question_category`` in its per-sample record):

- the questions: ``validation-00000-of-00001.parquet`` (read first when present: lmms-eval's split, so
  ``doc_id`` matches its logs) with the options as ``option0``..``option4``, or ``lvb_val.json`` (a list of
  ``{"id", "video_id", "question", "candidates", "correct_choice", "duration_group",
  "question_category", "video_path", "duration", ...}``; the test split ``lvb_test_wo_gt.json`` has no
  ``correct_choice``);
- the videos: ``videos/<video_path>`` (``videos.tar`` unpacked).

Tables: per duration group (8-15 s, 15-60 s, 180-600 s, 900-3600 s: the groups 15, 60, 600, 3600) and per
question category. ``--subset`` names a split (val, test), duration groups or categories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stts_core.data.benchmarks.common import (
    check_subset,
    choice_example,
    find_video,
    first_file,
    read_json,
    read_parquet,
    records_of,
    rel,
    wanted,
)
from stts_core.data.benchmarks.registry import Benchmark, register_benchmark
from stts_core.data.tables import DatasetError, Example

GROUPS = {"15": "8-15s", "60": "15-60s", "600": "180-600s", "3600": "900-3600s"}
# The parquet first: it is the split lmms-eval reads, so doc_id (its row) matches an lmms-eval run's.
FILES = {"val": ("validation-*.parquet", "lvb_val.json"), "test": ("test-*.parquet", "lvb_test_wo_gt.json")}
LAYOUT = "lvb_val.json (or the validation parquet) and the videos in videos/"


def _options(record: dict[str, Any]) -> list[str]:
    if isinstance(record.get("candidates"), list):
        return [str(c) for c in record["candidates"]]
    return [str(record[f"option{i}"]) for i in range(5) if record.get(f"option{i}") not in (None, "N/A")]


def _group(value: Any) -> str | None:
    try:
        key = str(int(float(value)))
    except (TypeError, ValueError):
        return None
    return GROUPS.get(key, f"{key}s")


def _question(root: Path, split: str, doc_id: int, record: dict[str, Any]) -> Example:
    options = _options(record)
    gold = record.get("correct_choice")
    try:
        gold = None if gold is None else int(gold)
    except (TypeError, ValueError):
        gold = -1
    name = str(record.get("video_path") or "")
    path = find_video([root / "videos"], name) if name else None
    error = None if path is not None or not name else f"Its video 'videos/{name}' is missing."
    key = str(record.get("id") or f"{split}/{doc_id}")
    return choice_example(benchmark="longvideobench", key=key if split == "val" else f"test/{key}", doc_id=doc_id,
                          doc=record, video=name, path=path, question=record.get("question"), options=options,
                          gold=gold, task=record.get("question_category"), category=record.get("level"),
                          duration=_group(record.get("duration_group")), error=error)


def _records(root: Path, split: str) -> list[dict[str, Any]]:
    path = first_file(root, FILES[split])
    if path is None:
        raise DatasetError(f"'{root}' has no LongVideoBench {split} questions ({' or '.join(FILES[split])}); a "
                           f"LongVideoBench copy holds {LAYOUT}.")
    rows = read_parquet(path, root) if path.suffix == ".parquet" else records_of(read_json(path, root), rel(path, root))
    return [dict(r) for r in rows]


def read(root: Path, subset: tuple[str, ...]) -> tuple[list[Example], list[str]]:
    splits = [s for s in FILES if s in subset] or ["val"]
    rest = tuple(GROUPS.get(s, s).lower() for s in subset if s not in FILES)
    examples = [_question(root, split, i, r) for split in splits for i, r in enumerate(_records(root, split))]
    check_subset(rest, [v for e in examples for v in (e.task, e.category, e.duration)], "LongVideoBench")
    return [e for e in examples if wanted(rest, e.task, e.category, e.duration)], []


def lmms_task(ex: Example) -> str:
    return "longvideobench_test_v" if ex.id.startswith("longvideobench/test/") else "longvideobench_val_v"


def lmms_target(ex: Example) -> Any:
    return ex.doc.get("correct_choice")  # doc_to_target: "correct_choice"


def lmms_metric(ex: Example, response: str, letter: str | None) -> dict[str, Any]:
    """``longvideobench_process_results``: the question's id and groups, the gold and parsed letters."""
    doc = ex.doc
    return {"lvb_acc": {"id": doc.get("id"), "duration_group": doc.get("duration_group"),
                        "question_category": doc.get("question_category"), "answer": ex.answer,
                        "parsed_pred": letter or ""}}


LONGVIDEOBENCH = register_benchmark(Benchmark(
    name="longvideobench", label="LongVideoBench", read=read, layout=LAYOUT, lmms_task=lmms_task,
    lmms_target=lmms_target, lmms_metric=lmms_metric, durations=tuple(GROUPS.values()),
))
