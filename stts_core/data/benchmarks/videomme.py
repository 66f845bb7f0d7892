"""Video-MME (lmms-lab/Video-MME on Hugging Face): 2,700 four-option questions on 900 videos of 11 s to
1 h, in three duration classes.

Layout (``videomme:/path/to/Video-MME``), as lmms-eval reads it (``lmms_eval/tasks/videomme/utils.py``:
``videomme_doc_to_visual`` looks for ``data/<videoID>.mp4``, then ``.MP4``, then ``.mkv``; the yaml's
``test_split: test``) and as allenai/molmo2 does (``olmo/data/academic_video_datasets.py``, ``VideoMME``:
``videomme/test-00000-of-00001.parquet``, the video zips unpacked into ``data/``):

- the annotations: ``videomme/test-*.parquet`` (any parquet there or at the top), or the same records as
  JSON / JSON Lines (``videomme/*.json``, ``videomme/*.jsonl``, ``test.json``): ``video_id``,
  ``duration`` (short / medium / long), ``domain``, ``sub_category``, ``videoID``, ``question_id``,
  ``task_type``, ``question``, ``options`` (``["A. ...", "B. ...", "C. ...", "D. ..."]``), ``answer``
  (the letter);
- the videos: ``data/<videoID>.mp4`` (``.MP4`` and ``.mkv`` as well).

Tables: per duration class (short, medium, long), per task type and per domain. ``--subset`` names
duration classes, task types or domains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stts_core.data.benchmarks.choices import LETTERS, split_option
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

DURATIONS = ("short", "medium", "long")
ANNOTATIONS = ("videomme/test-*.parquet", "videomme/*.parquet", "*.parquet", "videomme/*.jsonl", "videomme/*.json",
               "test.jsonl", "test.json")
LAYOUT = "videomme/test-00000-of-00001.parquet (or its records as JSON) and the videos in data/"


def _annotations(root: Path) -> list[dict[str, Any]]:
    path = first_file(root, ANNOTATIONS)
    if path is None:
        raise DatasetError(f"'{root}' has no Video-MME annotations (videomme/test-00000-of-00001.parquet, or its "
                           "records as videomme/test.json); a Video-MME copy holds " + LAYOUT + ".")
    name = rel(path, root)
    rows = read_parquet(path, root) if path.suffix == ".parquet" else records_of(read_json(path, root), name)
    return [dict(r) for r in rows]


def _question(root: Path, doc_id: int, record: dict[str, Any]) -> Example:
    raw = record.get("options")
    split = [split_option(str(o)) for o in raw] if isinstance(raw, list | tuple) else []
    options = [text for _, text in split]
    answer = str(record.get("answer") or "").strip().upper()
    gold = LETTERS.index(answer) if len(answer) == 1 and answer in LETTERS[: len(options)] else None
    error = None if gold is not None else f"Its answer {record.get('answer')!r} is not one of its option letters."
    video_id = str(record.get("videoID") or "")
    path = find_video([root / "data"], f"{video_id}.mp4", (".MP4", ".mkv")) if video_id else None
    if video_id and path is None:
        error = error or f"Its video 'data/{video_id}.mp4' (or .MP4 / .mkv) is missing."
    qid = str(record.get("question_id") or doc_id)
    return choice_example(benchmark="videomme", key=qid, doc_id=doc_id, doc=record, video=f"{video_id}.mp4",
                          path=path, question=record.get("question"), options=options, gold=gold,
                          task=record.get("task_type"), category=record.get("domain"),
                          duration=record.get("duration"), error=error)


def read(root: Path, subset: tuple[str, ...]) -> tuple[list[Example], list[str]]:
    examples = [_question(root, i, r) for i, r in enumerate(_annotations(root))]
    check_subset(subset, [v for e in examples for v in (e.task, e.category, e.duration)], "Video-MME")
    return [e for e in examples if wanted(subset, e.task, e.category, e.duration)], []


def lmms_target(ex: Example) -> Any:
    return ex.doc.get("answer")


def lmms_metric(ex: Example, response: str, letter: str | None) -> dict[str, Any]:
    """``videomme_process_results``: the question's classes, the extracted and gold letters, the score."""
    doc = ex.doc
    return {"videomme_perception_score": {
        "question_id": doc.get("question_id"), "duration": doc.get("duration"), "category": doc.get("domain"),
        "sub_category": doc.get("sub_category"), "task_category": doc.get("task_type"), "pred_answer": letter or "",
        "answer": ex.answer, "score": float(letter == ex.answer), "videoID": doc.get("videoID")}}


VIDEOMME = register_benchmark(Benchmark(
    name="videomme", label="Video-MME", read=read, layout=LAYOUT, lmms_task=lambda ex: "videomme",
    lmms_target=lmms_target, lmms_metric=lmms_metric, durations=DURATIONS,
))
