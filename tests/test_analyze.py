"""Error analysis over a dataset (`python -m stts_core.analyze`): rows, sharing, resume, bad rows,
summary, report, dataset loading and the torchrun scale-out."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from stts_core.analysis import runner as analyze
from stts_core.analysis.records import BASELINE, AnalysisSettings, Thumb, decode_mask
from stts_core.analysis.report import mask_tiles
from stts_core.cli import analyze as analyze_cli
from stts_core.data.synthetic import make_clip
from stts_core.data.tables import DatasetError, load_dataset
from stts_core.data.video import load_video
from stts_core.data.video_encode import write_video
from stts_core.methods.frames import frame_positions
from stts_core.pipeline import RunSettings, normalize_answer, run
from stts_core.pipeline.agreement import matches

FRAMES = 4
KEEPS = ("0.5", "0.25")
SCORERS = ("learned", "heuristic", "random", "frames")
SETTINGS = 1 + len(KEEPS) * len(SCORERS)
REPO = Path(__file__).resolve().parent.parent


def _write_dataset(folder: Path) -> Path:
    """Two clips (two questions on the first), a damaged file, a missing file and an empty question."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, seed in enumerate((2_000_000, 2_000_001)):
        clip = make_clip(seed, num_frames=FRAMES, size=84)
        write_video(folder / f"clip{i}.mp4", clip.frames, fps=4.0)
        for qa in clip.qas[: 2 - i]:
            rows.append({"video": f"clip{i}.mp4", "question": qa.question, "answer": qa.answer, "type": qa.qtype})
    (folder / "broken.mp4").write_bytes(bytes(range(256)) * 64)
    rows.append({"video": "broken.mp4", "question": "what color is the moving object ?", "answer": "red",
                 "type": "moving_color"})
    rows.append({"video": "nowhere.mp4", "question": "does the red circle move ?", "answer": "no", "type": "does_move"})
    rows.append({"video": "clip1.mp4", "question": "   ", "answer": "yes", "type": "does_move"})
    with (folder / "questions.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["video", "question", "answer", "type"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def _argv(model: Path, data: Path, out: Path) -> list[str]:
    return ["--model", str(model), "--device", "cpu", "--data", str(data), "--frames", str(FRAMES),
            "--keep", *KEEPS, "--scorer", *SCORERS, "--max-new-tokens", "2", "--out", str(out)]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, micro_checkpoint: Path) -> dict:
    """One CLI run over the small dataset, shared by the tests that read its outputs."""
    root = tmp_path_factory.mktemp("analyze")
    data = _write_dataset(root / "videos")
    out = root / "out"
    code = analyze_cli.main(_argv(micro_checkpoint, data, out))
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {"code": code, "out": out, "data": data, "rows": rows}


def _good(rows: list[dict]) -> list[dict]:
    return [r for r in rows if not r["error"]]


def test_every_example_and_setting_has_a_row_and_bad_rows_say_why(analysed: dict) -> None:
    rows = analysed["rows"]
    assert analysed["code"] == 1  # some rows failed
    assert len(rows) == 6 * SETTINGS
    assert len({(r["id"], r["setting"]) for r in rows}) == len(rows)
    assert [r["index"] for r in rows] == sorted(r["index"] for r in rows)  # dataset order
    errors = {r["video"]: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"broken.mp4", "nowhere.mp4", "clip1.mp4"}
    assert "could not be opened" in errors["broken.mp4"] or "damaged" in errors["broken.mp4"]
    assert "could not find" in errors["nowhere.mp4"]
    assert "question" in errors["clip1.mp4"].lower()
    good = _good(rows)
    assert len(good) == 3 * SETTINGS
    for r in good:
        assert r["agrees"] is None if r["setting"] == BASELINE else isinstance(r["agrees"], bool)
        assert r["correct"] == (normalize_answer(r["answer"]) == normalize_answer(r["gold"]) != "")
        mask = decode_mask(r["keep_mask"])
        assert mask.sum() == r["kept_groups"] and mask.sum(1).tolist() == r["kept_per_frame"]
        assert set(r["timings_s"]) >= {"decode_video", "preprocess", "vit_prefix", "llm_prefill", "decoding"}


