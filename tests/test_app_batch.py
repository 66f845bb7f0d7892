"""The app's "Batch analysis" tab: handlers on the micro checkpoint (results, flips, opening a flip in the
single-video view, bad uploads, the example cap, temporary folders) and the tab's wiring in a Blocks."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import numpy as np
import pytest

from app import batch, batch_tab
from app.batch import MAX_EXAMPLES_PER_REQUEST
from stts_core.analysis.metrics import flips
from stts_core.analysis.records import BASELINE, decode_mask
from stts_core.analysis.report import mask_tiles
from stts_core.data.synthetic import make_clip
from stts_core.data.video import load_video
from stts_core.data.video_encode import write_video
from stts_core.models.loading import ModelLoadError
from stts_core.pipeline import RunSettings, run

FRAMES = 4
KEEPS = [0.5, 0.2]
SCORERS = ["learned", "heuristic", "random", "frames"]
SETTINGS = 1 + len(KEEPS) * len(SCORERS)
TOKENS = 2
MODEL = "micro"


def _uploads(folder: Path) -> list[str]:
    """Files as Gradio hands them over (each in its own folder): a question table naming two clips (three
    questions), a damaged video and a video that was not uploaded."""
    rows = []
    paths = []
    for i, seed in enumerate((2_000_000, 2_000_001)):
        clip = make_clip(seed, num_frames=FRAMES, size=84)
        path = folder / f"u{i}" / f"clip{i}.mp4"
        path.parent.mkdir(parents=True)
        write_video(path, clip.frames, fps=4.0)
        paths.append(str(path))
        for qa in clip.qas[: 2 - i]:
            rows.append({"video": f"clip{i}.mp4", "question": qa.question, "answer": qa.answer, "type": qa.qtype})
    broken = folder / "u2" / "broken.mp4"
    broken.parent.mkdir()
    broken.write_bytes(bytes(range(256)) * 64)
    rows.append({"video": "broken.mp4", "question": "what color is the moving object ?", "answer": "red"})
    rows.append({"video": "nowhere.mp4", "question": "does the red circle move ?", "answer": "no"})
    table = folder / "u3" / "questions.csv"
    table.parent.mkdir()
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["video", "question", "answer", "type"])
        writer.writeheader()
        writer.writerows(rows)
    return [str(table), *paths, str(broken)]


def _getter(backend: Any) -> batch.GetBackend:
    def get(label: str) -> Any:
        if label != MODEL:
            raise ValueError("This app only runs the models listed in the Model box.")
        return backend

    return get


def _never(label: str) -> Any:
    raise AssertionError("the model must not be loaded for a request that cannot run")


def _one_sentence(err: pytest.ExceptionInfo) -> str:
    message = str(err.value.message)
    assert message and "\n" not in message and message.endswith(".") and "Traceback" not in message
    return message


def _select(table: Any, i: int) -> gr.SelectData:
    line = list(table.iloc[i])
    return gr.SelectData(None, {"index": [i, 0], "value": line[0], "row_value": line})


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, micro_backend: Any) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("batch")
    temp = root / "temp"
    temp.mkdir()
    files = _uploads(root / "uploads")
    out = batch.run_batch(_getter(micro_backend), MODEL, batch.UPLOAD, None, files, SCORERS, KEEPS, FRAMES,
                          max_new_tokens=TOKENS, temp_dir=temp)
    with zipfile.ZipFile(out.bundle) as archive:
        names = set(archive.namelist())
        rows = [json.loads(line) for line in archive.read("results.jsonl").decode().splitlines()]
    return {"out": out, "rows": rows, "names": names, "temp": temp, "files": files}


@pytest.mark.slow
def test_results_are_shown_and_bad_rows_listed(ran: dict[str, Any]) -> None:
    out, rows = ran["out"], ran["rows"]
    assert ran["names"] == {"results.jsonl", "summary.csv", "report.html"}
    assert len(rows) == 5 * SETTINGS  # three good questions, a damaged video, a missing one
    assert "**5 examples**" in out.status and "2 example(s) failed" in out.status
    assert {t.name for t in out.accuracy_plot.data} == set(SCORERS)
    assert {t.name for t in out.agreement_plot.data} == set(SCORERS)
    failed = out.failed_table
    assert list(failed.columns) == list(batch.FAILED_COLUMNS)
    assert sorted(Path(v).name for v in failed["video"]) == ["broken.mp4", "nowhere.mp4"]
    assert set(failed["settings"]) == {"all"} and all(failed["error"].str.len() > 0)
    assert sum(not r["error"] for r in rows) == 3 * SETTINGS


@pytest.mark.slow
def test_flip_table_has_one_line_per_flip(ran: dict[str, Any]) -> None:
    out, rows = ran["out"], ran["rows"]
    table = out.flip_table
    assert list(table.columns) == list(batch.FLIP_COLUMNS)
    expected = {(f["row"]["id"], f["row"]["setting"]) for f in flips(rows)}
    assert expected, "the micro model should change some answers under pruning"
    shown = {(e, f"{s}@{k:g}") for e, s, k in zip(table["example"], table["scorer"], table["keep"], strict=True)}
    assert shown == expected and len(table) == len(expected) == len(out.state.flips)
    base = {r["id"]: r["answer"] or "(no answer)" for r in rows if r["setting"] == BASELINE and not r["error"]}
    assert all(table["baseline answer"][i] == base[e] for i, e in enumerate(table["example"]))
    for i, f in enumerate(out.state.flips):  # the state keeps the table's order
        assert (table["example"][i], table["pruned answer"][i]) == (f["row"]["id"], f["row"]["answer"] or "(no answer)")


@pytest.mark.slow
def test_preview_dims_the_pruned_groups_of_the_clicked_flip(ran: dict[str, Any]) -> None:
    out = ran["out"]
    i = next(i for i, f in enumerate(out.state.flips) if f["row"]["scorer"] != "frames")
    image, info = batch.show_flip(out.state, _select(out.flip_table, i))
    row = out.state.flips[i]["row"]
    thumb = out.state.thumb(row["id"])
    assert image.dtype == np.uint8 and image.ndim == 3
    assert image.sum() < mask_tiles(thumb, np.ones_like(decode_mask(row["keep_mask"]))).sum()
    assert row["setting"] in info and (row["answer"] or "(no answer)") in info


@pytest.mark.slow
def test_open_flip_gives_the_single_view_the_example_and_settings(ran: dict[str, Any], micro_backend: Any) -> None:
    out = ran["out"]
    state, table = out.state, out.flip_table
    pruning = [i for i, f in enumerate(state.flips) if f["row"]["scorer"] in ("learned", "heuristic")]
    assert pruning
    i = pruning[-1]
    row, base = state.flips[i]["row"], state.flips[i]["baseline"]
    # A table sorted in the browser: the clicked line is found by its content, not its position.
    evt = gr.SelectData(None, {"index": [0, 0], "value": None, "row_value": list(table.iloc[i])})
    target = batch.open_flip(state, MODEL, evt)
    assert target._fields == batch.FLIP_TARGETS
    assert (target.question, target.scorer) == (row["question"], row["scorer"])
    assert (target.frames, target.keep, target.match_budget) == (FRAMES, row["keep"], False)
    original = next(f for f in ran["files"] if Path(f).name == row["video"])
    assert Path(target.video).read_bytes() == Path(original).read_bytes()
    assert not Path(target.video).is_relative_to(ran["temp"] / "upload")
    # The single-video view's run with these inputs gives the flip's answers and keep mask.
    result = run(micro_backend, target.video, target.question,
                 RunSettings(keep_ratio=target.keep, scorer=target.scorer, num_frames=target.frames,
                             max_new_tokens=TOKENS))
    assert (result.baseline.answer, result.stts.answer) == (base["answer"], row["answer"])
    assert np.array_equal(result.keep_mask, decode_mask(row["keep_mask"]))


@pytest.mark.slow
def test_flips_the_view_cannot_show_are_refused_in_a_sentence(ran: dict[str, Any]) -> None:
    state = ran["out"].state
    with pytest.raises(gr.Error) as err:  # the Model box changed since the batch
        batch.open_flip(state, "another model", _select(ran["out"].flip_table, 0))
    assert MODEL in _one_sentence(err)
    frames_rows = [i for i, f in enumerate(state.flips) if f["row"]["scorer"] == "frames"]
    if not frames_rows:
        pytest.skip("no frames-scorer flip in this run")
    with pytest.raises(gr.Error) as err:  # round(keep x 4) frames: below the view's smallest frame count
        batch.open_flip(state, MODEL, _select(ran["out"].flip_table, frames_rows[0]))
    assert "frame" in _one_sentence(err)


@pytest.mark.slow
def test_only_the_kept_folder_stays_and_the_next_batch_removes_it(ran: dict[str, Any], micro_backend: Any,
                                                                  tmp_path: Path) -> None:
    kept = list(ran["temp"].iterdir())
    assert kept == [ran["out"].state.folder] and (kept[0] / batch.BUNDLE).is_file()
    first = batch.run_batch(_getter(micro_backend), MODEL, batch.SYNTHETIC, 2, None, ["heuristic"], [0.5], FRAMES,
                            max_new_tokens=TOKENS, temp_dir=tmp_path)
    assert list(tmp_path.iterdir()) == [first.state.folder]
    assert "**2 examples**" in first.status
    second = batch.run_batch(_getter(micro_backend), MODEL, batch.SYNTHETIC, 2, None, ["heuristic"], [0.5], FRAMES,
                             previous=first.state, max_new_tokens=TOKENS, temp_dir=tmp_path)
    assert list(tmp_path.iterdir()) == [second.state.folder]
    batch.forget(second.state)  # the tab's state expired
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_zip_upload_runs_and_leaves_only_the_kept_folder(micro_backend: Any, tmp_path: Path) -> None:
    clip = make_clip(2_000_002, num_frames=FRAMES, size=84)
    write_video(tmp_path / "clip.mp4", clip.frames, fps=4.0)
    qa = clip.qas[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("set/questions.jsonl", json.dumps({"video": "clips/a.mp4", "question": qa.question,
                                                            "answer": qa.answer, "type": qa.qtype}) + "\n")
        archive.write(tmp_path / "clip.mp4", "set/clips/a.mp4")
    upload = _file(tmp_path / "up" / "data.zip", buf.getvalue())
    temp = tmp_path / "temp"
    temp.mkdir()
    out = batch.run_batch(_getter(micro_backend), MODEL, batch.UPLOAD, None, [{"path": upload}], ["heuristic"],
                          [0.2], FRAMES, max_new_tokens=TOKENS, temp_dir=temp)
    assert "**1 example**" in out.status and "Every example ran." in out.status and out.failed_table.empty
    assert list(temp.iterdir()) == [out.state.folder]
    with zipfile.ZipFile(out.bundle) as archive:
        rows = [json.loads(line) for line in archive.read("results.jsonl").decode().splitlines()]
    assert [(r["setting"], r["gold"], r["error"]) for r in rows] == [("baseline", qa.answer, None),
                                                                     ("heuristic@0.2", qa.answer, None)]
    batch.forget(out.state)
    assert list(temp.iterdir()) == []


@pytest.fixture()
def app_handlers(micro_checkpoint: Path) -> Any:
    """The single-video view's handlers with the micro checkpoint as the built-in model."""
    from app.handlers import Handlers
    from app.models import CACHE, ModelChoices

    CACHE.clear()
    CACHE.configure(device="cpu", max_models=2)
    yield Handlers(ModelChoices(builtin_path=str(micro_checkpoint)))
    CACHE.clear()


