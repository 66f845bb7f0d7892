"""`python -m stts_core.ask`: report text, JSON output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stts_core.cli.ask import main
from stts_core.data.synthetic import make_clip
from stts_core.data.video_encode import write_video
from stts_core.pipeline import STAGES, TTFT_STAGES

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
    assert "time to 1st tok" in text and "model total" in text and "end to end" in text and "speedup:" in text


def _check_json(data: dict) -> None:
    assert isinstance(data["stts"]["answer"], str) and isinstance(data["baseline"]["answer"], str)
    assert data["keep_mask_shape"] == [4, 4]
    assert data["kept_groups"] == 8
    assert data["stts"]["visual_tokens"] == 8 and data["baseline"]["visual_tokens"] == 16
    assert data["stts"]["prompt_tokens"] == data["baseline"]["prompt_tokens"] - 8
    assert set(data["stts"]["timings_s"]) == set(STAGES) == set(data["baseline"]["timings_s"])
    assert data["settings"]["keep_ratio"] == 0.5 and data["settings"]["num_frames"] == 4
    assert data["scorer_used"] == "learned"
    for run in (data["stts"], data["baseline"]):
        assert run["ttft_s"] == pytest.approx(sum(run["timings_s"][s] for s in TTFT_STAGES))
        assert run["e2e_s"] == pytest.approx(sum(run["timings_s"].values()))
        assert run["ttft_s"] < run["model_s"] <= run["e2e_s"]
    assert data["e2e_speedup"] == pytest.approx(data["baseline"]["e2e_s"] / data["stts"]["e2e_s"])


def test_main_in_process(micro_checkpoint, mp4, tmp_path, capsys):
    out = tmp_path / "result.json"
    assert main(_args(micro_checkpoint, mp4, out)) == 0
    captured = capsys.readouterr()
    _check_report(captured.out)
    _check_json(json.loads(out.read_text()))


def test_main_subprocess(micro_checkpoint, mp4, tmp_path):
    out = tmp_path / "result.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "stts_core.ask", *_args(micro_checkpoint, mp4, out)],
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


def _exit_code(argv: list[str]) -> int:
    """main's exit status: its return value, or the code it exits with."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def test_bad_video_exits_2_before_the_model_loads(tmp_path, capsys):
    """The video is checked first: with a model that does not exist, the video's error is the one reported."""
    out = tmp_path / "result.json"
    code = _exit_code(_args(tmp_path / "no-such-model", tmp_path / "missing.mp4", out))
    captured = capsys.readouterr()
    assert code == 2
    assert len(_error_lines(captured.err)) == 1
    assert "missing.mp4" in _error_lines(captured.err)[0]
    assert "Traceback" not in captured.err
    assert not out.exists()


def test_text_file_named_mp4_exits_2(micro_checkpoint, tmp_path, capsys):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    assert _exit_code(_args(micro_checkpoint, fake)) == 2
    assert len(_error_lines(capsys.readouterr().err)) == 1


BAD_VALUES = [("--keep", "0"), ("--keep", "1.5"), ("--keep", "nan"), ("--keep", "-0.5"), ("--frames", "0"),
              ("--frames", "4.5"), ("--frames", "100000"), ("--max-new-tokens", "0"), ("--question", ""),
              ("--question", "   "), ("--question", "\ud800"), ("--question", "x" * 2001), ("--scorer", "best"),
              ("--seed", "-1"), ("--dtype", "int8"), ("--json", "")]


@pytest.mark.parametrize(("flag", "value"), BAD_VALUES, ids=lambda v: repr(v)[:20])
def test_bad_values_exit_2_with_one_argparse_line(mp4, tmp_path, capsys, flag, value):
    """Refused while parsing, so no model is needed (the path given does not exist)."""
    args = _args(tmp_path / "no-such-model", mp4)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    assert _exit_code(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and flag in lines[0], err


def test_unwritable_json_exits_2(micro_checkpoint, mp4, tmp_path, capsys):
    out = tmp_path / "no-such-folder" / "result.json"
    assert _exit_code(_args(micro_checkpoint, mp4, out, "--no-baseline")) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "result.json" in lines[0]


def test_bad_model_exits_2(tmp_path, mp4, capsys):
    source = tmp_path / "no-model"
    source.mkdir()
    assert _exit_code(_args(source, mp4)) == 2
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert len(lines) == 1 and str(source) in lines[0]


def test_several_settings_share_one_video_and_one_baseline(micro_checkpoint, mp4, tmp_path, capsys):
    """--keep 0.5 0.25 --scorer learned random: four settings, a JSON list in that order, one baseline."""
    out = tmp_path / "results.json"
    args = _args(micro_checkpoint, mp4, out)
    args[args.index("--keep") + 1: args.index("--keep") + 2] = ["0.5", "0.25"]
    assert main([*args, "--scorer", "learned", "random"]) == 0
    text = capsys.readouterr().out
    assert text.count("STTS answer") == 4
    data = json.loads(out.read_text())
    assert isinstance(data, list)
    assert [(d["settings"]["keep_ratio"], d["scorer_used"]) for d in data] == [
        (0.5, "learned"), (0.5, "random"), (0.25, "learned"), (0.25, "random")]
    assert [d["kept_groups"] for d in data] == [8, 8, 4, 4]  # 4 frames x 4 groups
    assert all(d["baseline"] == data[0]["baseline"] for d in data)
    assert all(d["ttft_speedup"] == pytest.approx(d["baseline"]["ttft_s"] / d["stts"]["ttft_s"]) for d in data)
    assert all(any("measured once" in n for n in d["notes"]) for d in data[1:])


def test_old_flag_spellings_still_work(micro_checkpoint, mp4, capsys):
    args = _args(micro_checkpoint, mp4, None, "--no-baseline", "--scorers", "heuristic")
    args[args.index("--max-new-tokens")] = "--new-tokens"
    assert main(args) == 0
    assert "scorer heuristic" in capsys.readouterr().out


def test_timed_runs_follow_an_untimed_warm_up_unless_asked_not_to(micro_checkpoint, mp4, tmp_path):
    warm, cold = tmp_path / "warm.json", tmp_path / "cold.json"
    assert main(_args(micro_checkpoint, mp4, warm)) == 0
    assert main(_args(micro_checkpoint, mp4, cold, "--no-warmup")) == 0
    warm_data, cold_data = json.loads(warm.read_text()), json.loads(cold.read_text())
    assert warm_data["warmup"] is False and not any("warm-up" in n for n in warm_data["notes"])
    assert cold_data["warmup"] is True and any("warm-up" in n for n in cold_data["notes"])
