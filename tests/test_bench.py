"""`python -m stts_core.bench`: the report it writes, and timers that cover queued CUDA work."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from stts_core.analysis import bench
from stts_core.analysis.bench import (
    INFERENCE_CELL_KEYS,
    INFERENCE_STAGES,
    TRAIN_CELL_KEYS,
    TRAIN_STAGES,
    _error_cell,
    format_table,
    write_html,
)
from stts_core.cli.bench import main
from stts_core.timing import StageTimer

REPO = Path(__file__).resolve().parent.parent


def _check_header(report: dict, preset: str, mode: str) -> None:
    assert isinstance(report["device"], str) and report["device"]
    for lib in ("torch", "transformers", "python"):
        assert isinstance(report["versions"][lib], str)
    assert report["preset"] == preset and report["model"] is None
    assert report["mode"] == mode
    assert dt.datetime.fromisoformat(report["date"]).tzinfo is not None
    assert report["command"].startswith("stts bench") and f"--preset {preset}" in report["command"]
    assert isinstance(report["cells"], list) and report["cells"]


ROOFLINE_KEYS = {"prompt_tokens", "prefill_tflops", "prefill_mfu", "decode_gb", "decode_bw_util"}


def _check_stages(stages: dict, names: tuple[str, ...]) -> None:
    assert set(stages) == {"baseline", "stts"}
    for run in stages.values():
        assert set(names) <= set(run) and set(run) - set(names) <= ROOFLINE_KEYS
        assert all(isinstance(v, float) and v >= 0 for v in run.values())


def _check_pair(values: list, kind: type | tuple[type, ...]) -> None:
    assert isinstance(values, list) and len(values) == 2
    assert all(isinstance(v, kind) for v in values)


@pytest.mark.slow
def test_cli_inference_on_tiny(tmp_path: Path) -> None:
    out_json, out_html = tmp_path / "bench.json", tmp_path / "bench.html"
    cmd = [sys.executable, "-m", "stts_core.bench", "--preset", "tiny", "--frames", "4", "--keep", "1.0", "0.5",
           "--repeats", "1", "--new-tokens", "2", "--threads", "1", "--json", str(out_json), "--html", str(out_html)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 60, f"the tiny benchmark took {elapsed:.1f} s"
    assert "TTFT base ms" in proc.stdout and "vit_pre" in proc.stdout

    report = json.loads(out_json.read_text())
    _check_header(report, "tiny", "inference")
    assert report["settings"]["new_tokens"] == 2 and report["settings"]["threads"] == 1
    if sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION"):  # the CLI kept freed host memory
        assert "retained" in report["settings"]["host_allocator"]
    cells = {c["keep"]: c for c in report["cells"]}
    assert set(cells) == {1.0, 0.5}
    for cell in cells.values():
        assert set(cell) == set(INFERENCE_CELL_KEYS)
        assert cell["frames"] == 4 and cell["repeats"] == 1 and cell["error"] is None
        for key in ("ttft_speedup", "e2e_speedup", "baseline_ttft_s", "stts_ttft_s", "baseline_e2e_s", "stts_e2e_s"):
            assert isinstance(cell[key], float) and cell[key] > 0, key
        assert isinstance(cell["overhead_pct"], float) and cell["overhead_pct"] > 0
        assert isinstance(cell["ttft_delta_pct"], float)
        _check_pair(cell["visual_tokens"], int)
        _check_pair(cell["vit_suffix_tokens"], int)
        _check_pair(cell["peak_mem_gb"], (float, type(None)))
        _check_stages(cell["stages_s"], INFERENCE_STAGES)
        assert cell["stages_s"]["baseline"]["scoring"] < 1e-3 and cell["stages_s"]["baseline"]["packing"] == 0
    base, stts = cells[0.5]["visual_tokens"]
    assert stts < base and stts == base // 2
    assert cells[0.5]["vit_suffix_tokens"][1] < cells[0.5]["vit_suffix_tokens"][0]
    assert cells[0.5]["stages_s"]["stts"]["packing"] > 0
    assert cells[1.0]["visual_tokens"][0] == cells[1.0]["visual_tokens"][1] == base
    assert cells[1.0]["stages_s"]["stts"]["packing"] == 0

    html = out_html.read_text()
    assert 'class="plotly-graph-div"' in html
    assert not re.search(r"<script[^>]*\ssrc=", html)  # nothing fetched from a CDN: the chart works offline
    assert len(html) > 1_000_000  # plotly.js itself is embedded


def test_train_cells_on_micro(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "train.json"
    args = ["--preset", "micro", "--train", "--frames", "4", "--keep", "1.0", "0.5", "--repeats", "1",
            "--threads", "1", "--json", str(out_json)]
    assert main(args) == 0
    assert "step base ms" in capsys.readouterr().out
    report = json.loads(out_json.read_text())
    _check_header(report, "micro", "train")
    cells = {c["keep"]: c for c in report["cells"]}
    for cell in cells.values():
        assert set(cell) == set(TRAIN_CELL_KEYS)
        assert cell["error"] is None and cell["repeats"] == 1
        for key in ("step_speedup", "baseline_step_s", "stts_step_s"):
            assert isinstance(cell[key], float) and cell[key] > 0
        _check_stages(cell["stages_s"], TRAIN_STAGES)
        _check_pair(cell["visual_tokens"], int)
    assert cells[1.0]["visual_tokens"] == [16, 16]
    assert cells[0.5]["visual_tokens"] == [16, 8]


def test_train_with_grad_checkpointing_on_micro(tmp_path: Path) -> None:
    out_json = tmp_path / "train.json"
    assert main(["--preset", "micro", "--train", "--grad-checkpoint", "--frames", "4", "--keep", "0.5",
                 "--repeats", "1", "--threads", "1", "--json", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    assert report["settings"]["grad_checkpoint"] is True
    assert report["cells"][0]["error"] is None and report["cells"][0]["visual_tokens"] == [16, 8]


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--preset", "tiny", "--keep", "0"], ["--preset", "tiny", "--new-tokens", "1"],
                 ["--preset", "tiny", "--grad-checkpoint"], ["--frames", "4"]):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
    capsys.readouterr()


def test_a_cell_that_ran_out_of_memory_is_reported_not_fatal(tmp_path: Path) -> None:
    cell = _error_cell(256, 0.5, INFERENCE_CELL_KEYS, torch.OutOfMemoryError("CUDA out of memory. Tried 4 GiB"))
    report = {"device": "GPU", "preset": "molmo2-4b", "model": None, "mode": "inference",
              "settings": {"scorer_used": "learned", "repeats": 3, "warmup": 1}, "cells": [cell]}
    assert "OutOfMemoryError" in format_table(report)
    write_html(report, tmp_path / "oom.html")
    assert 'class="plotly-graph-div"' in (tmp_path / "oom.html").read_text()


def test_a_failing_cell_is_recorded_and_the_exit_code_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    real = bench.inference_cell

    def flaky(backend: Any, video: Any, question: str, keep: float, cfg: Any, scorer: str) -> dict[str, Any]:
        if keep == 0.5:
            raise RuntimeError("broken on purpose")
        return real(backend, video, question, keep, cfg, scorer)

    monkeypatch.setattr(bench, "inference_cell", flaky)
    out_json = tmp_path / "partial.json"
    args = ["--preset", "micro", "--frames", "4", "--keep", "1.0", "0.5", "--repeats", "1", "--new-tokens", "2",
            "--threads", "1", "--json", str(out_json)]
    assert main(args) == 1
    capsys.readouterr()
    cells = {c["keep"]: c for c in json.loads(out_json.read_text())["cells"]}
    assert cells[1.0]["error"] is None and cells[1.0]["ttft_speedup"] > 0
    assert cells[0.5]["error"] == "RuntimeError: broken on purpose" and cells[0.5]["ttft_speedup"] is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the timer synchronises only CUDA work")
def test_stage_timer_waits_for_cuda_work() -> None:
    device = torch.device("cuda")
    torch.cuda.synchronize(device)
    # A spin kernel of known length: no GPU clocks faster than 3 GHz, so it lasts at least cycles / 3e9 s.
    cycles = 150_000_000
    minimum = cycles / 3e9
    launch_start = time.perf_counter()
    torch.cuda._sleep(cycles)
    launch_s = time.perf_counter() - launch_start
    torch.cuda.synchronize(device)
    assert launch_s < minimum, "the launch itself should return before the kernel ends"

    timer = StageTimer(device)
    with timer.stage("sleep"):
        torch.cuda._sleep(cycles)
    assert timer.get("sleep") >= minimum

    a = torch.randn(4096, 4096, device=device)
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with timer.stage("matmul"):
        start.record()
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        end.record()
    device_s = start.elapsed_time(end) / 1e3
    assert timer.get("matmul") >= device_s * 0.99


def test_train_step_timing_excludes_preprocessing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Preprocessing is data loading: it runs once per cell before the clock, never inside a timed step."""
    from stts_core.data.synthetic import make_clip
    from stts_core.models.loading import backend_from_preset

    backend = backend_from_preset("micro", device="cpu")
    delay = 0.4
    calls = {"prepare": 0}
    real_prepare = backend.prepare

    def slow_prepare(*args: Any, **kwargs: Any) -> Any:
        calls["prepare"] += 1
        time.sleep(delay)
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(backend, "prepare", slow_prepare)
    clip = make_clip(0, num_frames=4)
    cfg = bench.BenchConfig(frames=[4], keeps=[0.5], repeats=2, warmup=1, train=True)
    cell = bench.train_cell(backend, clip.frames, clip.qas[0].question, clip.qas[0].answer, 0.5, cfg, "learned")
    assert calls["prepare"] == 1  # once for the cell (prepare_questions calls it); the 6 steps reuse it
    for run in ("baseline", "stts"):
        assert cell["stages_s"][run]["forward"] < delay, cell["stages_s"][run]
    assert cell["visual_tokens"] == [16, 8]