def test_empty_answer_never_agrees() -> None:
    assert matches("", "") is False
    assert matches(" Red. ", "red") is True
    assert matches("", None) is None and matches("", "") is False


def test_frames_scorer_uses_round_keep_times_t_frames_and_prunes_nothing(analysed: dict) -> None:
    frames_rows = [r for r in _good(analysed["rows"]) if r["scorer"] == "frames"]
    groups = next(r for r in _good(analysed["rows"]) if r["setting"] == BASELINE)["visual_tokens"] // FRAMES
    assert frames_rows
    for r in frames_rows:
        n = round(r["keep"] * FRAMES)
        assert r["num_frames"] == n == len(r["frames_used"])
        assert r["visual_tokens"] == n * groups  # every group of every used frame
        assert sorted(r["kept_per_frame"], reverse=True) == [groups] * n + [0] * (FRAMES - n)


def test_frame_subset_is_the_decoders_uniform_sampling(tmp_path: Path) -> None:
    """Subsampling T decoded frames picks the frames the decoder itself picks for round(keep x T)."""
    path = write_video(tmp_path / "c.mp4", np.random.default_rng(0).integers(0, 255, (16, 32, 32, 3), np.uint8))
    for keep in (0.5, 0.3, 0.2, 0.05, 1.0):
        n = max(1, round(keep * 16))
        assert frame_positions(16, keep).tolist() == load_video(path, n).indices.tolist()


@pytest.mark.slow
def test_shared_computation_gives_the_answers_of_pipeline_run_per_setting(micro_backend, analysed: dict) -> None:
    dataset = load_dataset(analysed["data"], num_frames=FRAMES)
    cfg = AnalysisSettings(keeps=(0.5, 0.25), scorers=SCORERS, num_frames=FRAMES, max_new_tokens=2)
    report = analyze.compare_naive(micro_backend, dataset.examples, cfg, count=3)
    assert report["examples"] == 3 and report["answers_compared"] == 3 * SETTINGS
    assert report["same_answers"] == report["answers_compared"]
    # the keep masks too, for the pruned scorers, against the analysis run's rows
    row = next(r for r in analysed["rows"] if r["setting"] == "random@0.25" and not r["error"])
    result = run(micro_backend, row["path"], row["question"],
                 RunSettings(keep_ratio=0.25, scorer="random", num_frames=FRAMES, max_new_tokens=2, seed=row["seed"]))
    assert np.array_equal(result.keep_mask, decode_mask(row["keep_mask"]))
    assert result.stts.answer == row["answer"] and result.baseline.answer == row["baseline_answer"]


def test_summary_csv_matches_the_rows(analysed: dict) -> None:
    rows = analysed["rows"]
    with (analysed["out"] / "summary.csv").open() as fh:
        summary = list(csv.DictReader(fh))
    base = {r["id"]: r for r in _good(rows) if r["setting"] == BASELINE}
    for cell in summary:
        mine = [r for r in rows if r["setting"] == cell["setting"] and cell["type"] in ("all", r["type"])]
        good = _good(mine)
        assert int(cell["n"]) == len(good) and int(cell["failed"]) == len(mine) - len(good)
        if not good:  # every row of this cell failed: no rate to report
            assert cell["accuracy"] == cell["agreement"] == ""
            continue
        assert float(cell["accuracy"]) == pytest.approx(sum(r["correct"] for r in good) / len(good), abs=1e-6)
        if cell["setting"] != BASELINE:
            assert float(cell["agreement"]) == pytest.approx(np.mean([r["agrees"] for r in good]), abs=1e-6)
            r2w = sum(base[r["id"]]["correct"] and not r["correct"] for r in good)
            w2r = sum(r["correct"] and not base[r["id"]]["correct"] for r in good)
            assert (int(cell["right_to_wrong"]), int(cell["wrong_to_right"])) == (r2w, w2r)
    assert {c["setting"] for c in summary if c["type"] == "all"} == {r["setting"] for r in rows}


