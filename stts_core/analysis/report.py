"""report.html for `python -m stts_core.analyze`: one self-contained offline page.

plotly.js is embedded once (no network needed), thumbnails are inline base64 PNGs, and every piece of
user text (questions, answers, file names, errors) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from stts_core.analysis.bench_tables import html_tables
from stts_core.analysis.metrics import flips, method_costs, method_disagreements, pairwise_agreement
from stts_core.analysis.records import BASELINE, Analysis, Thumb, decode_mask
from stts_core.analysis.store import load_thumb
from stts_core.methods.registry import get_method

DIM = 0.3  # brightness of a pruned group in a thumbnail
GAP = 2  # pixels between thumbnail tiles
MAX_GALLERY = 60
MAX_DISAGREEMENTS = 40  # examples listed in the method-vs-method view (all are in results.jsonl)
KIND_TEXT = {"right_to_wrong": "baseline right -> pruned wrong", "wrong_to_right": "baseline wrong -> pruned right",
             "changed": "answer changed"}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1f2328;max-width:1200px}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{border:1px solid #d0d7de;padding:3px 8px;
text-align:right} th{background:#f6f8fa} td.l,th.l{text-align:left} .note{color:#57606a;font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:8px} .gallery{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px;width:560px;font-size:13px}
.card img{image-rendering:pixelated;max-width:100%} .bad{color:#cf222e} .good{color:#1a7f37}
"""


# ------------------------------------------------------------------------------------------- thumbnails


def method_color(name: str) -> str | None:
    """A method's colour from the registry (None lets plotly choose, e.g. for the baseline)."""
    try:
        return get_method(name).color
    except ValueError:
        return None


def pixel_groups(groups: np.ndarray, patch_grid: tuple[int, int], height: int, width: int) -> np.ndarray:
    """(height, width) group index of each pixel of a frame (-1: no group). The processor squashes a
    frame onto pr x pc patches, so pixel row y lies in patch row floor(y * pr / height)."""
    pr, pc = patch_grid
    owner = np.full(pr * pc, -1, dtype=np.int64)
    gi, slot = np.nonzero(groups >= 0)
    owner[groups[gi, slot]] = gi
    rows = (np.arange(height) * pr) // height
    cols = (np.arange(width) * pc) // width
    return owner[rows[:, None] * pc + cols[None, :]]


def mask_tiles(thumb: Thumb, keep: np.ndarray, columns: int = 8) -> np.ndarray:
    """The thumbnail frames in a grid with pruned groups dimmed (a frame the frames scorer did not use
    is dimmed whole); (H, W, 3) uint8."""
    frames = thumb.frames
    t, h, w = frames.shape[:3]
    owner = pixel_groups(thumb.groups, thumb.patch_grid, h, w)
    covered = owner >= 0
    cols = max(1, min(columns, t))
    rows = -(-t // cols)
    canvas = np.full((rows * (h + GAP) - GAP, cols * (w + GAP) - GAP, 3), 255, dtype=np.uint8)
    for i in range(t):
        kept = np.where(covered, keep[i][np.clip(owner, 0, None)], bool(keep[i].any()))
        tile = (frames[i] * np.where(kept, 1.0, DIM)[..., None]).astype(np.uint8)
        r, c = divmod(i, cols)
        canvas[r * (h + GAP): r * (h + GAP) + h, c * (w + GAP): c * (w + GAP) + w] = tile
    return canvas


def png_data_uri(image: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError("Could not encode a thumbnail as PNG.")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


# ------------------------------------------------------------------------------------------- charts


def _overall(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in summary if c["type"] == "all"]


def curve_figure(summary: Sequence[dict[str, Any]], metric: str, title: str) -> go.Figure | None:
    """`metric` (accuracy or agreement) against the keep ratio, one line per scorer; the baseline's
    accuracy as a dashed line."""
    cells = _overall(summary)
    fig = go.Figure()
    for scorer in dict.fromkeys(c["scorer"] for c in cells if c["scorer"] != BASELINE):
        pts = sorted((c["keep"], c[metric]) for c in cells if c["scorer"] == scorer and c[metric] is not None)
        if pts:
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[100 * p[1] for p in pts], name=scorer,
                                     mode="lines+markers", line={"color": method_color(scorer)}))
    base = next((c for c in cells if c["scorer"] == BASELINE), None)
    if metric == "accuracy" and base is not None and base["accuracy"] is not None:
        fig.add_hline(y=100 * base["accuracy"], line_dash="dash", line_color="#607d8b",
                      annotation_text=f"unpruned {100 * base['accuracy']:.1f}%")
    if not fig.data:
        return None
    fig.update_layout(title=title, width=560, height=380, margin={"l": 50, "r": 20, "t": 50, "b": 45},
                      xaxis_title="keep ratio (fraction of visual tokens kept)", yaxis_title=f"{metric} (%)",
                      xaxis={"autorange": "reversed"}, yaxis={"range": [-2, 102]}, template="plotly_white")
    return fig


