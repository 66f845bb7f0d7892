"""What a batch analysis measures: score statistics with the one no-spread rule, the per-setting
summary (overall and per question type), flips against the baseline, and summary.csv."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stts_core.analysis.records import BASELINE, Setting

NO_SPREAD_STD = 1e-3  # scores whose standard deviation is below this rank groups by noise and tie order


def no_spread(scores: np.ndarray | torch.Tensor) -> bool:
    """The one rule for "this scorer says nothing about this video": the scores' standard deviation is
    below NO_SPREAD_STD, so the selection is decided by ties (the analysis, its report and the app use it)."""
    values = scores.detach().float().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    return bool(values.size == 0 or float(np.std(values.astype(np.float64))) < NO_SPREAD_STD)


def score_stats(scores: torch.Tensor | None) -> dict[str, Any] | None:
    """min / median / max / std of a (T, G) score map, and whether it has (almost) no spread."""
    if scores is None:
        return None
    s = scores.detach().float().cpu().numpy().reshape(-1)
    return {"min": float(s.min()), "median": float(np.median(s)), "max": float(s.max()), "std": float(s.std()),
            "no_spread": no_spread(s)}


def flagged(rows: Iterable[dict[str, Any]]) -> bool:
    """An example worth a thumbnail: some setting disagrees with the baseline or flips correctness."""
    rows = [r for r in rows if not r.get("error")]
    base = next((r for r in rows if r["setting"] == BASELINE), None)
    for r in rows:
        if r["setting"] == BASELINE:
            continue
        if r.get("agrees") is False or (base is not None and r.get("correct") != base.get("correct")):
            return True
    return False


SUMMARY_FIELDS = ("setting", "scorer", "keep", "type", "n", "failed", "with_gold", "correct", "accuracy", "agree",
                  "agreement", "no_answer", "right_to_wrong", "wrong_to_right", "visual_tokens", "kept_fraction",
                  "no_spread", "model_s", "benchmark", "group", "drop")  # the last three: benchmark cells


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _cell(setting: Setting, qtype: str, rows: list[dict[str, Any]], base: dict[str, dict[str, Any]]
          ) -> dict[str, Any]:
    ok = [r for r in rows if not r.get("error")]
    gold = [r for r in ok if r.get("correct") is not None]
    pruned = not setting.is_baseline
    voted = [bool(r["agrees"]) for r in ok if r.get("agrees") is not None]
    pairs = [(bool(base[r["id"]]["correct"]), bool(r["correct"])) for r in gold
             if pruned and r["id"] in base and base[r["id"]].get("correct") is not None]
    scored = [r["scores"] for r in ok if r.get("scores")]
    return {
        "setting": setting.key, "scorer": setting.scorer or BASELINE, "keep": setting.keep, "type": qtype, "n": len(ok),
        "failed": len(rows) - len(ok), "with_gold": len(gold), "correct": sum(bool(r["correct"]) for r in gold),
        "accuracy": _mean([float(r["correct"]) for r in gold]),
        "agree": sum(voted) if pruned else None, "agreement": _mean([float(v) for v in voted]) if pruned else None,
        "no_answer": sum(bool(r["no_answer"]) for r in ok),
        "right_to_wrong": sum(b and not p for b, p in pairs) if pruned else None,
        "wrong_to_right": sum(p and not b for b, p in pairs) if pruned else None,
        "visual_tokens": _mean([r["visual_tokens"] for r in ok]),
        "kept_fraction": _mean([r["kept_groups"] / max(1, r["total_groups"]) for r in ok]),
        "no_spread": sum(bool(s["no_spread"]) for s in scored) if scored else None,
        "model_s": _mean([r["model_s"] for r in ok]),
    }


def summarize(rows: Sequence[dict[str, Any]], plan: Sequence[Setting]) -> list[dict[str, Any]]:
    """One line per setting over all examples ("all"), then one per question type."""
    base = {r["id"]: r for r in rows if r["setting"] == BASELINE and not r.get("error")}
    types = sorted({str(r["type"]) for r in rows if r.get("type")})
    out = []
    for setting in plan:
        mine = [r for r in rows if r["setting"] == setting.key]
        for qtype in ("all", *types):
            sub = mine if qtype == "all" else [r for r in mine if r.get("type") == qtype]
            if sub:
                out.append(_cell(setting, qtype, sub, base))
    return out


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_summary(path: Path, summary: Sequence[dict[str, Any]]) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(SUMMARY_FIELDS)
        writer.writerows([_csv_value(cell.get(k)) for k in SUMMARY_FIELDS] for cell in summary)


def flips(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pruned rows whose outcome differs from the baseline's: "right_to_wrong" / "wrong_to_right" where a
    gold answer is known and correctness changed, else "changed" (a different or no answer, e.g. one wrong
    answer for another). Each comes with its baseline row."""
    base = {r["id"]: r for r in rows if r["setting"] == BASELINE and not r.get("error")}
    out = []
    for r in rows:
        b = base.get(r["id"])
        if r["setting"] == BASELINE or r.get("error") or b is None:
            continue
        if r.get("correct") is not None and b.get("correct") is not None and r["correct"] != b["correct"]:
            kind = "right_to_wrong" if b["correct"] else "wrong_to_right"
        elif r.get("agrees") is False:
            kind = "changed"
        else:
            continue
        out.append({"kind": kind, "row": r, "baseline": b})
    return out




