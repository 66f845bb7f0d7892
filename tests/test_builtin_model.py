"""The shipped built-in model: a real check of the artifact in assets/stts-tiny.

What it is checked for is what it reliably does today (see its model card): it loads through the
normal loader, carries trained scorer weights and its STTS settings, and answers every held-out
question with a word of the right kind. Its accuracy is reported by `python -m stts_core.evaluate`.
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
