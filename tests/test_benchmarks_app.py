"""The Batch tab's "local benchmark folder" source: offered only where the server allows folders, a bad
spec refused with one sentence, and a run over a benchmark copy giving the paper-style table and a
download with paper_table.csv and the lmms-eval sample logs."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from app import batch, batch_tab
from app.batch_local import BENCHMARK, NOT_ALLOWED
from stts_core.data.benchmarks import fixtures

FRAMES = 4


def _sources(**kwargs: Any) -> list[str]:
    with gr.Blocks():
        tab = batch_tab.build_batch_tab(gr.Dropdown(["m"], value="m"), lambda label: None, **kwargs)
    return [c[1] for c in tab.source.choices]


def test_the_folder_source_is_offered_only_where_the_server_allows_folders() -> None:
    assert BENCHMARK in _sources()
    assert BENCHMARK not in _sources(public=True)
    assert BENCHMARK in _sources(public=True, allow_folders=True)
    assert batch_tab.benchmark_visibility(BENCHMARK)["visible"] and not batch_tab.benchmark_visibility(batch.UPLOAD)["visible"]


def test_bad_requests_are_one_sentence(tmp_path: Path) -> None:
    def load(spec: str, allow: bool = True) -> Any:
        return batch.load_batch_dataset(BENCHMARK, 10, None, FRAMES, tmp_path, benchmark=spec, allow_folders=allow)

    with pytest.raises(gr.Error) as err:
        load(f"nextqa:{tmp_path}", allow=False)
    assert err.value.message == NOT_ALLOWED
    with pytest.raises(gr.Error, match="is not a benchmark spec"):
        load(str(tmp_path))
    with pytest.raises(gr.Error, match="There is no NExT-QA folder"):
        load(f"nextqa:{tmp_path / 'nowhere'}")
    with pytest.raises(gr.Error, match="Give a benchmark folder"):
        load("  ")


@pytest.mark.slow
def test_a_benchmark_batch_shows_the_paper_table_and_bundles_the_logs(tmp_path: Path, micro_backend: Any) -> None:
    root = fixtures.nextqa(tmp_path / "NExT-QA", per_task=2)
    out = batch.run_batch(lambda label: micro_backend, "micro", BENCHMARK, 6, None, ["heuristic"], [0.5], FRAMES,
                          temp_dir=tmp_path, benchmark=f"nextqa:{root}", subset="test", allow_folders=True)
    table = out.benchmark_table
    assert list(table.columns) == ["setting", "NExT-QA", "average", "drop"]
    assert list(table["setting"]) == ["baseline", "heuristic@0.5"] and table["drop"][0] == "-"
    with zipfile.ZipFile(out.bundle) as archive:
        names = set(archive.namelist())
    assert {"paper_table.csv", "lmms_eval/baseline/samples_nextqa_mc_test.jsonl",
            "lmms_eval/heuristic_keep0.5/samples_nextqa_mc_test.jsonl"} <= names
    assert "**4 examples**" in out.status and "letter read from the answer" in out.status  # the copy's 4 test questions


def test_the_page_offers_folders_unless_public_without_custom_models(tmp_path: Path) -> None:
    from app.ui import build_demo

    def offered(**kwargs: Any) -> bool:
        demo = build_demo(examples_folder=tmp_path, **kwargs)
        radio = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "batch-source")
        return BENCHMARK in [c[1] for c in radio.choices]

    assert offered() and not offered(public=True) and offered(public=True, allow_custom=True)
