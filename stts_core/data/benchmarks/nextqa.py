"""NExT-QA, multiple choice (doc-doc/NExT-QA): five-option causal, temporal and descriptive questions on
everyday videos from VidOR.

Layout (``nextqa:/path/to/NExT-QA``), as the benchmark's repository publishes it (doc-doc/NExT-QA
``dataset/nextqa/{val,test}.csv`` with the columns ``video, frame_count, width, height, question, answer,
qid, type, a0, a1, a2, a3, a4``, and ``map_vid_vidorID.json`` mapping a video id to its VidOR path
``"0000/2440175990"``) and as lmms-eval and Molmo2 read it (lmms-eval ``lmms_eval/tasks/nextqa/utils.py``:
options ``a0``..``a4``, ``answer`` the option's index, the videos in ``NExTVideo/<video>.mp4``; allenai/molmo2
``olmo/data/academic_video_datasets.py`` ``NeXTQA``: ``MC/test-00000-of-00001.parquet`` for the test
split, the csv files and the map for the others):

- the questions: ``nextqa/<split>.csv`` or ``<split>.csv`` (the repository's folder copied as it is), or
  ``MC/<split>-*.parquet`` (lmms-eval's copy); the split is test when there is one, else val;
- ``map_vid_vidorID.json`` (top level or ``nextqa/``) where the videos keep VidOR's folders;
- the videos: ``NExTVideo/<folder>/<video>.mp4`` through the map, or ``NExTVideo/<video>.mp4``.

Tables: per question type (CW, CH causal; TN, TC, TP temporal; DL, DC, DO descriptive) and per category
(causal, temporal, descriptive: the benchmark's Acc@C / Acc@T / Acc@D). ``--subset`` names a split
(test, val, train), question types or categories.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from stts_core.data.benchmarks.common import (
    check_subset,
    choice_example,
    find_video,
    first_file,
    read_json,
    read_parquet,
    rel,
    wanted,
)
from stts_core.data.benchmarks.registry import Benchmark, register_benchmark
from stts_core.data.tables import MAX_TABLE_BYTES, DatasetError, Example

SPLITS = ("test", "val", "train")
CATEGORIES = {"C": "causal", "T": "temporal", "D": "descriptive"}
TYPES = ("CW", "CH", "TN", "TC", "TP", "DL", "DC", "DO")
LAYOUT = "nextqa/test.csv or val.csv (a0..a4), map_vid_vidorID.json and the videos in NExTVideo/"


def _table(root: Path, split: str) -> Path | None:
    return first_file(root, (f"nextqa/{split}.csv", f"{split}.csv", f"MC/{split}-*.parquet", f"nextqa/MC/{split}-*.parquet"))


def _rows(path: Path, root: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return read_parquet(path, root)
    if path.stat().st_size > MAX_TABLE_BYTES * 4:
        raise DatasetError(f"'{rel(path, root)}' is larger than {MAX_TABLE_BYTES * 4 // 1024**2} MB.")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"'{rel(path, root)}' is not UTF-8 text.") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("video", "question", "answer", "a0", "a1") if c not in (reader.fieldnames or [])]
    if missing:
        raise DatasetError(f"'{rel(path, root)}' lacks the column(s) {', '.join(missing)} of the NExT-QA csv.")
    return list(reader)


def _video_map(root: Path) -> dict[str, str]:
    path = first_file(root, ("map_vid_vidorID.json", "nextqa/map_vid_vidorID.json"))
    if path is None:
        return {}
    value = read_json(path, root)
    if not isinstance(value, dict):
        raise DatasetError(f"'{rel(path, root)}' does not map video ids to VidOR paths.")
    return {str(k): str(v) for k, v in value.items()}


def _question(root: Path, split: str, doc_id: int, record: dict[str, Any], vmap: dict[str, str]) -> Example:
    options = [str(record.get(f"a{i}") or "") for i in range(5) if f"a{i}" in record]
    try:
        gold: int | None = int(str(record.get("answer")).strip())
    except ValueError:
        gold = None
    video_id = str(record.get("video") or "").strip()
    names = [vmap[video_id]] if video_id in vmap else []
    path = find_video([root / "NExTVideo"], f"{names[0]}.mp4", (".MP4",)) if names else None
    path = path or (find_video([root / "NExTVideo"], f"{video_id}.mp4", (".MP4",)) if video_id else None)
    error = None if gold is not None else f"Its answer {record.get('answer')!r} is not an option index."
    if video_id and path is None:
        where = f"NExTVideo/{names[0]}.mp4" if names else f"NExTVideo/{video_id}.mp4"
        error = error or f"Its video '{where}' is missing."
    qtype = str(record.get("type") or "").strip().upper() or None
    return choice_example(benchmark="nextqa", key=f"{split}/{doc_id}", doc_id=doc_id, doc=record,
                          video=video_id, path=path, question=str(record.get("question") or "").strip(),
                          options=options, gold=gold, task=qtype, category=CATEGORIES.get((qtype or " ")[0]),
                          error=error)


def read(root: Path, subset: tuple[str, ...]) -> tuple[list[Example], list[str]]:
    splits = [s for s in SPLITS if s in subset] or [next((s for s in SPLITS if _table(root, s)), "test")]
    rest = tuple(s for s in subset if s not in SPLITS)
    check_subset(rest, [*TYPES, *CATEGORIES.values()], "NExT-QA")
    vmap = _video_map(root)
    examples: list[Example] = []
    for split in splits:
        table = _table(root, split)
        if table is None:
            raise DatasetError(f"'{root}' has no NExT-QA {split} split (nextqa/{split}.csv or MC/{split}-*.parquet); "
                               f"a NExT-QA copy holds {LAYOUT}.")
        rows = _rows(table, root)
        examples += [_question(root, split, i, dict(r), vmap) for i, r in enumerate(rows)]
    return [e for e in examples if wanted(rest, e.task, e.category)], []


def lmms_task(ex: Example) -> str:
    return f"nextqa_mc_{ex.id.split('/')[1]}"  # lmms-eval has nextqa_mc_test; other splits follow its naming


def lmms_target(ex: Example) -> Any:
    return ex.doc.get("answer")  # nextqa_doc_to_target: the option index


def lmms_metric(ex: Example, response: str, letter: str | None) -> dict[str, Any]:
    return {"exact_match": letter == ex.answer}  # nextqa_mc_process_results


NEXTQA = register_benchmark(Benchmark(
    name="nextqa", label="NExT-QA", read=read, layout=LAYOUT, lmms_task=lmms_task, lmms_target=lmms_target,
    lmms_metric=lmms_metric,
))
