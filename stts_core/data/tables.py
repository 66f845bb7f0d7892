"""Question tables: the examples a batch analysis runs, from a CSV / JSONL table with its videos, a
folder or .zip holding one, or the built-in synthetic split (``synthetic:test[:N]``).

A table has the columns ``video`` and ``question`` and optionally ``answer``, ``type``, ``id``. Every row
becomes an `Example`; a row that cannot be run (no video named, an empty question, a path that leaves
the dataset folder, a line that is not JSON) keeps its error, so it is reported, not dropped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stts_core.data.question import validate_question
from stts_core.data.video import VideoLimits

TABLE_NAMES = ("questions.csv", "questions.jsonl")
MAX_TABLE_BYTES = 20 * 1024**2
MAX_ZIP_MEMBERS = 10_000
MAX_ZIP_BYTES = 4 * 1024**3
DEFAULT_SYNTHETIC = 200


class DatasetError(ValueError):
    """A dataset that cannot be used at all (no question table, missing columns, too many rows);
    ``str(err)`` is one sentence."""




@dataclass(frozen=True)
class Example:
    """One question about one video. ``error`` is set when the row cannot be run (it is still recorded)."""

    id: str  # stable key for resuming: the row's own id, else position + a hash of video and question
    index: int  # position in the dataset; results are written in this order
    video: str  # as written in the data
    path: Path | None  # the resolved file
    question: str
    answer: str | None = None  # multiple choice: the gold option's letter
    type: str | None = None
    error: str | None = None
    # Multiple choice and benchmarks (stts_core.data.benchmarks); a free-form question leaves them empty.
    options: tuple[str, ...] = ()  # option texts in letter order (A, B, ...), without their letters
    benchmark: str | None = None  # registry name of the benchmark the question comes from
    task: str | None = None  # the benchmark's task or question type (its per-task table rows)
    category: str | None = None  # a coarser grouping the benchmark reports (domain, C/T/D, level)
    duration: str | None = None  # the benchmark's duration class (short/medium/long, 8-15s, ...)
    span: tuple[float, float] | None = None  # the part of the video the question is about, seconds
    doc_id: int | None = None  # position in the benchmark's own annotation file (lmms-eval's doc_id)
    doc: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # the annotation row

    @property
    def is_choice(self) -> bool:
        """A multiple-choice question: answered by a letter, graded against the gold letter."""
        return bool(self.options)


@dataclass
class Dataset:
    examples: list[Example]
    source: str
    root: Path | None  # folder the videos were resolved against
    notes: list[str] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)
    limits: VideoLimits | None = None  # video limits the source needs (long benchmark videos), else the default
    _parts: list[Dataset] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Remove files this dataset extracted or generated into its own temporary folder."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        for part in self._parts:
            part.close()


_SYNTHETIC = re.compile(r"^synthetic(?:-(plain|rich|mixed))?:(train|val|test)(?::(\d+)|\[:(\d+)\])?$")


def load_dataset(
    source: str | Path,
    workdir: str | Path | None = None,
    video_dir: str | Path | None = None,
    limit: int | None = None,
    max_examples: int | None = None,
    num_frames: int = 16,
    allow_outside: bool = True,
    subset: Sequence[str] | str | None = None,
) -> Dataset:
    """Examples from ``synthetic:test[:N]``, a questions.csv / .jsonl file, a folder holding one, a .zip,
    or a benchmark's local copy in its published layout (``mvbench:/path/to/MVBench``, see
    `stts_core.data.benchmarks`).

    ``workdir`` receives generated clips and extracted zips (a temporary folder removed by
    ``Dataset.close()`` when None). Videos are looked up relative to ``video_dir`` (default: the
    question table's folder); with ``allow_outside=False`` (uploads) a path that leaves that folder is
    refused for its row. ``limit`` keeps the first N rows (a benchmark: the first questions of each task
    in turn); more than ``max_examples`` rows is an error. ``subset`` keeps a benchmark's named tasks,
    splits or classes, and a table's rows of those question types.
    """
    text = str(source).strip()
    wanted = _subset(subset)
    from stts_core.data.benchmarks import find_benchmark  # the readers build on this module's records

    benchmark = find_benchmark(text)
    if benchmark is not None:
        return benchmark.load(text, limit=limit, subset=wanted, max_examples=max_examples)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="stts-analyze-")
        workdir = tmp.name
    try:
        if text.startswith(("synthetic:", "synthetic-")):
            table, base = _synthetic_table(text, Path(workdir), limit, num_frames), None
        else:
            table, base = _find_table(Path(text).expanduser(), Path(workdir))
        records = _read_table(table)
        if wanted:
            records = [r for r in records if (_text(r.get("type")) or "").lower() in wanted]
        if limit is not None:
            records = records[:limit]
        if max_examples is not None and len(records) > max_examples:
            raise DatasetError(f"The dataset has {len(records)} questions; at most {max_examples} can be "
                               "analysed in one run (ask for fewer).")
        if not records:
            raise DatasetError(f"'{table.name}' has no questions in it.")
        root = Path(video_dir) if video_dir is not None else (base or table.parent)
        examples = [_example(i, rec, root, allow_outside) for i, rec in enumerate(records)]
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    return Dataset(examples=examples, source=text, root=root, _tmp=tmp)


def _subset(subset: Sequence[str] | str | None) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` as lower-case names (empty: everything)."""
    items = subset.split(",") if isinstance(subset, str) else list(subset or ())
    return tuple(dict.fromkeys(s.strip().lower() for s in items if s and s.strip()))


def combine_datasets(parts: Sequence[Dataset]) -> Dataset:
    """Several datasets as one (e.g. every benchmark of a paper-style table): examples renumbered in order,
    ids kept (they must not collide), notes joined; closing it closes every part."""
    if len(parts) == 1:
        return parts[0]
    examples: list[Example] = []
    seen: set[str] = set()
    for part in parts:
        for ex in part.examples:
            if ex.id in seen:
                raise DatasetError(f"Two datasets both have a question with the id '{ex.id}'; give one of them "
                                   "other ids.")
            seen.add(ex.id)
            examples.append(replace(ex, index=len(examples)))
    limits = [p.limits for p in parts if p.limits is not None]
    return Dataset(examples=examples, source=" ".join(p.source for p in parts), root=None,
                   notes=[n for p in parts for n in p.notes],
                   limits=max(limits, key=lambda lim: lim.max_duration_s) if limits else None,
                   _parts=list(parts))


def _synthetic_table(spec: str, workdir: Path, limit: int | None, num_frames: int) -> Path:
    match = _SYNTHETIC.match(spec)
    if match is None:
        raise DatasetError(f"'{spec}' is not a synthetic split; write synthetic:test or synthetic:test:N.")
    world, split = match.group(1) or "plain", match.group(2)
    count = int(match.group(3) or match.group(4) or DEFAULT_SYNTHETIC)
    if limit is not None:
        count = min(count, limit)
    if count < 1:
        raise DatasetError("A synthetic split needs at least one question.")
    folder = workdir / (f"synthetic-{split}-{num_frames}f" if world == "plain" else f"synthetic-{world}-{split}-{num_frames}f")
    return synthetic_split(folder, split, count, num_frames, world)


def synthetic_split(out_dir: Path, split: str, num_questions: int, num_frames: int, world: str = "plain") -> Path:
    """Clips of a synthetic split written as mp4 (read back through the app's decoder) with at least
    ``num_questions`` questions; an existing folder with enough questions is reused. Returns the JSONL,
    whose rows are truncated to exactly ``num_questions``."""
    from stts_core.data.synthetic import write_split

    out_dir = Path(out_dir)
    jsonl = out_dir / f"{split}.jsonl"
    if _enough_rows(jsonl, num_questions):
        return _first_rows(jsonl, num_questions)
    clips = max(1, num_questions // 2 + 8)
    while True:
        written = write_split(out_dir, split, clips, num_frames=num_frames, world=world)
        if _enough_rows(written, num_questions):
            return _first_rows(written, num_questions)
        clips = int(clips * 1.3) + 1


def _enough_rows(jsonl: Path, n: int) -> bool:
    if not jsonl.exists():
        return False
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return len(rows) >= n and all((jsonl.parent / r["video"]).exists() for r in rows[:n])


def _first_rows(jsonl: Path, n: int) -> Path:
    lines = [line for line in jsonl.read_text().splitlines() if line.strip()][:n]
    out = jsonl.with_name(f"{jsonl.stem}-{n}.jsonl")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)  # atomic: other ranks may read it at the same time
    return out


def _find_table(path: Path, workdir: Path) -> tuple[Path, Path | None]:
    """The question table for a file, folder or zip, and the folder videos are relative to."""
    if not path.exists():
        raise DatasetError(f"There is no dataset at '{path}': give a folder with questions.csv or "
                           "questions.jsonl, one of those files, a .zip, or synthetic:test[:N].")
    if path.is_file() and path.suffix.lower() == ".zip":
        if not zipfile.is_zipfile(path):
            raise DatasetError(f"'{path.name}' is not a readable zip file.")
        path = extract_zip(path, workdir / f"zip-{path.stem}")
    if path.is_file():
        if path.suffix.lower() not in (".csv", ".jsonl"):
            raise DatasetError(f"'{path.name}' is not a question table; use a .csv or .jsonl file.")
        return path, None
    for folder in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
        found = [folder / n for n in TABLE_NAMES if (folder / n).is_file()]
        if len(found) > 1:
            raise DatasetError(f"'{folder.name}' has both questions.csv and questions.jsonl; keep one.")
        if found:
            return found[0], folder
    raise DatasetError(f"'{path.name}' has no questions.csv or questions.jsonl.")


def extract_zip(path: Path, dest: Path, max_bytes: int = MAX_ZIP_BYTES) -> Path:
    """Extract a zip safely: no absolute or escaping paths, no links, bounded member count and size
    (counted while copying, so a lying header cannot get past the bound)."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise DatasetError(f"The zip has {len(members)} files; at most {MAX_ZIP_MEMBERS} are accepted.")
        budget = max_bytes
        for member in members:
            if stat.S_ISLNK(member.external_attr >> 16):
                raise DatasetError(f"The zip holds a link ('{member.filename}'); only plain files are accepted.")
            target = (root / member.filename).resolve()
            if not target.is_relative_to(root) or Path(member.filename).is_absolute():
                raise DatasetError(f"The zip holds an unsafe path ('{member.filename}').")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, target.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    budget -= len(chunk)
                    if budget < 0:
                        raise DatasetError(f"The zip unpacks to more than {max_bytes / 1024**3:g} GB.")
                    dst.write(chunk)
    return root


def _read_table(table: Path) -> list[dict[str, Any]]:
    """Rows of a CSV or JSONL question table as dicts with lower-case keys. A JSONL line that is not a
    JSON object becomes a row with an ``_error`` so it is reported, not silently dropped."""
    if table.stat().st_size > MAX_TABLE_BYTES:
        raise DatasetError(f"'{table.name}' is larger than {MAX_TABLE_BYTES // 1024**2} MB.")
    try:
        text = table.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"'{table.name}' is not UTF-8 text.") from None
    if table.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        fields = [(f or "").strip().lower() for f in reader.fieldnames or []]
        records = [{(k or "").strip().lower(): v for k, v in row.items()} for row in reader]
    else:
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                records.append(_json_record(line, number))
        fields = sorted({k for r in records for k in r if not k.startswith("_")})
    missing = [c for c in ("video", "question") if c not in fields]
    if missing:
        raise DatasetError(f"'{table.name}' needs the columns video and question (missing: {', '.join(missing)}).")
    return records


def _json_record(line: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        return {"_error": f"Line {number} is not valid JSON ({err.msg})."}
    if not isinstance(value, dict):
        return {"_error": f"Line {number} is not a JSON object."}
    return {str(k).strip().lower(): v for k, v in value.items()}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _example(index: int, rec: dict[str, Any], root: Path, allow_outside: bool) -> Example:
    video = _text(rec.get("video")) or ""
    raw_question = rec.get("question")
    error = rec.get("_error")
    try:
        question = validate_question(raw_question if isinstance(raw_question, str) else str(raw_question or ""))
    except ValueError as err:
        question, error = str(raw_question or ""), error or str(err)
    path, path_error = _resolve_video(video, root, allow_outside)
    digest = hashlib.sha1(f"{video}\n{question}".encode("utf-8", "replace")).hexdigest()[:8]
    return Example(id=_text(rec.get("id")) or f"{index:05d}-{digest}", index=index, video=video, path=path,
                   question=question, answer=_text(rec.get("answer")),
                   type=_text(rec.get("type")) or _text(rec.get("qtype")), error=error or path_error)


def _resolve_video(video: str, root: Path, allow_outside: bool) -> tuple[Path | None, str | None]:
    if not video:
        return None, "No video file is named in this row."
    given = Path(video).expanduser()
    path = (given if given.is_absolute() else root / given).resolve()
    if not allow_outside and not path.is_relative_to(root.resolve()):
        return None, f"The video path '{video}' leaves the dataset folder."
    return path, None