def type_figure(summary: Sequence[dict[str, Any]]) -> go.Figure | None:
    """Accuracy per question type (rows) and setting (columns)."""
    cells = [c for c in summary if c["type"] != "all" and c["accuracy"] is not None]
    if not cells:
        return None
    types = sorted({c["type"] for c in cells})
    settings = list(dict.fromkeys(c["setting"] for c in cells))
    table = {(c["type"], c["setting"]): c for c in cells}
    z = [[100 * table[(t, s)]["accuracy"] if (t, s) in table else None for s in settings] for t in types]
    text = [[f"{100 * table[(t, s)]['accuracy']:.0f}%<br>n={table[(t, s)]['with_gold']}" if (t, s) in table else ""
             for s in settings] for t in types]
    fig = go.Figure(go.Heatmap(z=z, x=settings, y=types, text=text, texttemplate="%{text}", colorscale="Viridis",
                               zmin=0, zmax=100, colorbar={"title": "%"}))
    fig.update_layout(title="Accuracy by question type", height=120 + 40 * len(types), width=1100,
                      margin={"l": 140, "r": 20, "t": 50, "b": 80}, template="plotly_white")
    return fig


def _figure_html(fig: go.Figure | None) -> str:
    return "" if fig is None else fig.to_html(full_html=False, include_plotlyjs=False)


# ------------------------------------------------------------------------------------------- tables


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def summary_table(summary: Sequence[dict[str, Any]]) -> str:
    head = ("setting", "n", "failed", "accuracy", "agreement", "right -> wrong", "wrong -> right", "no answer",
            "visual tokens", "scores without spread", "model ms")
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for c in _overall(summary):
        vals = (c["n"], c["failed"], _fmt(c["accuracy"], True), _fmt(c["agreement"], True), _fmt(c["right_to_wrong"]),
                _fmt(c["wrong_to_right"]), c["no_answer"], _fmt(c["visual_tokens"]), _fmt(c["no_spread"]),
                "-" if c["model_s"] is None else f"{1e3 * c['model_s']:.1f}")
        out.append(f"<tr><td class=l>{html.escape(c['setting'])}</td>" + "".join(f"<td>{v}</td>" for v in vals)
                   + "</tr>")
    return "\n".join(out) + "</table>"


def flip_table(summary: Sequence[dict[str, Any]]) -> str:
    cells = [c for c in _overall(summary) if c["scorer"] != BASELINE]
    out = ["<table><tr><th class=l>setting</th><th>baseline right -> pruned wrong</th>"
           "<th>baseline wrong -> pruned right</th><th>disagree with baseline</th><th>n</th></tr>"]
    for c in cells:
        disagree = None if c["agree"] is None else c["n"] - c["agree"]
        out.append(f"<tr><td class=l>{html.escape(c['setting'])}</td><td>{_fmt(c['right_to_wrong'])}</td>"
                   f"<td>{_fmt(c['wrong_to_right'])}</td><td>{_fmt(disagree)}</td><td>{c['n']}</td></tr>")
    return "\n".join(out) + "</table>"


