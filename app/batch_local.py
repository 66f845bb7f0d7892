"""The Batch tab's "local benchmark folder" source: benchmarks read from the server's disk in their
published layouts (`stts_core.data.benchmarks`), and the paper-style table of a run.

Only a server that allows folders offers it (not a public deployment unless custom models and folders
are explicitly allowed): the spec names a folder on the server, e.g. ``mvbench:/data/MVBench``.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from stts_core.analysis.bench_tables import paper_rows
from stts_core.data.benchmarks import list_benchmarks
from stts_core.data.tables import Dataset, DatasetError, combine_datasets, load_dataset

BENCHMARK = "Local benchmark folder"
NOT_ALLOWED = "This server does not read benchmark folders from its disk."
CHOICE_NOTE = ("\n\nMultiple choice: an answer is correct when the letter read from the answer is the gold letter "
               "(an answer naming no option is wrong), and agrees when it names the baseline's letter.")


def spec_help() -> str:
    names = ", ".join(f"`{b.name}:/path`" for b in list_benchmarks())
    return f"One spec per line or separated by spaces: {names}. The folder is on the server."


def _fail(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def load_local_benchmarks(specs: Any, subset: Any, limit: int, allow_folders: bool) -> Dataset:
    """The questions of every spec (at most ``limit`` in all, the tasks of each benchmark in turn); a spec
    that is not a benchmark, or a copy that cannot be read, is refused with one sentence."""
    if not allow_folders:
        raise _fail(NOT_ALLOWED)
    items = [s for s in str(specs or "").split() if s.strip()]
    if not items:
        raise _fail("Give a benchmark folder, e.g. mvbench:/data/MVBench.")
    names = {b.name for b in list_benchmarks()}
    odd = [s for s in items if s.split(":", 1)[0].lower() not in names or ":" not in s]
    if odd:
        raise _fail(f"'{odd[0]}' is not a benchmark spec; write one of {', '.join(sorted(names))} then :/path.")
    per_spec = max(1, limit // len(items))
    try:
        parts = [load_dataset(s, limit=per_spec, subset=str(subset or "")) for s in items]
    except DatasetError as err:
        raise _fail(str(err)) from err
    return combine_datasets(parts)


def benchmark_status(cells: list[dict[str, Any]]) -> str:
    """What the status line adds for a benchmark run: how a multiple-choice answer is graded."""
    return CHOICE_NOTE if cells else ""


def benchmark_table(cells: list[dict[str, Any]]) -> pd.DataFrame:
    """The paper-style table (accuracy % per benchmark, average, drop in points) for the tab."""
    if not cells:
        return pd.DataFrame()
    header, lines = paper_rows(cells)
    return pd.DataFrame(lines, columns=header)
