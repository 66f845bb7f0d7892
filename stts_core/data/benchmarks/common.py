"""What the benchmark readers share: reading an annotation file with an error that names it, finding a
video among the places a layout may keep it, the subset rule, and one `Example` per multiple-choice
question (its options checked, its gold letter derived)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from stts_core.data.benchmarks.choices import letter_of
from stts_core.data.question import validate_question
from stts_core.data.tables import DatasetError, Example

MAX_ANNOTATION_BYTES = 256 * 1024**2


def rel(path: Path, root: Path) -> str:
    """``path`` as the user knows it: relative to the benchmark folder where it lies inside it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def read_json(path: Path, root: Path) -> Any:
    """A JSON (or JSON Lines, by suffix) annotation file; a DatasetError naming the file when it is missing,
    too large or not valid JSON."""
    name = rel(path, root)
    if not path.is_file():
        raise DatasetError(f"'{name}' is missing.")
    if path.stat().st_size > MAX_ANNOTATION_BYTES:
        raise DatasetError(f"'{name}' is larger than {MAX_ANNOTATION_BYTES // 1024**2} MB.")
    try:
        text = path.read_bytes().decode("utf-8-sig")
        if path.suffix.lower() == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except UnicodeDecodeError:
        raise DatasetError(f"'{name}' is not UTF-8 text.") from None
    except json.JSONDecodeError as err:
        raise DatasetError(f"'{name}' is not valid JSON (line {err.lineno}: {err.msg}).") from None


def read_parquet(path: Path, root: Path) -> list[dict[str, Any]]:
    """Rows of a parquet annotation file as plain Python values (lists, not numpy arrays)."""
    name = rel(path, root)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(f"Reading '{name}' needs pyarrow (pip install pyarrow).") from None
    try:
        return pq.read_table(path).to_pylist()
    except (OSError, ValueError) as err:
        raise DatasetError(f"'{name}' is not a readable parquet file ({str(err).splitlines()[0]}).") from None


def records_of(value: Any, name: str) -> list[Mapping[str, Any]]:
    """The list of annotation records a file holds (a list of objects)."""
    if not isinstance(value, list) or not all(isinstance(r, Mapping) for r in value):
        raise DatasetError(f"'{name}' does not hold a list of question records.")
    return value


def first_file(root: Path, candidates: Iterable[str]) -> Path | None:
    """The first of ``candidates`` (paths relative to ``root``, globs allowed) that exists."""
    for pattern in candidates:
        hits = sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]
        for hit in hits:
            if hit.is_file():
                return hit
    return None


def find_video(folders: Sequence[Path], name: str, suffixes: Sequence[str] = ()) -> Path | None:
    """The video ``name`` in the first folder that has it, also under the alternative ``suffixes``
    (".mp4", ".MP4", ".mkv": copies re-encoded or renamed by their downloaders)."""
    stem = Path(name)
    for folder in folders:
        for candidate in (stem, *(stem.with_suffix(s) for s in suffixes)):
            path = folder / candidate
            if path.exists():
                return path
    return None


def wanted(subset: tuple[str, ...], *labels: str | None) -> bool:
    """The subset rule: an empty subset keeps everything, else any of the labels must be named in it."""
    return not subset or any(label is not None and str(label).lower() in subset for label in labels)


def check_subset(subset: tuple[str, ...], known: Iterable[str | None], label: str) -> None:
    """A subset name that matches nothing the benchmark has is a typo: say which names exist."""
    names = {str(k).lower() for k in known if k is not None}
    unknown = [s for s in subset if s not in names]
    if unknown:
        raise DatasetError(f"{label} has no subset {', '.join(unknown)}; choose from {', '.join(sorted(names))}.")


def plain(value: Any) -> Any:
    """An annotation value as JSON-able Python (numpy scalars and arrays from parquet readers included)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    return value


def choice_example(*, benchmark: str, key: str, doc_id: int, doc: Mapping[str, Any], video: str,
                   path: Path | None, question: Any, options: Sequence[Any], gold: int | None,
                   task: str | None = None, category: str | None = None, duration: str | None = None,
                   span: tuple[float, float] | None = None, error: str | None = None) -> Example:
    """One multiple-choice question; a problem with it (no question, fewer than two options, a gold
    answer that is not one of them, no video) becomes its ``error``."""
    texts = tuple(str(o).strip() for o in options)
    problems = [error] if error else []
    try:
        text = validate_question(question if isinstance(question, str) else "")
    except ValueError as err:
        text = str(question or "")
        problems.append("The question is empty." if not text.strip() else str(err))
    if len(texts) < 2 or not all(texts):
        problems.append(f"It has {len([t for t in texts if t])} non-empty options; a multiple-choice question needs "
                        "at least two.")
    if gold is not None and not 0 <= gold < len(texts):
        problems.append(f"Its gold answer (option {gold}) is not one of its {len(texts)} options.")
    if path is None and not error:
        problems.append("No video file is named.")
    return Example(id=f"{benchmark}/{key}", index=doc_id, video=video, path=path, question=text,
                   answer=letter_of(gold) if gold is not None and 0 <= gold < len(texts) else None,
                   type=task, error=problems[0] if problems else None, options=texts, benchmark=benchmark,
                   task=task, category=category, duration=duration, span=span, doc_id=doc_id, doc=plain(doc))


def file_error(benchmark: str, key: str, message: str, task: str | None = None) -> Example:
    """An annotation file that cannot be read, as one failed row (the rest of the benchmark still runs)."""
    return Example(id=f"{benchmark}/{key}", index=0, video="", path=None, question="", error=message,
                   benchmark=benchmark, task=task, type=task)