@pytest.mark.slow
def test_a_flip_opened_in_the_single_video_view_gives_its_answers_and_mask(app_handlers: Any,
                                                                          tmp_path: Path) -> None:
    from app.models import BUILTIN_LABEL

    def get(label: str) -> Any:  # the page's wiring: the Model box value through the view's own loader
        return app_handlers._load(app_handlers.choices.source(label))

    out = batch.run_batch(get, BUILTIN_LABEL, batch.SYNTHETIC, 2, None, ["heuristic"], [0.1], FRAMES,
                          temp_dir=tmp_path)
    assert out.state.flips, "the micro model should change an answer at keep 0.1"
    row, base = out.state.flips[0]["row"], out.state.flips[0]["baseline"]
    target = batch.open_flip(out.state, BUILTIN_LABEL, _select(out.flip_table, 0))
    shown = app_handlers.run(target.video, target.question, BUILTIN_LABEL, target.scorer, target.frames,
                             target.keep, target.match_budget)
    assert base["answer"].strip() and row["answer"].strip()
    assert (shown.baseline_answer, shown.stts_answer) == (base["answer"], row["answer"])
    assert np.array_equal(shown.view.result.keep_mask, decode_mask(row["keep_mask"]))
    batch.forget(out.state)


def test_kept_folders_are_bounded(tmp_path: Path) -> None:
    kept = batch._Kept(limit=2)
    folders = [tmp_path / str(i) for i in range(3)]
    for f in folders:
        f.mkdir()
        kept.add(f)
    assert [f.exists() for f in folders] == [False, True, True]
    kept.clear()  # at exit
    assert not any(f.exists() for f in folders)


