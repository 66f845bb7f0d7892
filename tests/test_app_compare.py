"""The Compare methods tab without a browser: one video, 2-6 methods at one keep ratio; per method the same
budget, its own cost, a mask strip over the same frames; the keep slider's instant redraw; the checks."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from app.compare import CompareHandlers, CompareOutputs, masks_at
from app.models import ModelChoices
from stts_core import kept_group_count
from stts_core.data.synthetic import make_clip
from stts_core.data.video_encode import write_video

METHODS = ["learned", "frames", "evs", "divprune", "fastv"]  # the registry's order (the table's)


@pytest.fixture(scope="module")
def compare(handlers) -> CompareHandlers:  # noqa: ANN001 - the conftest fixture imports gradio lazily
    return CompareHandlers(handlers)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    made = make_clip(6)
    path = write_video(tmp_path_factory.mktemp("compare") / "clip.mp4", made.frames, fps=8)
    return str(path), made.qas[0].question


@pytest.fixture(scope="module")
def compared(compare: CompareHandlers, clip: tuple[str, str]) -> tuple:
    path, question = clip
    out = compare.compare_ui(path, question, ModelChoices().selected, METHODS, 8, 0.5)
    assert out[-1].startswith("Done: keep 0.50"), out[-1]
    return out


def test_every_method_gets_the_same_budget_and_its_own_cost(compared: tuple) -> None:
    outputs = CompareOutputs(*compared[:len(CompareOutputs._fields)])
    view = compared[len(CompareOutputs._fields)]
    table = outputs.table
    assert list(table["method"]) == ["baseline", *METHODS]
    t, g = view.results[0].keep_mask.shape
    budget = kept_group_count(t, g, 0.5)
    base = view.results[0].baseline
    for result, name in zip(view.results, view.names, strict=True):
        assert result.baseline is None or name == METHODS[0]
        if name != "frames":
            assert result.stts.visual_tokens == int(result.keep_mask.sum()) == budget
        if name in ("evs", "divprune", "fastv"):  # the full ViT: savings only in the LLM
            assert result.stts.vit_suffix_tokens == base.vit_suffix_tokens
    learned = view.results[0].stts
    assert learned.vit_suffix_tokens < base.vit_suffix_tokens
    assert set(table["agrees"][1:]) <= {"yes", "no"}
    assert all(float(x.rstrip("x")) > 0 for x in table["vs baseline"])
    assert [m["method"] for m in outputs.details["methods"]] == METHODS
    assert outputs.strips.ndim == 3 and outputs.strips.shape[2] == 3
    assert "FastV: after its pruning layer" in outputs.summary


def test_the_bundle_holds_every_run(compared: tuple) -> None:
    bundle = Path(CompareOutputs(*compared[:len(CompareOutputs._fields)]).bundle)
    with zipfile.ZipFile(bundle) as zf:
        assert {"compare.json", "methods.csv", "strips.png"} <= set(zf.namelist())
        data = json.loads(zf.read("compare.json"))
        assert [m["method"] for m in data["methods"]] == METHODS and data["baseline"]["visual_tokens"] > 0
        assert zf.read("methods.csv").decode().splitlines()[0].startswith("method,stage,agrees,TTFT ms")


def test_the_keep_slider_redraws_every_mask_that_needs_no_model(compare: CompareHandlers, compared: tuple,
                                                               clip: tuple[str, str]) -> None:
    view = compared[len(CompareOutputs._fields)]
    t, g = view.results[0].keep_mask.shape
    masks = dict(zip(view.names, masks_at(view, 0.2), strict=True))
    for name in ("learned", "evs", "divprune"):
        assert int(masks[name].sum()) == kept_group_count(t, g, 0.2)
    assert np.array_equal(masks["fastv"], view.results[METHODS.index("fastv")].keep_mask)  # chosen in the LLM
    assert int(masks["frames"].any(axis=1).sum()) == round(0.2 * t)
    assert bool(masks["learned"][0].all()) and bool(masks["evs"][0].all())
    strips, summary, status = compare.preview(0.2, view, clip[0], ModelChoices().selected, METHODS, 8)
    assert strips.shape == CompareOutputs(*compared[:6]).strips.shape  # the same frames at the same scale
    assert "Keep 0.20" in summary and "fastv" in summary and "rerun" in status
    stale = compare.preview(0.2, view, clip[0], ModelChoices().selected, METHODS[:2], 8)
    assert stale[0] == gr.skip() and "press **Compare**" in stale[2]
    assert compare.rerun(clip[0], clip[1], ModelChoices().selected, METHODS, 8, 0.5, view)[0] == gr.skip()


@pytest.mark.parametrize("methods, message", [(["evs"], "Choose 2 to 6"), (["evs", "oracle"], "Unknown method"),
                                              (["learned", "heuristic", "random", "evs", "vidcom2", "divprune",
                                                "fastv"], "Choose 2 to 6")])
def test_bad_method_choices_are_one_sentence(compare: CompareHandlers, clip: tuple[str, str], methods: list[str],
                                             message: str) -> None:
    with pytest.raises(gr.Error, match=message):
        compare.compare(clip[0], clip[1], ModelChoices().selected, methods, 8, 0.5)
    out = compare.compare_ui(clip[0], clip[1], ModelChoices().selected, methods, 8, 0.5)
    assert out[-1].startswith("⚠️") and message in out[-1] and out[0] == gr.skip()


def test_a_family_without_llm_pruning_refuses_fastv_before_any_run(compare: CompareHandlers, clip: tuple[str, str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    backend = compare.handlers.backend_for(ModelChoices().selected)
    monkeypatch.setattr(backend, "capabilities", frozenset())
    with pytest.raises(gr.Error, match="cannot prune inside its LLM"):
        compare.compare(clip[0], clip[1], ModelChoices().selected, ["evs", "fastv"], 8, 0.5)


@pytest.mark.slow
def test_compare_endpoint_for_scripts(micro_checkpoint: Path, tmp_path: Path) -> None:
    """"/compare" as a script calls it (gradio_client against the launched app), and a bad choice's sentence."""
    from app_server import serve
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(serve(micro_checkpoint).url, verbose=False)
    clip = write_video(tmp_path / "clip.mp4", make_clip(12).frames, fps=8)
    out = client.predict(handle_file(str(clip)), "what shape is the moving object ?", str(micro_checkpoint),
                         ["evs", "learned", "fastv"], 8, 0.25, api_name="/compare")
    strips, table, chart, summary, details, bundle = out
    assert Path(strips).is_file() and "Keep 0.25" in summary
    assert [row[0] for row in table["data"]] == ["baseline", "learned", "evs", "fastv"]
    assert [m["method"] for m in details["methods"]] == ["learned", "evs", "fastv"]
    assert {m["stts"]["visual_tokens"] for m in details["methods"]} == {details["methods"][0]["kept_groups"]}
    with zipfile.ZipFile(bundle) as zf:
        assert json.loads(zf.read("compare.json"))["keep_ratio"] == 0.25
    with pytest.raises(AppError, match=r"Choose 2 to 6 methods to compare \(got 1\)\."):
        client.predict(handle_file(str(clip)), "what is it ?", str(micro_checkpoint), ["evs"], 8, 0.5,
                       api_name="/compare")


def test_the_device_task_takes_a_path_and_decodes_it_once(compared: tuple, clip: tuple[str, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """On ZeroGPU the video arrives as a path: it is opened once and every run shares its decode."""
    from app import compare as compare_module
    from app.forms import LIMITS
    from stts_core.data import video as video_module
    from stts_core.pipeline import RunSettings

    opened = []
    real = video_module.open_video

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(compare_module, "open_video", counting)
    view = compared[len(CompareOutputs._fields)]
    settings = RunSettings(keep_ratio=0.5, scorer="evs", num_frames=8, max_new_tokens=4)
    results, features = compare_module.compare_on_device(view.key[1], clip[0], clip[1], settings, ["evs", "learned"],
                                                         LIMITS)
    assert opened == [clip[0]]
    assert [r.scorer_used for r in results] == ["evs", "learned"]
    assert results[0].baseline is not None and results[1].baseline is None
    t, g = results[0].keep_mask.shape
    assert features is not None and features.shape[:2] == (t, g)