def test_gpu_script_parses_and_refuses_an_unknown_step(tmp_path: Path) -> None:
    script = REPO / "scripts" / "gpu_bench.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, timeout=30).returncode == 0
    done = subprocess.run(["bash", str(script)], env={**os.environ, "STEP": "3", "OUT": str(tmp_path),
                                                      "PYTHON": sys.executable}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "STEP must be 1 or 2" in done.stderr


def test_paired_speedup_is_the_median_and_quartiles_of_per_round_ratios() -> None:
    base = [{"ttft": t} for t in (10.0, 12.0, 30.0, 11.0, 10.0)]
    other = [{"ttft": t} for t in (5.0, 8.0, 10.0, 11.0, 4.0)]
    ratios = sorted(b["ttft"] / o["ttft"] for b, o in zip(base, other, strict=True))  # 1.0, 1.5, 2.0, 2.5, 3.0
    paired = bench.paired_speedup(base, other)
    assert paired == {"median": ratios[2], "low": ratios[1], "high": ratios[3], "rounds": 5}
    # The ratio of the two medians differs: round 3's slow baseline would not be paired with its own run.
    assert paired["median"] != 11.0 / 8.0
    one = bench.paired_speedup(base[:1], other[:1])
    assert one["median"] == one["low"] == one["high"] == 2.0 and one["rounds"] == 1
    with pytest.raises(ValueError):
        bench.paired_speedup(base, other[:2])


def test_rounds_flip_their_run_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every other round runs the methods first, so no side always goes first; records stay round-aligned."""
    seen: list[str] = []
    clock = iter(range(1, 10_000))

    def fake_run(backend, video, question, keep, name, settings):  # noqa: ANN001, ANN202 - test double
        seen.append(name)
        run = bench.ModelRun(answer="a", token_ids=[1, 2], timings={}, num_frames=2, visual_tokens=4,
                             prompt_tokens=8, vit_suffix_tokens=0, peak_mem_gb=None, vit_tokens=8)
        return name, run, float(next(clock))

    monkeypatch.setattr(bench, "_timed_run", fake_run)
    monkeypatch.setattr(bench, "inference_record", lambda backend, run, packing_s: {"ttft": packing_s})
    cfg = bench.BenchConfig(frames=[2], keeps=[0.5], repeats=4, warmup=1)
    video = SimpleNamespace(frames=torch.zeros(2, 1))
    out = bench._alternating_runs(None, video, "q", 0.5, cfg, ["learned", "evs"])  # type: ignore[arg-type]
    rounds = [seen[i:i + 3] for i in range(0, len(seen), 3)]
    assert rounds == [["baseline", "learned", "evs"], ["evs", "learned", "baseline"]] * 2 + [
        ["baseline", "learned", "evs"]]
    # Timed rounds 1..4: each name's record i comes from round i + 1 (the fake clock counts runs).
    assert [r["ttft"] for r in out["baseline"]["records"]] == [6.0, 7.0, 12.0, 13.0]
    assert [r["ttft"] for r in out["evs"]["records"]] == [4.0, 9.0, 10.0, 15.0]
