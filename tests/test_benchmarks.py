"""Benchmarks read from local copies in their published layouts: the readers (MVBench, Video-MME, NExT-QA,
LongVideoBench) on fixtures built in each layout, layout errors, subsets and limits, multiple-choice
prompts per family, the answer-letter parser on real model output styles, and `stts analyze` end to end on
the built-in model (per-task tables, summary.csv, report, lmms-eval sample logs matched by doc_id)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from stts_core.analysis.lmms_export import diff_samples, read_samples, setting_slug
from stts_core.analysis.prompting import prompt_for, prompt_style
from stts_core.cli import analyze as analyze_cli
from stts_core.data.benchmarks import extract_choice, find_benchmark, fixtures
from stts_core.data.benchmarks.prompts import choice_prompt, style_for, style_names
from stts_core.data.benchmarks.registry import round_robin
from stts_core.data.tables import DatasetError, Example, load_dataset
from stts_core.models.loading import DEFAULT_MODEL
from stts_core.models.registry import list_families

SPECS = ("mvbench", "videomme", "nextqa", "longvideobench")
FRAMES = 4


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every benchmark's tiny copy in its published layout (synthetic clips as the videos)."""
    return fixtures.write_fixtures(tmp_path_factory.mktemp("benchmarks"))


def _load(name: str, root: Path, **kwargs):  # noqa: ANN202
    return load_dataset(f"{name}:{root}", **kwargs)


# ------------------------------------------------------------------------------------------- readers


def test_mvbench_reads_tasks_candidates_and_spans(copies: dict[str, Path]) -> None:
    data = _load("mvbench", copies["mvbench"])
    records = {t: json.loads((copies["mvbench"] / "json" / f"{t}.json").read_text()) for t in
               ("action_sequence", "action_prediction", "object_shuffle", "fine_grained_pose")}
    assert len(data.examples) == sum(len(r) for r in records.values())
    for ex in data.examples:
        record = records[ex.task][ex.doc_id]
        assert ex.error is None and ex.path is not None and ex.path.is_file() and ex.path.name == record["video"]
        assert list(ex.options) == record["candidates"] and ex.options["ABCD".index(ex.answer)] == record["answer"]
        assert ex.id == f"mvbench/{ex.task}/{ex.doc_id}" and ex.benchmark == "mvbench" and dict(ex.doc) == record
        if ex.task == "action_sequence":  # full Charades videos: frames come from the question's span
            assert ex.span == (record["start"], record["end"]) and "Charades_v1_480" in str(ex.path)
        elif ex.task == "action_prediction":  # lmms-eval's pre-cut segments: no span applied again
            assert ex.span is None and "Charades_segment" in str(ex.path)
        else:
            assert ex.span is None
    assert any("absent" in n for n in data.notes)  # the fixture holds 4 of the 20 task files


