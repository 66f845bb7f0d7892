"""The page's text: what each run, selection, answer and speed figure says, in words a visitor reads."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from app.forms import FRAMES_RANGE, limits_text, whole_number
from app.models import BUILTIN_LABEL
from stts_core.analysis.metrics import no_spread
from stts_core.data.video import VideoLimits
from stts_core.methods.registry import get_method, method_names
from stts_core.pipeline import STAGES, TTFT_STAGES, RunResult

# The single-video view offers the methods that score at ViT block k: the keep slider redraws their masks
# from cached scores at once (the Compare view runs every method side by side).
SCORERS = method_names("vit")
SCORER_INFO = "; ".join(f"{m}: {get_method(m).summary}" for m in SCORERS) + "."
NO_SCORER_INFO = ("This model has no trained STTS scorer weights, so 'learned' is not offered; "
                  "heuristic is the training-free scorer (1 - cosine similarity to the previous frame).")
STALE = ("The video, model, frame count or scorer changed since the last run, so the cached scores no longer "
         "apply: press **Run** to score again.")
BUILTIN_NOTE = ("The built-in model only knows its synthetic world (coloured shapes over textures and photographs): "
                "on real footage it shows the pipeline, masks and timings, not meaningful answers; real videos "
                "want Molmo2-4B.")
STAGE_NAMES = {
    "decode_video": "decode video", "preprocess": "preprocess", "vit_prefix": "ViT blocks 0..k",
    "scoring": "scoring + selection", "vit_suffix": "ViT blocks k+1.. (packed)", "connector": "connector",
    "llm_prefill": "LLM prefill", "decoding": "decoding",
}


@dataclass
class Measured:
    """Medians and spread of repeated baseline/STTS pairs ("measure precisely"), in milliseconds."""

    pairs: int
    ttft_ms: dict[str, tuple[float, float, float]]  # run -> (median, min, max)
    model_ms: dict[str, tuple[float, float, float]]
    ttft_speedups: list[float]
    model_speedups: list[float]
    disturbed: int = 0  # measured pairs in which a run got less than CONTENDED_SHARE of its CPU threads' time
    lowest_share: float | None = None  # the lowest CPU share of any measured run (None off the CPU)


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 1)


def _speedup(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.2f}x" + (" (slower)" if x < 1 else "")


def stage_table(result: RunResult) -> pd.DataFrame:
    """Measured milliseconds per stage for both runs, then model-side TTFT, model total and end to end."""
    base = result.baseline
    rows = [[STAGE_NAMES.get(s, s), ms(base.timings[s]) if base else None, ms(result.stts.timings[s])]
            for s in STAGES]
    for name, attr in (("time to first token (model)", "ttft_s"), ("model total", "model_s"),
                       ("end to end", "e2e_s")):
        rows.append([name, ms(getattr(base, attr)) if base else None, ms(getattr(result.stts, attr))])
    return pd.DataFrame(rows, columns=["stage", "baseline (ms)", "STTS (ms)"])


def _memory(gb: float | None) -> str:
    return "not tracked on CPU" if gb is None else f"{gb:.2f} GB"


def _spread(stats: tuple[float, float, float]) -> str:
    med, lo, hi = stats
    return f"{med:.0f} ms (range {lo:.0f}-{hi:.0f})"


def measured_markdown(m: Measured) -> str:
    ttft = float(np.median(m.ttft_speedups))
    model = float(np.median(m.model_speedups))
    return (f"**Measured precisely over {m.pairs} baseline/STTS pairs after one warm-up pair (medians, "
            "range = min-max):** "
            f"time to first token {_speedup(ttft)} ({_spread(m.ttft_ms['baseline'])} -> "
            f"{_spread(m.ttft_ms['stts'])}); model total {_speedup(model)} ({_spread(m.model_ms['baseline'])} -> "
            f"{_spread(m.model_ms['stts'])}); per-pair TTFT speedups {min(m.ttft_speedups):.2f}x-"
            f"{max(m.ttft_speedups):.2f}x." + _disturbed_pairs(m))


def _disturbed_pairs(m: Measured) -> str:
    """How many measured pairs ran starved of CPU time: the medians resist a few, not most."""
    if not m.disturbed or m.lowest_share is None:
        return ""
    return (f" **{m.disturbed} of {m.pairs} pairs disturbed** (a run got as little as {100 * m.lowest_share:.0f}% of "
            "its CPU threads' time; other work competed for the cores)"
            + (": the medians are not the model's either." if 2 * m.disturbed >= m.pairs else "."))


def speed_markdown(result: RunResult, measured: Measured | None = None) -> str:
    base, stts = result.baseline, result.stts
    lines = []
    if measured is not None:
        lines.append(measured_markdown(measured))
    if base is not None:
        lines.append(f"**Time to first token (model): {_speedup(result.ttft_speedup)}** ({ms(base.ttft_s):.0f} ms "
                     f"-> {ms(stts.ttft_s):.0f} ms) &nbsp;|&nbsp; **model total: {_speedup(result.model_speedup)}** "
                     f"({ms(base.model_s):.0f} ms -> {ms(stts.model_s):.0f} ms)"
                     + ("" if measured is None else " (the run shown)"))
        lines.append(f"Model side = {' + '.join(STAGE_NAMES[s] for s in TTFT_STAGES)} (+ answer decoding for the "
                     "total). Decoding the video and preprocessing are the same work for both and shown apart: video "
                     f"decoded once for both runs in {ms(result.decode_s):.0f} ms; end to end "
                     f"{ms(base.e2e_s):.0f} ms -> {ms(stts.e2e_s):.0f} ms ({_speedup(result.e2e_speedup)}).")
        if base.peak_mem_gb is None and stts.peak_mem_gb is None:
            lines.append("Peak memory: not tracked on CPU")
        else:
            lines.append(f"Peak GPU memory: {_memory(base.peak_mem_gb)} -> {_memory(stts.peak_mem_gb)}")
    else:
        lines.append(f"STTS: {ms(stts.model_s):.0f} ms model time (no baseline run)")
    lines.append(f"Device: {result.device} &nbsp;|&nbsp; ViT tokens after pruning per block: "
                 f"{base.vit_suffix_tokens if base else '-'} -> {stts.vit_suffix_tokens}")
    if result.warmup:
        lines.append("**Warm-up run**: the first run after a model loads pays one-off costs; "
                     "run again for steady-state timings.")
    low = result.contended_share
    if low is not None:
        lines.append(f"**Timings disturbed**: a run got only {100 * low:.0f}% of its CPU threads' time (other work "
                     "on this machine competed for the cores), so these times and speedups are not the model's; "
                     "run again when the server is less busy, or tick **measure precisely**.")
    if measured is None:
        lines.append("Times are measured stage by stage during this one run (not estimated); one run varies, tick "
                     "**measure precisely** for medians over repeated pairs.")
    return "\n\n".join(lines)


def flat_scores(scores: np.ndarray | None) -> bool:
    """True when the scorer barely told groups apart (`analysis.metrics.no_spread`, the one rule)."""
    return scores is not None and no_spread(scores)


def scorer_update(has_learned: bool, value: str | None) -> dict[str, Any]:
    """Radio update: a method that needs trained weights is only offered by models that have them."""
    offered = [s for s in SCORERS if has_learned or not get_method(s).needs_weights]
    info = SCORER_INFO if has_learned else NO_SCORER_INFO
    return gr.update(choices=offered, value=value if value in offered else offered[0], info=info)


def unit_words(result: RunResult) -> tuple[str, str]:
    """(plural, singular) of what one mask row is: frames, or temporal patches (two frames each, Qwen-VL)."""
    unit = getattr(result, "frame_unit", "frame") or "frame"
    return unit + ("es" if unit.endswith("ch") else "s"), unit


def selection_markdown(result: RunResult, keep: np.ndarray, keep_ratio: float, preview: bool) -> str:
    t, g = keep.shape
    kept = int(keep.sum())
    base_tokens = result.baseline.visual_tokens if result.baseline is not None else t * g
    plural, singular = unit_words(result)
    text = (f"**Keep {keep_ratio:.2f}**: {kept} of {t * g} groups kept over {t} {plural} "
            f"(visual tokens {base_tokens} -> {kept}); {singular} 0 is always kept whole. Pruned groups are dimmed, "
            "kept groups outlined.")
    if result.row_times is not None:
        text += f" Each row is a {singular} of {result.row_times.shape[1]} frames, labelled with both frame times."
    if flat_scores(result.scores):
        spread = float(np.std(result.scores))
        text += (f"\n\n**⚠️ The {result.scorer_used} scorer gave (almost) the same score to every group (standard "
                 f"deviation {spread:.2g})**, so which groups are kept here says little about the video: ties are "
                 "broken by position.")
    if preview:
        text += " *Preview from the cached scores: the models rerun when the value rests.*"
        if result.settings.match_budget:
            text += " *With the same-budget switch on, the rerun samples round(frames / keep) frames.*"
    return text


def answer_markdown(result: RunResult, model_label: str) -> str:
    base, stts = result.baseline, result.stts
    empty = [name for name, r in (("baseline", base), ("STTS", stts)) if r is not None and not r.answer.strip()]
    if base is None:
        head = "### STTS answer only (no baseline run)"
    elif empty:
        head = f"### ❔ No answer from {' and '.join(empty)}, so agreement cannot be judged"
    else:
        head = "### ✅ Same answer" if result.agree else "### ⚠️ Answers differ"
    base_tokens = base.visual_tokens if base is not None else "-"
    text = (f"{head}\n\nVisual tokens: **{base_tokens} -> {stts.visual_tokens}** &nbsp;|&nbsp; "
            f"STTS {unit_words(result)[0]}: {stts.num_frames} &nbsp;|&nbsp; scorer used: **{result.scorer_used}** "
            f"&nbsp;|&nbsp; keep {result.settings.keep_ratio:.2f} &nbsp;|&nbsp; model: {model_label}")
    notes = list(result.notes) + ([BUILTIN_NOTE] if model_label == BUILTIN_LABEL else [])
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return text


def answer_text(text: str) -> str:
    return text if text.strip() else "(no answer: the model produced no text)"


def video_markdown(info: dict[str, Any], frames: Any, limits: VideoLimits, converted: bool = False) -> str:
    total = int(info.get("total_frames") or 0)
    text = (f"{info['duration']:.1f} s, {info['fps']:.3g} fps, {total} frames, {info['width']}x{info['height']}, "
            f"{info['codec']}." + (" Converted to H.264 MP4 for the player." if converted else ""))
    try:
        asked = whole_number(frames, "Frames", *FRAMES_RANGE)
    except ValueError:
        asked = None
    if asked is not None and 0 < total < asked:
        text += f" **The clip has only {total} frames, so a run uses all {total} (not {asked}).**"
    return f"{text} {limits_text(limits)}"


