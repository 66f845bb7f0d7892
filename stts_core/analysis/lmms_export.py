"""Per-sample logs in lmms-eval's format, so the same questions can be diffed against an lmms-eval run.

One file per setting and lmms-eval task: ``<out>/lmms_eval/<setting>/samples_<task>.jsonl`` (settings as
``baseline``, ``learned_keep0.5``; tasks as lmms-eval names them: ``mvbench_action_sequence``,
``videomme``, ``nextqa_mc_test``, ``longvideobench_val_v``), one line per question in ``doc_id`` order.

Fields, as lmms-eval's ``evaluator.py`` builds a logged sample and ``loggers/evaluation_tracker.py``
(``save_results_samples``) writes it: ``doc_id`` (the question's position in the benchmark's annotation
file, lmms-eval's index into the task's split), ``doc`` (the annotation record), ``target`` (the task's
``doc_to_target``, as a string), ``input`` (the prompt), ``resps`` ``[[raw response]]``,
``filtered_resps`` ``[raw response]`` (filter ``none``), ``doc_hash`` (sha256 of the record as indented
JSON), the task's metric field (``mvbench_accuracy``, ``videomme_perception_score``, ``exact_match``,
``lvb_acc``, as its ``process_results`` returns it) and ``metrics`` naming it. Our extras sit under
``stts`` (example id, setting, extracted letter, correct). Deviations: the metric's score is ours (the
letter read by `extract_choice`, no random guess); ``doc_hash`` matches lmms-eval's only where our record
equals the HF dataset's row byte for byte; failed rows are left out (lmms-eval has no sample for them).
`diff_samples` matches our file and an lmms-eval one by ``doc_id``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stts_core.analysis.records import BASELINE
from stts_core.data.benchmarks import get_benchmark
from stts_core.data.tables import Example

FOLDER = "lmms_eval"


def setting_slug(setting: str) -> str:
    """``learned@0.5`` -> ``learned_keep0.5`` (a file-name-safe setting)."""
    if setting == BASELINE:
        return BASELINE
    scorer, _, keep = setting.partition("@")
    return f"{scorer}_keep{keep}" if keep else scorer


def doc_hash(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, indent=2, ensure_ascii=False, default=str).encode("utf-8")).hexdigest()


def sample_record(ex: Example, row: dict[str, Any]) -> dict[str, Any]:
    """One results row of a benchmark question as an lmms-eval logged sample."""
    bench = get_benchmark(str(ex.benchmark))
    raw = row.get("answer") or ""
    metric = bench.lmms_metric(ex, raw, row.get("extracted"))
    doc = dict(ex.doc)
    return {"doc_id": ex.doc_id, "doc": doc, "target": str(bench.lmms_target(ex)), "input": row.get("prompt"),
            "resps": [[raw]], "filtered_resps": [raw], "filter": "none", "metrics": list(metric),
            "doc_hash": doc_hash(doc), **metric,
            "stts": {"id": ex.id, "setting": row["setting"], "scorer": row["scorer"], "keep": row["keep"],
                     "extracted": row.get("extracted"), "extracted_by": row.get("extracted_by"),
                     "correct": row.get("correct")}}


def write_lmms_samples(out_dir: Path, rows: Sequence[dict[str, Any]], examples: Sequence[Example]) -> list[Path]:
    """Write the sample logs of every benchmark question that ran; returns the files written."""
    by_id = {ex.id: ex for ex in examples if ex.benchmark is not None and ex.doc_id is not None}
    files: dict[Path, list[dict[str, Any]]] = {}
    for row in rows:
        ex = by_id.get(str(row["id"]))
        if ex is None or row.get("error"):
            continue
        task = get_benchmark(str(ex.benchmark)).lmms_task(ex)
        path = Path(out_dir) / FOLDER / setting_slug(str(row["setting"])) / f"samples_{task}.jsonl"
        files.setdefault(path, []).append(sample_record(ex, row))
    for path, records in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        records.sort(key=lambda r: int(r["doc_id"]))
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records), encoding="utf-8")
        tmp.replace(path)
    return sorted(files)


def _response(sample: dict[str, Any]) -> str:
    """The filtered response of a logged sample, in lmms-eval's nested or flattened form."""
    value = sample.get("filtered_resps", sample.get("resps"))
    while isinstance(value, list) and value:
        value = value[0]
    return "" if value is None or value == [] else str(value)


def _key(sample: dict[str, Any], key: str) -> Any:
    """A sample's value at a dotted path (``doc_id``, ``videomme_perception_score.question_id``, ``doc.id``)."""
    value: Any = sample
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def read_samples(path: Path, key: str = "doc_id") -> dict[Any, dict[str, Any]]:
    """An lmms-eval (or our) samples file by ``key`` (samples without it are left out)."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            sample = json.loads(line)
            value = _key(sample, key)
            if value is not None:
                out[value] = sample
    return out


def diff_samples(ours: Path, theirs: Path, key: str = "doc_id") -> list[dict[str, Any]]:
    """The questions both files hold, matched by ``key`` (``doc_id``; or the benchmark's own question id
    where the two runs read differently ordered copies, e.g. ``videomme_perception_score.question_id``,
    ``lvb_acc.id``): each with both responses, both targets and whether the responses are the same text."""
    a, b = read_samples(ours, key), read_samples(theirs, key)
    return [{key: i, "target": a[i].get("target"), "their_target": b[i].get("target"), "ours": _response(a[i]),
             "theirs": _response(b[i]), "same_response": _response(a[i]).strip() == _response(b[i]).strip()}
            for i in _ordered(set(a) & set(b))]


def _ordered(values: set[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:  # ids of mixed types
        return sorted(values, key=str)