def failures_table(rows: Sequence[dict[str, Any]]) -> str:
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("error") and r["id"] not in seen:
            seen[r["id"]] = r
    if not seen:
        return "<p class=note>Every row ran.</p>"
    out = ["<table><tr><th class=l>example</th><th class=l>video</th><th class=l>question</th>"
           "<th class=l>error</th></tr>"]
    for r in seen.values():
        out.append("<tr>" + "".join(f"<td class=l>{html.escape(str(r.get(k) or ''))}</td>"
                                    for k in ("id", "video", "question", "error")) + "</tr>")
    return "\n".join(out) + "</table>"


# ------------------------------------------------------------------------------------------- gallery


def _card(flip: dict[str, Any], thumb: Thumb | None) -> str:
    row, base = flip["row"], flip["baseline"]
    keep = decode_mask(row["keep_mask"])
    image = ""
    if thumb is not None and thumb.frames.shape[0] == keep.shape[0]:
        image = f"<img alt='kept groups' src='{png_data_uri(mask_tiles(thumb, keep))}'>"
    stats = row.get("scores")
    spread = ""
    if stats:
        spread = (f"<br>scores min {stats['min']:.3g} / median {stats['median']:.3g} / max {stats['max']:.3g}, "
                  f"std {stats['std']:.3g}" + (" <b>(no spread: selection decided by tie order)</b>"
                                               if stats["no_spread"] else ""))
    cls = "bad" if flip["kind"] == "right_to_wrong" else "good" if flip["kind"] == "wrong_to_right" else ""
    e = html.escape
    return (f"<div class=card><b class={cls}>{e(KIND_TEXT[flip['kind']])}</b> at <b>{e(row['setting'])}</b> "
            f"({row['kept_groups']}/{row['total_groups']} groups, {row['num_frames']} frames)<br>"
            f"<span class=note>{e(str(row['id']))} &middot; {e(str(row['video']))}</span><br>"
            f"Q: {e(row['question'])}<br>gold: <b>{e(str(row.get('gold') or '-'))}</b> &middot; "
            f"baseline: <b>{e(base['answer'] or '(no answer)')}</b> &middot; "
            f"pruned: <b>{e(row['answer'] or '(no answer)')}</b>{spread}<br>{image}</div>")


def gallery(items: Sequence[dict[str, Any]], thumb_of: Callable[[str], Thumb | None]) -> str:
    order = {"right_to_wrong": 0, "wrong_to_right": 1, "changed": 2}
    items = sorted(items, key=lambda f: (order[f["kind"]], f["row"]["keep"], f["row"]["index"]))
    shown = items[:MAX_GALLERY]
    rest = " (the rest are in results.jsonl)" if len(shown) < len(items) else ""
    note = (f"<p class=note>Showing {len(shown)} of {len(items)} flips{rest}. "
            "Dimmed: pruned token groups (for the frames scorer, frames it did not use).</p>")
    if not items:
        return "<p class=note>No example changed its outcome under pruning.</p>"
    return note + "<div class=gallery>" + "\n".join(_card(f, thumb_of(str(f["row"]["id"]))) for f in shown) + "</div>"


# ------------------------------------------------------------------------------------------- methods


def _stage(name: str) -> str:
    try:
        return get_method(name).stage
    except ValueError:
        return "-"


def _methods_and_keeps(summary: Sequence[dict[str, Any]]) -> tuple[list[str], list[float]]:
    cells = [c for c in _overall(summary) if c["scorer"] != BASELINE]
    return (list(dict.fromkeys(c["scorer"] for c in cells)),
            sorted({float(c["keep"]) for c in cells}, reverse=True))


def method_accuracy_table(summary: Sequence[dict[str, Any]]) -> str:
    """Methods (rows) x keep ratios (columns): accuracy, and agreement with the baseline in brackets."""
    methods, keeps = _methods_and_keeps(summary)
    cells = {(c["scorer"], float(c["keep"])): c for c in _overall(summary)}
    out = ["<table><tr><th class=l>method</th><th class=l>stage</th>"
           + "".join(f"<th>keep {k:g}</th>" for k in keeps) + "</tr>"]
    for m in methods:
        row = [cells.get((m, k)) for k in keeps]
        out.append(f"<tr><td class=l>{html.escape(m)}</td><td class=l>{_stage(m)}</td>" + "".join(
            "<td>-</td>" if c is None else f"<td>{_fmt(c['accuracy'], True)} ({_fmt(c['agreement'], True)})</td>"
            for c in row) + "</tr>")
    return "\n".join(out) + "</table>"


