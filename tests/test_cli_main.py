"""The `stts` front door: every verb maps to a CLI module with a `main`, an unknown verb exits 2, and
`python -m stts_core.<verb>` reaches the same code."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from stts_core.cli.main import VERBS, main, usage

SHIMS = {"ask": "ask", "analyze": "analyze", "evaluate": "evaluate", "train": "train", "fit-scorer": "scorer_fit",
         "bench": "bench", "ood": "ood", "footage": "footage", "synthetic": "synthetic"}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_each_verb_has_a_main_and_a_python_m_shim(verb: str) -> None:
    module = importlib.import_module(f"stts_core.cli.{VERBS[verb][0]}")
    assert callable(module.main)
    shim = importlib.import_module(f"stts_core.{SHIMS[verb]}" if verb != "train" else "stts_core.cli.train")
    assert shim.main is module.main


def test_usage_lists_every_verb_and_unknown_verbs_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in VERBS) and out.strip() == usage().strip()
    assert main(["frobnicate"]) == 2
    assert "unknown verb 'frobnicate'" in capsys.readouterr().err


def test_verb_help_goes_through_the_front_door() -> None:
    done = subprocess.run([sys.executable, "-m", "stts_core.cli.main", "synthetic", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "usage: stts synthetic" in done.stdout
    done = subprocess.run([sys.executable, "-m", "stts_core.train", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "usage: stts train" in done.stdout
