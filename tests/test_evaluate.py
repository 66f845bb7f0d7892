"""The evaluate CLI: a view over analyze that keeps its JSON shape, counts exact matches, and uses
the one scorer fallback rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stts_core.analysis.evaluate import evaluate, load_questions, synthetic_test_split
from stts_core.cli.evaluate import main
from stts_core.data.synthetic import SPLIT_SEEDS
from stts_core.data.tables import load_dataset
from stts_core.pipeline import RunSettings, run


def test_synthetic_split_is_the_held_out_test_seeds(tmp_path: Path) -> None:
    jsonl = synthetic_test_split(tmp_path, 12, num_frames=4)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == 12
    assert all(SPLIT_SEEDS["test"] <= r["seed"] < SPLIT_SEEDS["test"] + 1000 for r in rows)
    assert all((jsonl.parent / r["video"]).exists() for r in rows)
    grouped = load_questions(jsonl, 5)
    assert sum(len(v) for v in grouped.values()) == 5


@pytest.mark.slow
def test_accuracy_counts_exact_matches(tmp_path: Path, micro_backend) -> None:
    """Answers set to the model's own unpruned predictions must score 100% unpruned; wrong ones 0%."""
    jsonl = synthetic_test_split(tmp_path, 4, num_frames=4)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    own, wrong = [], []
    for r in rows:
        pred = run(micro_backend, jsonl.parent / r["video"], r["question"],
                   RunSettings(keep_ratio=1.0, num_frames=4, max_new_tokens=4, run_baseline=False)).stts.answer
        own.append(dict(r, answer=pred))
        wrong.append(dict(r, answer="zzz-not-an-answer"))
    for name, data, expected in (("own", own, 1.0), ("wrong", wrong, 0.0)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps(d) for d in data))
        report = evaluate(micro_backend, load_dataset(path, num_frames=4).examples, [0.5], ["random"], num_frames=4)
        assert report["unpruned"]["n"] == 4
        assert report["unpruned"]["accuracy"] == pytest.approx(expected)
        assert set(report["unpruned"]["by_type"]) == {r["qtype"] for r in rows}


def test_learned_without_trained_weights_is_reported_as_heuristic(tmp_path: Path, micro_backend, monkeypatch) -> None:
    monkeypatch.setattr(micro_backend, "has_learned_scorer", False)
    jsonl = synthetic_test_split(tmp_path, 2, num_frames=4)
    report = evaluate(micro_backend, load_dataset(jsonl, num_frames=4).examples, [0.5], ["learned", "heuristic"], 4)
    learned, heuristic = report["results"]
    assert learned["scorer"] == "learned" and learned["scorer_used"] == "heuristic"
    assert learned["accuracy"] == heuristic["accuracy"]


@pytest.mark.slow
def test_cli_writes_the_documented_json(tmp_path: Path, micro_checkpoint: Path, capsys) -> None:
    out = tmp_path / "eval.json"
    code = main(["--model", str(micro_checkpoint), "--limit", "4", "--frames", "4", "--keep", "0.5", "0.2",
                 "--scorers", "learned", "random", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report) == {"unpruned", "results", "model", "failed_rows"}
    assert set(report["unpruned"]) == {"accuracy", "n", "by_type"}
    assert report["unpruned"]["n"] == 4 and 0.0 <= report["unpruned"]["accuracy"] <= 1.0
    cells = {(r["scorer"], r["keep"]) for r in report["results"]}
    assert cells == {("learned", 0.5), ("learned", 0.2), ("random", 0.5), ("random", 0.2)}
    assert all(set(r) == {"scorer", "keep", "accuracy", "n", "by_type", "scorer_used"} for r in report["results"])
    assert all(r["n"] == 4 and 0.0 <= r["accuracy"] <= 1.0 for r in report["results"])
    printed = capsys.readouterr().out
    assert "unpruned" in printed and "learned" in printed and "keep 0.2" in printed


@pytest.mark.parametrize("bad", [["--keep", "0"], ["--keep", "nan"], ["--limit", "0"], ["--scorer", "oracle"]])
def test_cli_refuses_bad_values(micro_checkpoint: Path, bad: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--model", str(micro_checkpoint), "--limit", "1", *bad])
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err