def method_cost_table(rows: Sequence[dict[str, Any]]) -> str:
    """Per setting: tokens through the ViT and into the LLM, mean TTFT and its two sides, against the baseline."""
    costs = method_costs(rows)
    base = next((c for c in costs if c["scorer"] == BASELINE), None)
    head = ("setting", "stage", "ViT tokens (block 0 / after pruning)", "LLM visual tokens", "TTFT ms",
            "vision side ms", "LLM prefill ms", "TTFT vs baseline")
    out = ["<table><tr>" + "".join(f"<th class=l>{h}</th>" if i < 2 else f"<th>{h}</th>" for i, h in enumerate(head))
           + "</tr>"]
    for c in sorted(costs, key=lambda c: (c["scorer"] != BASELINE, -float(c["keep"]))):
        speed = "-" if base is None or not c["ttft_s"] else f"{base['ttft_s'] / c['ttft_s']:.2f}x"
        vals = (f"{c['vit_tokens']:.0f} / {c['vit_suffix_tokens']:.0f}", f"{c['visual_tokens']:.0f}",
                f"{1e3 * c['ttft_s']:.1f}", f"{1e3 * c['vit_s']:.1f}", f"{1e3 * c['prefill_s']:.1f}", speed)
        stage = "-" if c["scorer"] == BASELINE else _stage(c["scorer"])
        out.append(f"<tr><td class=l>{html.escape(c['setting'])}</td><td class=l>{stage}</td>"
                   + "".join(f"<td>{v}</td>" for v in vals) + "</tr>")
    return "\n".join(out) + "</table>"


def agreement_figure(rows: Sequence[dict[str, Any]], keep: float) -> go.Figure | None:
    """Share of examples on which two methods give the same answer, at one keep ratio."""
    names, matrix = pairwise_agreement(rows, keep)
    if len(names) < 2:
        return None
    z = [[None if v is None else 100 * v for v in line] for line in matrix]
    text = [["" if v is None else f"{v:.0f}" for v in line] for line in z]
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, text=text, texttemplate="%{text}", colorscale="Viridis",
                               zmin=min(50, min((v for line in z for v in line if v is not None), default=50)),
                               zmax=100, colorbar={"title": "%"}))
    fig.update_layout(title=f"Same answer as each other, keep {keep:g}", width=460, height=420,
                      margin={"l": 80, "r": 20, "t": 50, "b": 80}, template="plotly_white",
                      yaxis={"autorange": "reversed"})
    return fig


