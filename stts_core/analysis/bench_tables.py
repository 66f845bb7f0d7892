"""Paper-style tables for benchmark runs: accuracy per benchmark and per task / category / duration
class, the baseline against every method x keep ratio, the average over benchmarks and the drop.

Each cell is a summary cell (`metrics._cell`: n, failed, accuracy, agreement, flips, tokens, model time)
plus ``benchmark``, ``group`` ("all", "task:<name>", "category:<name>", "duration:<class>") and ``drop``
(accuracy minus the baseline's in the same benchmark and group; negative = pruning lost accuracy). The
``average`` benchmark is the mean of the benchmarks' overall accuracies, as the paper averages its
tasks; its ``drop`` is the average's minus the baseline average. The cells go into summary.csv (after the
plain summary), ``paper_table.csv`` (setting x benchmark, wide), the report and the app's Batch tab.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stts_core.analysis.metrics import _cell as summary_cell  # the one definition of a summary cell
from stts_core.analysis.metrics import _csv_value
from stts_core.analysis.records import BASELINE, Setting
from stts_core.data.benchmarks import get_benchmark

AVERAGE = "average"
KINDS = ("duration", "task", "category")  # the per-group tables, in this order after "all"
PAPER_TABLE = "paper_table.csv"


def _label(name: str) -> str:
    try:
        return get_benchmark(name).label
    except ValueError:
        return name


def _groups(name: str, rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """("all", rows), then each duration class (in the benchmark's order), task and category."""
    try:
        order = get_benchmark(name).durations
    except ValueError:
        order = ()
    out = [("all", list(rows))]
    for kind in KINDS:
        labels = {str(r[kind]) for r in rows if r.get(kind)}
        ranked = [d for d in order if d in labels] + sorted(labels - set(order)) if kind == "duration" else sorted(labels)
        out += [(f"{kind}:{label}", [r for r in rows if str(r.get(kind)) == label]) for label in ranked]
    return out


def _average(setting: Setting, cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    overall = [c for c in cells if c["setting"] == setting.key and c["group"] == "all"]
    accs = [c["accuracy"] for c in overall if c["accuracy"] is not None]
    agrees = [c["agreement"] for c in overall if c.get("agreement") is not None]
    sums = {k: sum(int(c.get(k) or 0) for c in overall) for k in ("n", "failed", "with_gold", "correct")}
    return {"setting": setting.key, "scorer": setting.scorer or BASELINE, "keep": setting.keep, "type": "all",
            **sums, "accuracy": sum(accs) / len(accs) if accs else None,
            "agreement": sum(agrees) / len(agrees) if agrees else None, "benchmark": AVERAGE, "group": "all",
            "benchmarks": len(accs)}


def benchmark_cells(rows: Sequence[dict[str, Any]], plan: Sequence[Setting]) -> list[dict[str, Any]]:
    """Every (setting, benchmark, group) cell of the rows that come from a benchmark, the averages over
    benchmarks when there are several, each with its drop; [] when no row comes from a benchmark."""
    mine = [r for r in rows if r.get("benchmark")]
    if not mine:
        return []
    base = {r["id"]: r for r in mine if r["setting"] == BASELINE and not r.get("error")}
    names = list(dict.fromkeys(str(r["benchmark"]) for r in mine))
    cells: list[dict[str, Any]] = []
    for setting in plan:
        rows_s = [r for r in mine if r["setting"] == setting.key]
        for name in names:
            for group, sub in _groups(name, [r for r in rows_s if r["benchmark"] == name]):
                if sub:
                    cells.append({**summary_cell(setting, group, sub, base), "benchmark": name, "group": group})
        if len(names) > 1:
            cells.append(_average(setting, cells))
    ref = {(c["benchmark"], c["group"]): c["accuracy"] for c in cells if c["setting"] == BASELINE}
    for c in cells:
        b = ref.get((c["benchmark"], c["group"]))
        c["drop"] = None if c["setting"] == BASELINE or b is None or c["accuracy"] is None else c["accuracy"] - b
    return cells


def paper_rows(cells: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The paper's table: one line per setting with each benchmark's accuracy (%), the average and its drop
    (points); returns the header and the lines."""
    names = list(dict.fromkeys(c["benchmark"] for c in cells if c["benchmark"] != AVERAGE))
    settings = list(dict.fromkeys(c["setting"] for c in cells))
    overall = {(c["setting"], c["benchmark"]): c for c in cells if c["group"] == "all"}
    avg_name = AVERAGE if any(c["benchmark"] == AVERAGE for c in cells) else names[0] if names else AVERAGE
    header = ["setting", *[_label(n) for n in names], "average", "drop"]
    lines = []
    for s in settings:
        accs = [overall.get((s, n), {}).get("accuracy") for n in names]
        avg = overall.get((s, avg_name), {})
        lines.append([s, *[_pct(a) for a in accs], _pct(avg.get("accuracy")), _points(avg.get("drop"))])
    return header, lines


def group_rows(cells: Sequence[dict[str, Any]], benchmark: str) -> tuple[list[str], list[list[Any]]]:
    """One benchmark's per-group table: one line per group (all, durations, tasks, categories) with its
    question count and each setting's accuracy (%)."""
    mine = [c for c in cells if c["benchmark"] == benchmark]
    settings = list(dict.fromkeys(c["setting"] for c in mine))
    groups = list(dict.fromkeys(c["group"] for c in mine))
    table = {(c["group"], c["setting"]): c for c in mine}
    lines = []
    for g in groups:
        n = max(int(table[(g, s)]["with_gold"]) for s in settings if (g, s) in table)
        lines.append([g, n, *[_pct(table[(g, s)]["accuracy"]) if (g, s) in table else "-" for s in settings]])
    return ["group", "n", *settings], lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}"


def text_table(header: Sequence[str], lines: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with columns as wide as their widest cell (first column left-aligned)."""
    cols = [list(map(str, col)) for col in zip(header, *lines, strict=True)]
    widths = [max(len(x) for x in col) for col in cols]
    fmt = [f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths)]
    return "\n".join("  ".join(f.format(str(v)) for f, v in zip(fmt, line, strict=True)) for line in [header, *lines])


def format_tables(cells: Sequence[dict[str, Any]]) -> str:
    """The paper table then each benchmark's per-group table, as text (accuracy in %, drop in points)."""
    if not cells:
        return ""
    parts = ["Accuracy (%) per benchmark; drop = average minus the baseline's, in points", text_table(*paper_rows(cells))]
    for name in dict.fromkeys(c["benchmark"] for c in cells if c["benchmark"] != AVERAGE):
        parts += [f"\n{_label(name)}: accuracy (%) per group", text_table(*group_rows(cells, name))]
    return "\n".join(parts)


def html_tables(cells: Sequence[dict[str, Any]]) -> str:
    """The same tables as HTML (for report.html)."""
    if not cells:
        return ""
    out = ["<h2>Benchmarks</h2><p class=note>Accuracy (%) per benchmark, the mean over benchmarks and its drop "
           "against the unpruned baseline (points). A multiple-choice answer is correct when the letter read from "
           "it is the gold letter; an answer naming no option counts as wrong.</p>", _html(*paper_rows(cells))]
    for name in dict.fromkeys(c["benchmark"] for c in cells if c["benchmark"] != AVERAGE):
        out += [f"<h3>{html.escape(_label(name))}</h3>", _html(*group_rows(cells, name))]
    return "\n".join(out)


def _html(header: Sequence[str], lines: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th{' class=l' if i == 0 else ''}>{html.escape(str(h))}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{' class=l' if i == 0 else ''}>{html.escape(str(v))}</td>"
                                    for i, v in enumerate(line)) + "</tr>" for line in lines)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_paper_table(path: Path, cells: Sequence[dict[str, Any]]) -> None:
    """paper_table.csv: setting x benchmark accuracy (fractions), average and drop."""
    names = list(dict.fromkeys(c["benchmark"] for c in cells if c["benchmark"] != AVERAGE))
    overall = {(c["setting"], c["benchmark"]): c for c in cells if c["group"] == "all"}
    avg_name = AVERAGE if len(names) > 1 else names[0]
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["setting", "scorer", "keep", *names, "average", "drop"])
        for s in dict.fromkeys(c["setting"] for c in cells):
            first = next(c for c in cells if c["setting"] == s)
            avg = overall.get((s, avg_name), {})
            writer.writerow([s, first["scorer"], _csv_value(first["keep"]),
                             *[_csv_value(overall.get((s, n), {}).get("accuracy")) for n in names],
                             _csv_value(avg.get("accuracy")), _csv_value(avg.get("drop"))])