# ------------------------------------------------------------------------------------- methods side by side

VIT_SIDE_STAGES = ("vit_prefix", "scoring", "vit_suffix", "connector")  # the vision side of TTFT


def _ok(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if not r.get("error")]


def method_costs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per setting, in row order: tokens through ViT block 0 and through the blocks after the
    pruning point, tokens into the LLM, and the mean TTFT split into its vision side and LLM prefill.

    Only a vit-stage method lowers the ViT figures; every other method runs the full ViT and saves in
    the LLM only (FastV: the tokens after its pruning layer)."""
    from stts_core.pipeline.stages import TTFT_STAGES, total

    out: dict[str, dict[str, Any]] = {}
    for r in _ok(rows):
        out.setdefault(r["setting"], {"setting": r["setting"], "scorer": r["scorer"], "keep": r["keep"], "rows": []})
        out[r["setting"]]["rows"].append(r)
    lines = []
    for line in out.values():
        mine = line.pop("rows")
        line.update(n=len(mine), vit_tokens=_mean([r.get("vit_tokens") or 0 for r in mine]),
                    vit_suffix_tokens=_mean([r.get("vit_suffix_tokens") or 0 for r in mine]),
                    visual_tokens=_mean([r["visual_tokens"] for r in mine]),
                    ttft_s=_mean([total(r["timings_s"], TTFT_STAGES) for r in mine]),
                    vit_s=_mean([total(r["timings_s"], VIT_SIDE_STAGES) for r in mine]),
                    prefill_s=_mean([float(r["timings_s"].get("llm_prefill", 0.0)) for r in mine]))
        lines.append(line)
    return lines


def _answers_by_method(rows: Sequence[dict[str, Any]], keep: float) -> dict[str, dict[str, str]]:
    """scorer -> example id -> answer, for the pruned rows at one keep ratio."""
    out: dict[str, dict[str, str]] = {}
    for r in _ok(rows):
        if r["setting"] != BASELINE and float(r["keep"]) == float(keep):
            out.setdefault(r["scorer"], {})[r["id"]] = r["answer"]
    return out


def pairwise_agreement(rows: Sequence[dict[str, Any]], keep: float) -> tuple[list[str], list[list[float | None]]]:
    """Methods at one keep ratio and the share of examples on which each pair gives the same answer
    (the agreement rule: equal normalised text, an empty answer never agrees)."""
    from stts_core.pipeline.agreement import answers_agree

    answers = _answers_by_method(rows, keep)
    names = list(answers)
    matrix: list[list[float | None]] = []
    for a in names:
        line: list[float | None] = []
        for b in names:
            shared = sorted(set(answers[a]) & set(answers[b]))
            line.append(_mean([float(answers_agree(answers[a][i], answers[b][i])) for i in shared]))
        matrix.append(line)
    return names, matrix


def method_disagreements(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Examples and keep ratios where the methods do not all give the same answer (whatever the baseline
    said): each with every method's answer and correctness, the baseline's answer, and ``split`` True when
    some method is right and another wrong. Splits first, then the smallest keep ratio first, then by example."""
    from stts_core.pipeline.agreement import normalize_answer

    base = {r["id"]: r for r in _ok(rows) if r["setting"] == BASELINE}
    cells: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in _ok(rows):
        if r["setting"] != BASELINE:
            cells.setdefault((r["id"], float(r["keep"])), []).append(r)
    out = []
    for (example, keep), mine in cells.items():
        if len(mine) < 2 or len({normalize_answer(r["answer"]) for r in mine}) < 2:
            continue
        correct = {r["scorer"]: r.get("correct") for r in mine}
        known = [c for c in correct.values() if c is not None]
        out.append({"id": example, "keep": keep, "index": mine[0].get("index") or 0, "question": mine[0]["question"],
                    "gold": mine[0].get("gold"), "baseline": (base.get(example) or {}).get("answer"),
                    "answers": {r["scorer"]: r["answer"] for r in mine}, "correct": correct,
                    "split": bool(known) and any(known) and not all(known)})
    return sorted(out, key=lambda d: (not d["split"], d["keep"], d["index"], str(d["id"])))
