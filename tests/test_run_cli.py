"""`python -m stts_core.run`: report text, JSON output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stts_core.pipeline import STAGES
from stts_core.run import main
from stts_core.synthetic import make_clip
from stts_core.video import write_video

QUESTION = "how many objects are there ?"


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("cli-videos") / "clip.mp4", make_clip(2, num_frames=12).frames)


def _args(model: Path, video: Path, out: Path | None = None, *extra: str) -> list[str]:
    args = ["--model", str(model), "--video", str(video), "--question", QUESTION,
            "--keep", "0.5", "--frames", "4", "--max-new-tokens", "3", *extra]
    if out is not None:
        args += ["--json", str(out)]
    return args


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("error: ")]


def _check_report(text: str) -> None:
    assert "baseline answer" in text and "STTS answer" in text
    assert "visual tokens   : 16 -> 8" in text
    for stage in STAGES:
        assert stage in text
    assert "time to 1st tok" in text and "speedup:" in text


def _check_json(data: dict) -> None:
    assert isinstance(data["stts"]["answer"], str) and isinstance(data["baseline"]["answer"], str)
    assert data["keep_mask_shape"] == [4, 4]
    assert data["kept_groups"] == 8
    assert data["stts"]["visual_tokens"] == 8 and data["baseline"]["visual_tokens"] == 16
    assert data["stts"]["prompt_tokens"] == data["baseline"]["prompt_tokens"] - 8
    assert set(data["stts"]["timings_s"]) == set(STAGES) == set(data["baseline"]["timings_s"])
    assert data["settings"]["keep_ratio"] == 0.5 and data["settings"]["num_frames"] == 4
    assert data["scorer_used"] == "learned"


def test_main_in_process(micro_checkpoint, mp4, tmp_path, capsys):
    out = tmp_path / "result.json"
    assert main(_args(micro_checkpoint, mp4, out)) == 0
    captured = capsys.readouterr()
    _check_report(captured.out)
    _check_json(json.loads(out.read_text()))


def test_main_subprocess(micro_checkpoint, mp4, tmp_path):
    out = tmp_path / "result.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "stts_core.run", *_args(micro_checkpoint, mp4, out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    _check_report(proc.stdout)
    _check_json(json.loads(out.read_text()))


def test_main_no_baseline(micro_checkpoint, mp4, capsys):
    assert main(_args(micro_checkpoint, mp4, None, "--no-baseline", "--scorer", "random")) == 0
    text = capsys.readouterr().out
    assert "baseline answer" not in text
    assert "visual tokens   : 8" in text
    assert "scorer random" in text


def test_bad_video_exits_2(micro_checkpoint, tmp_path, capsys):
    out = tmp_path / "result.json"
    code = main(_args(micro_checkpoint, tmp_path / "missing.mp4", out))
    captured = capsys.readouterr()
    assert code == 2
    assert len(_error_lines(captured.err)) == 1
    assert "missing.mp4" in _error_lines(captured.err)[0]
    assert "Traceback" not in captured.err
    assert not out.exists()


@pytest.mark.parametrize(("flag", "value"), [("--keep", "0"), ("--keep", "1.5"), ("--frames", "0")])
def test_bad_settings_exit_2(micro_checkpoint, mp4, capsys, flag, value):
    args = _args(micro_checkpoint, mp4)
    args[args.index(flag) + 1] = value
    assert main(args) == 2
    assert len(_error_lines(capsys.readouterr().err)) == 1


def test_bad_model_exits_2(tmp_path, mp4, capsys):
    source = tmp_path / "no-model"
    source.mkdir()
    assert main(_args(source, mp4)) == 2
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert len(lines) == 1 and str(source) in lines[0]
