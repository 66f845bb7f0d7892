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
                  "no_spread", "model_s")


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