def test_report_is_one_offline_file(analysed: dict) -> None:
    page = (analysed["out"] / "report.html").read_text()
    assert "Plotly" in page and len(page) > 1_000_000  # the plotly.js bundle is inside
    assert not re.search(r"<script[^>]+src\s*=\s*['\"]?https?:", page, re.I)
    assert not re.search(r"<link[^>]+href\s*=\s*['\"]?https?:", page, re.I)
    assert "broken.mp4" in page and "Accuracy vs keep ratio" in page


def test_rerun_skips_rows_already_there(micro_backend, analysed: dict, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    shutil.copytree(analysed["out"], out)
    rows = analysed["rows"]
    dropped = [r for r in rows if r["setting"] == "heuristic@0.5" or (r["index"] == 2 and r["scorer"] == "frames")]
    kept = [r for r in rows if r not in dropped]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"id": "cut sh')
    calls = []
    real = micro_backend.generate
    monkeypatch.setattr(micro_backend, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    dataset = load_dataset(analysed["data"], num_frames=FRAMES)
    cfg = AnalysisSettings(keeps=(0.5, 0.25), scorers=SCORERS, num_frames=FRAMES, max_new_tokens=2)
    result = analyze.run_analysis(micro_backend, dataset.examples, cfg, out, model_name=str(
        json.loads((out / "analysis.json").read_text())["model"]), report=False)
    assert len(calls) == len(_good(dropped))  # only the missing rows ran the model
    again = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(again) == len(rows) == len(result.rows)

    def answers(rs: list[dict]) -> dict:
        return {(r["id"], r["setting"]): (r.get("answer"), r.get("keep_mask"), r["error"]) for r in rs}

    assert answers(again) == answers(rows)


def test_rerun_with_other_frames_is_refused(micro_backend, analysed: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(analysed["out"], out)
    dataset = load_dataset(analysed["data"], num_frames=2)
    model = json.loads((out / "analysis.json").read_text())["model"]
    with pytest.raises(DatasetError, match="num_frames"):
        analyze.run_analysis(micro_backend, dataset.examples, AnalysisSettings(num_frames=2), out, model_name=model)


def test_mask_thumbnail_dims_pruned_groups() -> None:
    frames = np.full((2, 4, 4, 3), 200, dtype=np.uint8)
    groups = np.array([[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]])  # 2x2 groups of 2x2 patches
    keep = np.array([[True, True, True, True], [True, False, False, True]])
    tiles = mask_tiles(Thumb(frames=frames, groups=groups, patch_grid=(4, 4)), keep)
    second = tiles[:, 4 + 2:]  # tiles sit side by side with a 2-pixel gap
    assert (tiles[:, :4] == 200).all()
    assert second[0, 0, 0] == 200 and second[0, 3, 0] == 60 and second[3, 0, 0] == 60 and second[3, 3, 0] == 200


# ------------------------------------------------------------------------------------------- datasets


def test_synthetic_spec_forms(tmp_path: Path) -> None:
    a = load_dataset("synthetic:test:3", workdir=tmp_path, num_frames=FRAMES)
    b = load_dataset("synthetic:test[:3]", workdir=tmp_path, num_frames=FRAMES)
    assert [e.question for e in a.examples] == [e.question for e in b.examples] and len(a.examples) == 3
    assert all(e.path is not None and e.path.exists() and e.answer and e.type for e in a.examples)
    with pytest.raises(DatasetError, match="at most 2"):
        load_dataset("synthetic:test:3", workdir=tmp_path, num_frames=FRAMES, max_examples=2)
    with pytest.raises(DatasetError, match="synthetic"):
        load_dataset("synthetic:nope", workdir=tmp_path)


def test_the_rich_world_split_has_the_same_questions_over_other_pixels(tmp_path: Path) -> None:
    from stts_core.data.video import load_video

    plain = load_dataset("synthetic:test:2", workdir=tmp_path, num_frames=FRAMES)
    rich = load_dataset("synthetic-rich:test:2", workdir=tmp_path, num_frames=FRAMES)
    assert [(e.question, e.answer) for e in rich.examples] == [(e.question, e.answer) for e in plain.examples]
    first_plain, first_rich = (load_video(d.examples[0].path, FRAMES).frames for d in (plain, rich))
    assert first_plain.shape == first_rich.shape
    assert float(abs(first_plain.astype(float) - first_rich.astype(float)).mean()) > 10


def test_tables_need_video_and_question_columns(tmp_path: Path) -> None:
    (tmp_path / "questions.csv").write_text("clip,question\na.mp4,what ?\n")
    with pytest.raises(DatasetError, match="video"):
        load_dataset(tmp_path)
    (tmp_path / "questions.csv").unlink()
    (tmp_path / "questions.jsonl").write_text('{"video": "a.mp4", "question": "what ?", "qtype": "x"}\nnot json\n')
    ds = load_dataset(tmp_path)
    assert ds.examples[0].type == "x" and ds.examples[0].error is None
    assert "not valid JSON" in ds.examples[1].error


def test_uploaded_table_with_videos_in_another_folder(tmp_path: Path) -> None:
    table = tmp_path / "upload" / "q.csv"
    table.parent.mkdir()
    table.write_bytes("\ufeffVideo , Question,Answer\nclip.mp4,what moves ?,red\n".encode())
    ds = load_dataset(table, video_dir=tmp_path / "videos", allow_outside=False, max_examples=1)
    assert ds.examples[0].path == (tmp_path / "videos" / "clip.mp4").resolve()
    assert (ds.examples[0].question, ds.examples[0].answer, ds.examples[0].error) == ("what moves ?", "red", None)


def test_zip_is_extracted_safely(tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("set/questions.csv", "video,question\nclip.mp4,what moves ?\n")
        zf.writestr("set/clip.mp4", b"\x00" * 10)
    ds = load_dataset(good, workdir=tmp_path / "work", allow_outside=False)
    assert ds.examples[0].path == (tmp_path / "work" / "zip-good" / "set" / "clip.mp4").resolve()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("questions.csv", "video,question\nclip.mp4,what ?\n")
        zf.writestr("../../escape.txt", "x")
    with pytest.raises(DatasetError, match="unsafe path"):
        load_dataset(evil, workdir=tmp_path / "work2")
    assert not (tmp_path / "escape.txt").exists()
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "questions.csv").write_text("video,question\n../secret.mp4,what ?\n")
    assert "leaves the dataset folder" in load_dataset(tmp_path / "up", allow_outside=False).examples[0].error


@pytest.mark.parametrize("bad", [["--keep", "0"], ["--scorer", "oracle"], ["--frames", "0"], ["--limit", "-1"]])
def test_cli_refuses_bad_values_with_exit_2(bad: list[str], tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        analyze_cli.main(["--out", str(tmp_path), *bad])
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- torchrun


@pytest.mark.slow
def test_two_processes_give_exactly_the_rows_of_one(analysed: dict, micro_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "stts_core.analyze", *_argv(micro_checkpoint, analysed["data"], out), "--no-report"]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0, done.stdout + done.stderr  # the bad rows fail on both
    assert not list(out.glob("results.rank*.jsonl"))  # rank 0 merged the parts
    shares = {int(m[0]): int(m[1]) for m in re.findall(r"rank (\d): (\d+) examples", done.stderr)}
    assert set(shares) == {0, 1} and min(shares.values()) > 0 and sum(shares.values()) == 6
    assert f"6 examples (6 run now), {6 * SETTINGS} rows ({6 * SETTINGS} computed now" in done.stdout

    def key(rows: list[dict]) -> list[tuple]:
        return [(r["id"], r["setting"], r.get("answer"), json.dumps(r.get("keep_mask")), r["error"], r.get("seed"))
                for r in rows]

    two = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert key(two) == key(analysed["rows"])
