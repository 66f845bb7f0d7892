"""The evaluate CLI: report format, counting, and the held-out synthetic split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stts_core.evaluate import evaluate, load_questions, main, synthetic_test_split
from stts_core.pipeline import RunSettings, run
from stts_core.synthetic import SPLIT_SEEDS


def test_synthetic_split_is_the_held_out_test_seeds(tmp_path: Path) -> None:
    jsonl = synthetic_test_split(tmp_path, 12, num_frames=4)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) >= 12
    assert all(SPLIT_SEEDS["test"] <= r["seed"] < SPLIT_SEEDS["test"] + 1000 for r in rows)
    assert all((jsonl.parent / r["video"]).exists() for r in rows)
    grouped = load_questions(jsonl, 5)
    assert sum(len(v) for v in grouped.values()) == 5


def test_accuracy_counts_exact_matches(tmp_path: Path, micro_backend) -> None:
    """Answers set to the model's own unpruned predictions must score 100% unpruned; wrong ones 0%."""
    jsonl = synthetic_test_split(tmp_path, 6, num_frames=4)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()][:6]
    own, wrong = [], []
    for r in rows:
        pred = run(micro_backend, jsonl.parent / r["video"], r["question"],
                   RunSettings(keep_ratio=1.0, num_frames=4, max_new_tokens=4, run_baseline=False)).stts.answer
        own.append(dict(r, answer=pred))
        wrong.append(dict(r, answer="zzz-not-an-answer"))
    for name, data, expected in (("own", own, 1.0), ("wrong", wrong, 0.0)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps(d) for d in data))
        report = evaluate(micro_backend, load_questions(path, None), [0.5], ["random"], num_frames=4)
        assert report["unpruned"]["n"] == 6
        assert report["unpruned"]["accuracy"] == pytest.approx(expected)


def test_cli_writes_the_documented_json(tmp_path: Path, micro_checkpoint: Path, capsys) -> None:
    out = tmp_path / "eval.json"
    code = main(["--model", str(micro_checkpoint), "--limit", "4", "--frames", "4", "--keep", "0.5", "0.2",
                 "--scorers", "learned", "random", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["unpruned"]["n"] == 4 and 0.0 <= report["unpruned"]["accuracy"] <= 1.0
    cells = {(r["scorer"], r["keep"]) for r in report["results"]}
    assert cells == {("learned", 0.5), ("learned", 0.2), ("random", 0.5), ("random", 0.2)}
    assert all(r["n"] == 4 and 0.0 <= r["accuracy"] <= 1.0 for r in report["results"])
    printed = capsys.readouterr().out
    assert "unpruned" in printed and "learned" in printed and "keep 0.2" in printed


@pytest.mark.parametrize("bad", [["--keep", "0"], ["--keep", "nan"]])
def test_cli_refuses_bad_keep(micro_checkpoint: Path, bad: list[str]) -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        main(["--model", str(micro_checkpoint), "--limit", "1", *bad])
