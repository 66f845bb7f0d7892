"""The shipped built-in model: a real check of the artifact in assets/stts-tiny.

It loads through the normal loader, carries trained scorer weights and its STTS settings, answers
every held-out question with a word of the right kind, and reads the video: on a fixed 64-question
held-out subset it measured 95.3% (61/64) unpruned and 90.6% (58/64) with STTS at keep 0.5, against
32% for answering each question type's prior. Both must reach 85%.
The full accuracy table comes from `python -m stts_core.evaluate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stts_core.evaluate import load_questions, synthetic_test_split
from stts_core.pipeline import RunSettings, run
from stts_core.run import DEFAULT_MODEL, load_backend
from stts_core.synthetic import ANSWERS

QUESTIONS = 32
ACCURACY_QUESTIONS = 64
ACCURACY_FLOOR = 0.85  # measured 61/64 unpruned, 58/64 STTS at keep 0.5; the prior gives about 0.32


@pytest.fixture(scope="module")
def builtin():
    assert Path(DEFAULT_MODEL, "config.json").exists(), f"the built-in model is missing from {DEFAULT_MODEL}"
    return load_backend(DEFAULT_MODEL, device="cpu")


def test_artifact_is_small_safetensors_with_a_trained_scorer(builtin) -> None:
    folder = Path(DEFAULT_MODEL)
    files = list(folder.iterdir())
    assert sum(f.stat().st_size for f in files) <= 25 * 1024**2
    assert (folder / "model.safetensors").exists()
    assert not [f for f in files if f.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    assert builtin.has_learned_scorer
    stts = json.loads((folder / "config.json").read_text())["stts"]
    assert stts["keep_ratio"] == 0.5 and stts["layer"] == builtin.scoring_layer


def test_answers_held_out_questions_with_words_of_the_right_kind(builtin, tmp_path: Path) -> None:
    jsonl = synthetic_test_split(tmp_path, QUESTIONS, num_frames=16)
    questions = load_questions(jsonl, QUESTIONS)
    checked = 0
    for video, rows in questions.items():
        for row in rows:
            result = run(builtin, video, row["question"], RunSettings(keep_ratio=0.5, num_frames=16,
                                                                       max_new_tokens=4))
            for answer in (result.baseline.answer, result.stts.answer):
                assert answer in ANSWERS[row["qtype"]], (row["question"], answer)
            checked += 1
    assert checked == QUESTIONS


def test_reads_the_video_on_a_fixed_held_out_subset(builtin, tmp_path: Path) -> None:
    jsonl = synthetic_test_split(tmp_path, ACCURACY_QUESTIONS, num_frames=16)
    rows = [(video, row) for video, group in load_questions(jsonl, ACCURACY_QUESTIONS).items() for row in group]
    assert len(rows) == ACCURACY_QUESTIONS
    unpruned = pruned = 0
    for video, row in rows:
        result = run(builtin, video, row["question"], RunSettings(keep_ratio=0.5, num_frames=16, max_new_tokens=4))
        unpruned += result.baseline.answer == row["answer"]
        pruned += result.stts.answer == row["answer"]
    assert unpruned / len(rows) >= ACCURACY_FLOOR, f"unpruned accuracy {unpruned}/{len(rows)}"
    assert pruned / len(rows) >= ACCURACY_FLOOR, f"STTS keep 0.5 accuracy {pruned}/{len(rows)}"