def disagreement_table(rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> str:
    """Examples where the methods disagree with each other; right answers green, wrong ones red."""
    items = method_disagreements(rows)
    if not items:
        return "<p class=note>Every method gave the same answer on every example at every keep ratio.</p>"
    shown = items[:MAX_DISAGREEMENTS]
    e = html.escape
    out = [f"<p class=note>{len(items)} example x keep ratio cells where the methods disagree "
           f"({sum(i['split'] for i in items)} where some are right and others wrong); showing {len(shown)}, "
           "splits first, smallest keep ratio first.</p><table><tr><th class=l>example</th><th>keep</th><th class=l>question</th>"
           "<th class=l>gold</th><th class=l>baseline</th>" + "".join(f"<th class=l>{e(m)}</th>" for m in methods)
           + "</tr>"]
    for item in shown:
        cells = []
        for m in methods:
            ok = item["correct"].get(m)
            cls = " good" if ok else " bad" if ok is False else ""
            cells.append(f"<td class='l{cls}'>{e(item['answers'].get(m) or '-')}</td>")
        out.append(f"<tr><td class=l>{e(str(item['id']))}</td><td>{item['keep']:g}</td><td class=l>"
                   f"{e(item['question'])}</td><td class=l>{e(str(item.get('gold') or '-'))}</td>"
                   f"<td class=l>{e(item.get('baseline') or '-')}</td>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


def methods_section(analysis: Analysis) -> str:
    """The method-vs-method view: accuracy and agreement, cost, agreement between methods, disagreements."""
    methods, keeps = _methods_and_keeps(analysis.summary)
    if len(methods) < 2:
        return "<p class=note>One method only: nothing to compare side by side.</p>"
    figures = "".join(_figure_html(agreement_figure(analysis.rows, k)) for k in keeps)
    return ("<p class=note>Every method at the same number of visual tokens reaching the LLM (FastV: after its "
            "pruning layer). Cells: accuracy (agreement with the unpruned answer).</p>"
            + method_accuracy_table(analysis.summary)
            + "<h3>Tokens and time to first token</h3><p class=note>Only a vit-stage method (learned, heuristic, "
            "random) runs fewer tokens through the ViT blocks after its pruning point; the others run the full "
            "ViT and save in the LLM only. Means per row; shared stages are counted in each row.</p>"
            + method_cost_table(analysis.rows)
            + "<h3>How often two methods give the same answer</h3><div class=charts>" + figures + "</div>"
            + "<h3>Where the methods disagree with each other</h3>" + disagreement_table(analysis.rows, methods))


# ------------------------------------------------------------------------------------------- page


def _header(analysis: Analysis, model: str) -> str:
    cfg = analysis.settings
    used = {r["scorer"]: r.get("scorer_used") for r in analysis.rows if r.get("scorer_used")}
    fallback = [f"{s} ran as {u}" for s, u in used.items() if u not in (s, BASELINE)]
    spread = sum(c["no_spread"] or 0 for c in _overall(analysis.summary))
    notes = []
    if fallback:
        notes.append("Scorer fallback: " + ", ".join(fallback) + " (the model has no trained scorer weights).")
    if spread:
        notes.append(f"{spread} pruned rows had scores without spread (std < 0.001): their selection is "
                     "decided by tie order, not by the scorer.")
    return (f"<h1>STTS error analysis</h1><p>Model <b>{html.escape(model)}</b> &middot; {analysis.examples} examples "
            f"&middot; {cfg.num_frames} frames &middot; keep {', '.join(f'{k:g}' for k in cfg.keeps)} &middot; "
            f"scorers {', '.join(cfg.scorers)} &middot; {len(analysis.failed)} failed rows</p>"
            "<p class=note>Correct = the answer equals the gold answer after lower-casing and removing periods; "
            "agreement = the same answer as the unpruned baseline (an empty answer never agrees). Times are "
            "means per row measured on this machine; stages shared between settings are counted in each.</p>"
            + "".join(f"<p class=note>{html.escape(n)}</p>" for n in notes))


def build_report(analysis: Analysis, model: str, thumb_of: Callable[[str], Thumb | None] | None = None) -> str:
    """The whole page as one string."""
    if thumb_of is None:
        def thumb_of(example_id: str) -> Thumb | None:
            if example_id in analysis.thumbs:
                return analysis.thumbs[example_id]
            return load_thumb(analysis.out_dir, example_id) if analysis.out_dir is not None else None

    charts = [curve_figure(analysis.summary, "accuracy", "Accuracy vs keep ratio"),
              curve_figure(analysis.summary, "agreement", "Agreement with the unpruned answer")]
    body = [
        _header(analysis, model),
        "<h2>Accuracy and agreement</h2><div class=charts>" + "".join(_figure_html(f) for f in charts) + "</div>",
        summary_table(analysis.summary),
        html_tables(analysis.benchmarks),
        "<h2>By question type</h2>" + (_figure_html(type_figure(analysis.summary))
                                       or "<p class=note>No question types or gold answers in this dataset.</p>"),
        "<h2>Methods side by side</h2>" + methods_section(analysis),
        "<h2>Flips</h2>" + flip_table(analysis.summary),
        "<h2>Gallery of flips</h2>" + gallery(flips(analysis.rows), thumb_of),
        "<h2>Failed rows</h2>" + failures_table(analysis.rows),
    ]
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>STTS error analysis</title>"
            f"<style>{_CSS}</style><script>{get_plotlyjs()}</script></head><body>"
            + "\n".join(body) + "</body></html>")


def write_report(path: str | Path, analysis: Analysis, model: str) -> Path:
    out = Path(path)
    out.write_text(build_report(analysis, model), encoding="utf-8")
    return out