def test_videomme_reads_the_parquet_options_and_duration_classes(copies: dict[str, Path]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    rows = pq.read_table(copies["videomme"] / "videomme" / "test-00000-of-00001.parquet").to_pylist()
    data = _load("videomme", copies["videomme"])
    assert [e.doc_id for e in data.examples] == list(range(len(rows)))
    for ex, row in zip(data.examples, rows, strict=True):
        assert ex.answer == row["answer"] and [f"{'ABCD'[i]}. {o}" for i, o in enumerate(ex.options)] == row["options"]
        assert (ex.task, ex.category, ex.duration) == (row["task_type"], row["domain"], row["duration"])
        assert ex.path == copies["videomme"] / "data" / f"{row['videoID']}.mp4" and ex.id == f"videomme/{row['question_id']}"
    long = _load("videomme", copies["videomme"], subset="long")
    assert {e.duration for e in long.examples} == {"long"} and len(long.examples) == 3


def test_videomme_reads_the_same_records_as_json(tmp_path: Path) -> None:
    root = fixtures.videomme(tmp_path / "vm", per_task=2, parquet=False)
    assert (root / "videomme" / "test.json").is_file()
    data = _load("videomme", root)
    assert len(data.examples) == 6 and all(e.error is None and len(e.options) == 4 for e in data.examples)


def test_nextqa_maps_video_ids_to_vidor_paths_and_picks_the_split(copies: dict[str, Path]) -> None:
    root = copies["nextqa"]
    mapping = json.loads((root / "map_vid_vidorID.json").read_text())
    with (root / "nextqa" / "test.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    data = _load("nextqa", root)  # test when there is one, as lmms-eval's nextqa_mc_test
    assert len(data.examples) == len(rows)
    for ex, row in zip(data.examples, rows, strict=True):
        assert ex.path == root / "NExTVideo" / f"{mapping[row['video']]}.mp4"
        assert ex.answer == "ABCDE"[int(row["answer"])] and ex.options == tuple(row[f"a{i}"] for i in range(5))
        assert ex.task == row["type"] and ex.category == {"C": "causal", "T": "temporal", "D": "descriptive"}[row["type"][0]]
    val = _load("nextqa", root, subset="val")
    assert {e.id.split("/")[1] for e in val.examples} == {"val"}
    causal = _load("nextqa", root, subset="causal")
    assert causal.examples and {e.category for e in causal.examples} == {"causal"}


def test_longvideobench_reads_candidates_and_duration_groups(copies: dict[str, Path]) -> None:
    records = json.loads((copies["longvideobench"] / "lvb_val.json").read_text())
    data = _load("longvideobench", copies["longvideobench"])
    assert len(data.examples) == len(records)
    for ex, rec in zip(data.examples, records, strict=True):
        assert ex.answer == "ABCD"[rec["correct_choice"]] and list(ex.options) == rec["candidates"]
        assert ex.duration == {15: "8-15s", 60: "15-60s", 600: "180-600s", 3600: "900-3600s"}[rec["duration_group"]]
        assert ex.task == rec["question_category"] and ex.path == copies["longvideobench"] / "videos" / rec["video_path"]
    assert data.limits is not None and data.limits.max_duration_s >= 3600  # hour-long videos are allowed


def test_longvideobench_reads_the_validation_parquet_first(copies: dict[str, Path], tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    records = json.loads((copies["longvideobench"] / "lvb_val.json").read_text())[:3]
    rows = [{**{k: v for k, v in r.items() if k != "candidates"},
             **{f"option{i}": (r["candidates"][i] if i < len(r["candidates"]) else "N/A") for i in range(5)}}
            for r in reversed(records)]  # another order than the json: doc_id follows the parquet
    root = tmp_path / "lvb"
    (root / "videos").mkdir(parents=True)
    for r in records:
        (root / "videos" / r["video_path"]).write_bytes((copies["longvideobench"] / "videos" / r["video_path"]).read_bytes())
    (root / "lvb_val.json").write_text(json.dumps(records))
    pq.write_table(pa.Table.from_pylist(rows), root / "validation-00000-of-00001.parquet")
    data = _load("longvideobench", root)
    assert [e.doc["id"] for e in data.examples] == [r["id"] for r in rows]
    assert all(len(e.options) == 4 and e.error is None for e in data.examples)


# ------------------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("name", SPECS)
def test_a_missing_folder_or_annotation_is_one_sentence_naming_it(name: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="There is no .* folder at") as err:
        load_dataset(f"{name}:{tmp_path / 'nowhere'}")
    assert "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    expected = {"mvbench": "json/", "videomme": "videomme/test-00000-of-00001.parquet", "nextqa": "nextqa/test.csv",
                "longvideobench": "lvb_val.json"}[name]
    with pytest.raises(DatasetError) as err:
        load_dataset(f"{name}:{tmp_path / 'empty'}")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_malformed_task_file_is_one_failed_row_and_the_other_tasks_load(copies: dict[str, Path], tmp_path: Path) -> None:
    root = fixtures.mvbench(tmp_path / "mv", per_task=1)
    (root / "json" / "object_shuffle.json").write_text('[{"video": "x.mp4", "question": ')
    data = _load("mvbench", root)
    bad = [e for e in data.examples if e.error]
    assert len(bad) == 1 and bad[0].task == "object_shuffle" and "json/object_shuffle.json" in bad[0].error
    assert "not valid JSON" in bad[0].error
    assert {e.task for e in data.examples if not e.error} == {"action_sequence", "action_prediction", "fine_grained_pose"}


def test_bad_records_and_missing_videos_keep_their_reason(tmp_path: Path) -> None:
    root = fixtures.mvbench(tmp_path / "mv", per_task=2)
    path = root / "json" / "fine_grained_pose.json"
    records = json.loads(path.read_text())
    records[0]["answer"] = "not an option"
    records[1]["video"] = "gone.mp4"
    path.write_text(json.dumps(records))
    errors = {e.doc_id: e.error for e in _load("mvbench", root, subset="fine_grained_pose").examples}
    assert "is not one of its candidates" in errors[0]
    assert "gone.mp4" in errors[1] and "nturgbd_convert" in errors[1]


def test_a_broken_csv_names_the_file(tmp_path: Path) -> None:
    root = fixtures.nextqa(tmp_path / "nq", per_task=1)
    (root / "nextqa" / "test.csv").write_text("video,question\n1,what\n")
    with pytest.raises(DatasetError, match=r"nextqa/test\.csv.*a0"):
        _load("nextqa", root)


def test_subset_names_are_checked_and_limit_takes_every_task_in_turn(copies: dict[str, Path]) -> None:
    with pytest.raises(DatasetError, match="no subset actionsequence; choose from"):
        _load("mvbench", copies["mvbench"], subset="actionsequence")
    only = _load("mvbench", copies["mvbench"], subset="action_sequence,object_shuffle")
    assert {e.task for e in only.examples} == {"action_sequence", "object_shuffle"}
    limited = _load("mvbench", copies["mvbench"], limit=4)
    assert len(limited.examples) == 4 and len({e.task for e in limited.examples}) == 4
    assert [e.index for e in limited.examples] == [0, 1, 2, 3]
    tasks = [SimpleNamespace(task=t) for t in "aaabbc"]
    assert [x.task for x in round_robin(tasks, 4)] == ["a", "a", "b", "c"]


def test_specs_are_found_by_their_prefix_only() -> None:
    assert find_benchmark("mvbench:/x").name == "mvbench" and find_benchmark("VideoMME:/x").name == "videomme"
    assert find_benchmark("synthetic:test:4") is None and find_benchmark("/data/mvbench") is None
    with pytest.raises(DatasetError, match="Give the folder"):
        load_dataset("nextqa:")


# ------------------------------------------------------------------------------------------- prompts, letters


def test_each_family_asks_in_its_own_format() -> None:
    opts = ["a red car", "a blue bus"]
    molmo = choice_prompt("molmo2", "what moves?", opts, "mvbench")
    assert molmo == "what moves?\nA. a red car\nB. a blue bus\nPlease respond with only the letter of the correct answer."
    lmms = choice_prompt("lmms-eval", "what moves?", opts, "mvbench")
    assert lmms == "Question:what moves?\nOption:\n(A) a red car\n(B) a blue bus\nOnly give the best option.\n"
    qwen = choice_prompt("qwen3_vl", "what moves?", opts, "videomme")
    assert qwen.startswith("Question: what moves?\nOptions:\nA. a red car") and qwen.endswith("option letter only.")
    assert choice_prompt("molmo2", "q", opts, "videomme").endswith("B. a blue bus\nThe best answer is:")
    assert style_for("molmo2") == "molmo2" and style_for("qwen3_vl") == "qwen3_vl"
    assert style_for("some_new_family") == "lmms-eval" and style_for("molmo2", "lmms-eval") == "lmms-eval"
    with pytest.raises(ValueError, match="Unknown multiple-choice prompt style"):
        style_for("molmo2", "nope")


def test_every_registered_family_has_a_prompt_style() -> None:
    styles = {f.name: style_for(f.name, f.mc_prompt) for f in list_families()}
    assert set(styles.values()) <= set(style_names()) and styles["molmo2"] == "molmo2"
    assert styles.get("qwen3_vl", "qwen3_vl") == "qwen3_vl" and styles.get("qwen2_5_vl", "lmms-eval") == "lmms-eval"


def test_the_analysis_asks_a_molmo2_backend_in_molmo2s_format(micro_backend, copies: dict[str, Path]) -> None:
    ex = _load("nextqa", copies["nextqa"]).examples[0]
    assert prompt_style(micro_backend) == "molmo2"
    prompt = prompt_for(micro_backend, ex)
    assert prompt.startswith(ex.question + "\nA. ") and prompt.endswith("from the given choices directly.")
    free = Example(id="x", index=0, video="v.mp4", path=None, question="what color is the moving object ?")
    assert prompt_for(micro_backend, free) == free.question and not free.is_choice


OPTIONS = ["the man opens the door", "the man sits down", "a dog runs", "two", "red"]


@pytest.mark.parametrize(("response", "letter"), [
    ("B", "B"), ("b", "B"), ("(B)", "B"), ("B.", "B"), ("[C]", "C"), ("D:", "D"),
    ("Answer: B", "B"), ("The answer is (C).", "C"), ("The best answer is:\nE", "E"), ("Best option: (D", "D"),
    ("B. the man sits down", "B"), ("(A) the man opens the door", "A"), ("C) a dog runs", "C"),
    ("the man sits down", "B"), ("A dog runs.", "C"), ("Red", "E"), ("I think B is right.", "B"),
    ("The correct option is B because A is wrong", "B"), ("<think>A or C?</think>C", "C"), ("Option D", "D"),
    ("A man walks in", None), ("", None), ("F", None), ("blue", None), ("I am not sure", None),
])
def test_the_letter_parser_reads_real_answer_styles(response: str, letter: str | None) -> None:
    assert extract_choice(response, OPTIONS).letter == letter


# ------------------------------------------------------------------------------------------- end to end


def _argv(specs: list[str], out: Path, *extra: str) -> list[str]:
    return ["--model", DEFAULT_MODEL, "--device", "cpu", "--data", *specs, "--frames", str(FRAMES), "--keep", "0.5",
            "--scorer", "learned", "random", "--max-new-tokens", "4", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def analysed(copies: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One `stts analyze` run of the built-in model over every reader's copy (at most 8 questions each)."""
    out = tmp_path_factory.mktemp("bench-out")
    specs = [f"{n}:{copies[n]}" for n in SPECS]
    code = analyze_cli.main(_argv(specs, out, "--limit", "8"))
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {"code": code, "out": out, "rows": rows}


@pytest.mark.slow
def test_every_row_keeps_the_prompt_raw_response_letter_and_costs(analysed: dict) -> None:
    rows = analysed["rows"]
    assert analysed["code"] == 0 and {r["benchmark"] for r in rows} == set(SPECS)
    assert {r["setting"] for r in rows} == {"baseline", "learned@0.5", "random@0.5"}
    for r in rows:
        assert r["error"] is None and r["options"] and r["prompt"].count("\n") >= len(r["options"])
        assert r["extracted"] == extract_choice(r["answer"], r["options"]).letter  # the raw answer kept beside it
        assert r["correct"] == (r["extracted"] == r["gold"]) and r["no_answer"] == (r["extracted"] is None)
        assert r["num_frames"] >= 1 and r["visual_tokens"] > 0 and r["model_s"] > 0 and r["doc_id"] is not None
    base = {r["id"]: r for r in rows if r["setting"] == "baseline"}
    for r in rows:
        if r["setting"] != "baseline":
            b = base[r["id"]]["extracted"]
            assert r["agrees"] == (b is not None and r["extracted"] == b)
    spans = [r for r in rows if r["task"] == "action_sequence"]
    assert spans and all(r["span"] and r["num_frames"] <= FRAMES for r in spans)


@pytest.mark.slow
def test_tables_give_each_benchmark_its_groups_the_average_and_the_drop(analysed: dict) -> None:
    out, rows = analysed["out"], analysed["rows"]
    with (out / "summary.csv").open() as fh:
        cells = [c for c in csv.DictReader(fh) if c["benchmark"]]
    acc = {(c["setting"], c["benchmark"], c["group"]): float(c["accuracy"]) for c in cells if c["accuracy"]}
    for (setting, bench, group), value in acc.items():
        if bench == "average":
            continue
        mine = [r for r in rows if r["setting"] == setting and r["benchmark"] == bench]
        if group != "all":
            kind, label = group.split(":", 1)
            mine = [r for r in mine if str(r[kind]) == label]
        assert value == pytest.approx(sum(r["correct"] for r in mine) / len(mine), abs=1e-5)
    for setting in ("baseline", "learned@0.5"):
        per = [acc[(setting, b, "all")] for b in SPECS]
        assert acc[(setting, "average", "all")] == pytest.approx(sum(per) / len(per), abs=1e-5)
    drop = next(c for c in cells if c["setting"] == "random@0.5" and c["benchmark"] == "average")
    assert float(drop["drop"]) == pytest.approx(acc[("random@0.5", "average", "all")] - acc[("baseline", "average", "all")],
                                                abs=1e-5)
    groups = {c["group"] for c in cells}
    assert {"task:action_sequence", "duration:long", "duration:900-3600s", "category:causal"} <= groups
    with (out / "paper_table.csv").open() as fh:
        paper = list(csv.DictReader(fh))
    assert [p["setting"] for p in paper] == ["baseline", "learned@0.5", "random@0.5"]
    assert set(SPECS) <= set(paper[0]) and paper[0]["drop"] == ""
    report = (out / "report.html").read_text()
    assert "<h2>Benchmarks</h2>" in report and "LongVideoBench" in report and "task:fine_grained_pose" in report


@pytest.mark.slow
def test_lmms_eval_logs_match_an_lmms_eval_run_by_doc_id(analysed: dict, copies: dict[str, Path]) -> None:
    out, rows = analysed["out"], analysed["rows"]
    folder = out / "lmms_eval"
    expected = {"mvbench_action_sequence", "videomme", "nextqa_mc_test", "longvideobench_val_v"}
    assert expected <= {p.stem.removeprefix("samples_") for p in (folder / "baseline").glob("samples_*.jsonl")}
    assert {p.name for p in folder.iterdir()} == {setting_slug(s) for s in {r["setting"] for r in rows}}
    ours = folder / "baseline" / "samples_videomme.jsonl"
    samples = read_samples(ours)
    by_doc = {r["doc_id"]: r for r in rows if r["benchmark"] == "videomme" and r["setting"] == "baseline"}
    assert set(samples) == set(by_doc)
    for doc_id, s in samples.items():
        assert s["filtered_resps"] == [by_doc[doc_id]["answer"]] and s["input"] == by_doc[doc_id]["prompt"]
        score = s["videomme_perception_score"]
        assert score["pred_answer"] == (by_doc[doc_id]["extracted"] or "") and s["target"] == by_doc[doc_id]["gold"]
        assert score["score"] == float(by_doc[doc_id]["correct"]) and s["metrics"] == ["videomme_perception_score"]
    # An lmms-eval run over the same parquet logs doc_id = the row's index in it (its newer, flattened format).
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(copies["videomme"] / "videomme" / "test-00000-of-00001.parquet").to_pylist()
    theirs = out / "theirs.jsonl"
    theirs.write_text("".join(json.dumps({"doc_id": i, "target": d["answer"], "filtered_resps": "A",
                                          "input": "...", "videomme_perception_score": {"question_id": d["question_id"]}})
                              + "\n" for i, d in enumerate(table)))
    pairs = diff_samples(ours, theirs)
    assert [p["doc_id"] for p in pairs] == sorted(samples)
    assert all(p["target"] == p["their_target"] and p["theirs"] == "A" for p in pairs)
    assert all(samples[p["doc_id"]]["doc"]["question_id"] == table[p["doc_id"]]["question_id"] for p in pairs)
    # A run over a copy in another order still pairs by the benchmark's own question id.
    shuffled = out / "theirs-shuffled.jsonl"
    shuffled.write_text("".join(reversed(theirs.read_text().splitlines(keepends=True))).replace('"doc_id": ', '"x": '))
    by_qid = diff_samples(ours, shuffled, key="videomme_perception_score.question_id")
    assert sorted(p["videomme_perception_score.question_id"] for p in by_qid) == sorted(
        s["doc"]["question_id"] for s in samples.values())


@pytest.mark.slow
def test_a_copy_that_cannot_be_read_is_skipped_and_the_rest_runs(copies: dict[str, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    broken = tmp_path / "lvb"
    broken.mkdir()
    (broken / "lvb_val.json").write_text("{not json")
    out = tmp_path / "out"
    code = analyze_cli.main(_argv([f"nextqa:{copies['nextqa']}", f"longvideobench:{broken}"], out, "--limit", "2"))
    printed = capsys.readouterr().out
    assert code == 1 and "skipped longvideobench:" in printed and "'lvb_val.json' is not valid JSON" in printed
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["benchmark"] for r in rows} == {"nextqa"} and all(not r["error"] for r in rows)