def _bad(files: list[str], tmp_path: Path, **kwargs: Any) -> str:
    temp = tmp_path / "temp"
    temp.mkdir(exist_ok=True)
    with pytest.raises(gr.Error) as err:
        batch.run_batch(_never, MODEL, batch.UPLOAD, None, files, SCORERS, KEEPS, FRAMES, temp_dir=temp, **kwargs)
    assert list(temp.iterdir()) == []  # every temporary folder removed
    return _one_sentence(err)


def _file(path: Path, data: bytes | str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def test_text_file_named_csv_is_refused_in_one_sentence(tmp_path: Path) -> None:
    message = _bad([_file(tmp_path / "up" / "questions.csv", "just some notes,about videos\nnothing,here\n")],
                   tmp_path)
    assert "video and question" in message
    assert "UTF-8" in _bad([_file(tmp_path / "up2" / "questions.csv", bytes(range(128, 256)))], tmp_path)


def test_zip_with_an_escaping_path_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("questions.csv", "video,question\nclip.mp4,what moves ?\n")
        archive.writestr("../../escaped.mp4", b"not a video")
    message = _bad([_file(tmp_path / "up" / "data.zip", buf.getvalue())], tmp_path)
    assert "unsafe path" in message
    assert not list(tmp_path.rglob("escaped.mp4"))
    assert "zip" in _bad([_file(tmp_path / "up2" / "data.zip", "not a zip")], tmp_path)


@pytest.mark.parametrize("names, needle", [
    ([], "Upload"),
    (["a.csv", "b.jsonl"], "exactly one question table"),
    (["questions.csv", "notes.txt"], "notes.txt"),
    (["data.zip", "questions.csv"], "either one .zip"),
])
def test_upload_shapes_are_checked(names: list[str], needle: str, tmp_path: Path) -> None:
    files = [_file(tmp_path / "up" / str(i) / n, "video,question\nclip.mp4,what moves ?\n") for i, n in enumerate(names)]
    assert needle in _bad(files, tmp_path)


def test_example_cap_is_enforced(tmp_path: Path) -> None:
    n = MAX_EXAMPLES_PER_REQUEST + 1
    table = "video,question\n" + "".join(f"clip{i}.mp4,what moves ?\n" for i in range(n))
    message = _bad([_file(tmp_path / "up" / "questions.csv", table)], tmp_path)
    assert str(n) in message and str(MAX_EXAMPLES_PER_REQUEST) in message
    temp = tmp_path / "temp"
    with pytest.raises(gr.Error) as err:
        batch.run_batch(_never, MODEL, batch.SYNTHETIC, n, None, SCORERS, KEEPS, FRAMES, temp_dir=temp)
    assert str(MAX_EXAMPLES_PER_REQUEST) in _one_sentence(err) and list(temp.iterdir()) == []


@pytest.mark.parametrize("scorers, keeps, frames, public, needle", [
    ([], KEEPS, FRAMES, False, "scorer"),
    (["magic"], KEEPS, FRAMES, False, "scorer"),
    (SCORERS, [], FRAMES, False, "keep ratio"),
    (SCORERS, [0.33], FRAMES, False, "keep ratio"),
    (SCORERS, KEEPS, 4.5, False, "Frames"),
    (SCORERS, KEEPS, 32, True, f"4 to {batch.PUBLIC_MAX_FRAMES}"),
    (SCORERS, KEEPS, 65, False, "4 to 64"),
])
def test_settings_out_of_bounds_are_refused(scorers: list, keeps: list, frames: Any, public: bool, needle: str
                                            ) -> None:
    with pytest.raises(gr.Error) as err:
        batch.batch_settings(scorers, keeps, frames, public)
    assert needle in _one_sentence(err)


def test_frames_a_public_server_allows_are_accepted() -> None:
    cfg = batch.batch_settings(["frames", "random"], ["0.2", 0.5], 16, public=True, max_new_tokens=3)
    assert (cfg.scorers, cfg.keeps, cfg.num_frames, cfg.max_new_tokens) == (("frames", "random"), (0.5, 0.2), 16, 3)


@pytest.mark.parametrize("error", [ValueError("Please choose a model."),
                                   ModelLoadError("Could not load the model 'x': no config.json.")])
def test_model_that_cannot_load_is_one_sentence_and_leaves_no_folder(error: Exception, tmp_path: Path) -> None:
    def get(label: str) -> Any:
        raise error

    with pytest.raises(gr.Error) as err:
        batch.run_batch(get, "x", batch.SYNTHETIC, 2, None, ["random"], [0.5], FRAMES, temp_dir=tmp_path)
    assert _one_sentence(err) == str(error)
    assert list(tmp_path.iterdir()) == []


def test_open_flip_before_any_batch_is_a_sentence() -> None:
    with pytest.raises(gr.Error) as err:
        batch.open_flip(None, MODEL, gr.SelectData(None, {"index": [0, 0], "value": None, "row_value": None}))
    _one_sentence(err)


def test_tab_builds_and_batch_work_has_its_own_queue_slot() -> None:
    with gr.Blocks() as demo:
        view = SimpleNamespace(video=gr.Video(), question=gr.Textbox(), model_box=gr.Dropdown([MODEL], value=MODEL),
                               scorer=gr.Radio(["learned", "heuristic", "random"]), frames=gr.Slider(4, 256),
                               keep=gr.Slider(0.05, 1.0), match_budget=gr.Checkbox())
        single = gr.Button("Run")
        single.click(lambda *a: None, [view.video, view.question], None, concurrency_id="model")
        with gr.Tabs():
            tab = batch_tab.build_batch_tab(view.model_box, _never)
        tab.flip_table.select(batch.open_flip, [tab.state, view.model_box], batch.flip_outputs(view))
    components = {k: v for k, v in tab._asdict().items() if k != "run_event"}
    assert all(c._id in demo.blocks for c in components.values())
    fns = list(demo.fns.values())
    batch_fn = next(f for f in fns if f.concurrency_id == batch.BATCH_CONCURRENCY)
    assert batch_fn.concurrency_limit == 1 and batch_fn.queue and batch_fn.api_name == "batch"
    assert [c._id for c in batch_fn.inputs][0] == view.model_box._id
    assert [c._id for c in batch_fn.outputs][-1] == tab.state._id
    assert [f for f in fns if f.concurrency_id == "model"]  # the single-video view keeps its own slot
    assert sum(f.concurrency_id == batch.BATCH_CONCURRENCY for f in fns) == 1
    open_fn = next(f for f in fns if f.name == "open_flip")
    assert [c._id for c in open_fn.outputs] == [getattr(view, n)._id for n in batch.FLIP_TARGETS]
    selects = [f for f in fns if (tab.flip_table._id, "select") in f.targets]
    assert {f.name for f in selects} == {"show_flip", "open_flip"}
    deps = demo.get_config_file()["dependencies"]
    assert next(d for d in deps if d["id"] == batch_fn._id)["api_name"] == "batch"
    limits = {f.name: f.concurrency_limit for f in fns}
    assert limits["run_event"] == 1


def test_source_choice_shows_the_matching_input() -> None:
    count, files = batch_tab.source_visibility(batch.UPLOAD)
    assert (count["visible"], files["visible"]) == (False, True)
    count, files = batch_tab.source_visibility(batch.SYNTHETIC)
    assert (count["visible"], files["visible"]) == (True, False)


@pytest.mark.slow
def test_kept_flip_video_decodes(ran: dict[str, Any]) -> None:
    state = ran["out"].state
    for path in set(state.videos.values()):
        assert load_video(path, FRAMES).frames.shape[0] == FRAMES


def test_the_page_opens_a_clicked_flip_in_the_single_video_view_and_runs_it(tmp_path) -> None:
    """build_demo wires the batch tab: a flip click fills the single view's inputs, shows the masks tab and
    goes on to the same Run chain (the model's queue slot) as the Run button."""
    from app.ui import build_demo

    demo = build_demo(examples_folder=tmp_path)
    fns = list(demo.fns.values())
    open_fn = next(f for f in fns if f.name == "open_flip")
    assert [getattr(c, "elem_id", None) for c in open_fn.outputs][:2] == ["video", "question"]
    deps = {d["id"]: d for d in demo.get_config_file()["dependencies"]}
    chain, fn_id = [], open_fn._id
    by_id = {f._id: f for f in fns}
    while True:
        nxt = [d for d in deps.values() if d.get("trigger_after") == fn_id]
        if not nxt:
            break
        fn_id = nxt[0]["id"]
        chain.append(by_id[fn_id])
    names = [f.name for f in chain]
    assert "start" in names and "run_ui" in names
    assert next(f for f in chain if f.name == "run_ui").concurrency_id == "model"
