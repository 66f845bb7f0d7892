"""Speed at scale, beside what this server measured: the recorded GPU medians for the model family's real
architecture (`docs/bench/*.json`, written by `stts bench`) at the cell nearest to a run's frames and keep.

These are other measurements, on other hardware, kept apart from the run's own figures: the Speed tab
shows them under their own heading with the device, date and command that produced them, and never
mixes them into this server's numbers.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parents[1] / "docs" / "bench"
# A recorded report stands for a family's real architecture when its preset is one of these.
REAL_ARCHITECTURES: dict[str, tuple[str, ...]] = {"molmo2": ("molmo2-4b",),
                                                  "qwen3_vl": ("qwen3-vl-2b", "qwen3-vl-4b", "qwen3-vl-8b"),
                                                  "qwen2_5_vl": ("qwen2.5-vl-3b", "qwen2.5-vl-7b")}


@dataclass(frozen=True)
class Reference:
    """One recorded cell and where it comes from."""

    path: Path
    report: dict[str, Any]
    cell: dict[str, Any]


@functools.lru_cache(maxsize=4)
def recorded(bench_dir: Path = BENCH_DIR) -> tuple[tuple[Path, dict[str, Any]], ...]:
    """Inference reports measured on an accelerator (not a CPU), with at least one cell that ran."""
    out = []
    for path in sorted(bench_dir.glob("*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict) or report.get("mode") != "inference":
            continue
        if str(report.get("device", "CPU")).startswith("CPU"):
            continue
        if any(not c.get("error") and c.get("ttft_speedup") for c in report.get("cells", [])):
            out.append((path, report))
    return tuple(out)


def nearest(frames: int, keep: float, family: str | None, bench_dir: Path = BENCH_DIR) -> Reference | None:
    """The recorded cell of the family's real architecture nearest to (frames, keep): nearest frame count
    on a log scale first, then nearest keep ratio. None when nothing was recorded for the family."""
    presets = REAL_ARCHITECTURES.get(family or "", ())
    best: tuple[tuple[float, float], Reference] | None = None
    for path, report in recorded(bench_dir):
        if report.get("preset") not in presets:
            continue
        for cell in report["cells"]:
            if cell.get("error") or not cell.get("ttft_speedup"):
                continue
            distance = (abs(math.log2(cell["frames"] / max(1, frames))), abs(cell["keep"] - keep))
            if best is None or distance < best[0]:
                best = (distance, Reference(path, report, cell))
    return None if best is None else best[1]


def _stage_ratio(cell: dict[str, Any], stage: str) -> str:
    stages = cell.get("stages_s") or {}
    base, stts = (stages.get(run, {}).get(stage) for run in ("baseline", "stts"))
    return f"{base / stts:.2f}x" if base and stts else "-"


def at_scale_markdown(frames: int, keep: float, family: str | None, bench_dir: Path = BENCH_DIR) -> str:
    """The Speed tab's "at scale" section for a run of `frames` frames at `keep`: the recorded cell,
    labelled as recorded elsewhere, with its source. Empty when nothing was recorded for the family."""
    ref = nearest(frames, keep, family, bench_dir)
    if ref is None:
        return ""
    c, r = ref.cell, ref.report
    settings = r.get("settings", {})
    where = f"`{ref.path.relative_to(bench_dir.parents[1])}`" if bench_dir.parents[1] in ref.path.parents \
        else f"`{ref.path.name}`"
    return (
        "---\n\n#### At scale: recorded on a GPU, not measured on this server\n\n"
        f"The same STTS code on the real architecture (preset `{r['preset']}`, random weights: timing does not "
        f"depend on them), {r['device']}, {settings.get('dtype', '?')}; the recorded cell nearest to this run "
        f"({frames} frames, keep {keep:.2f}) is **{c['frames']} frames at keep {c['keep']:g}**: "
        f"**time to first token {c['ttft_speedup']:.2f}x** ({c['baseline_ttft_s'] * 1e3:.0f} ms -> "
        f"{c['stts_ttft_s'] * 1e3:.0f} ms), ViT after the pruning point {_stage_ratio(c, 'vit_suffix')}, "
        f"LLM prefill {_stage_ratio(c, 'llm_prefill')}; visual tokens {c['visual_tokens'][0]} -> "
        f"{c['visual_tokens'][1]}; medians of {c['repeats']} alternating pairs.\n\n"
        f"Recorded {str(r.get('date', '?'))[:10]} with `{r.get('command', '?')}` ({where}). These figures come "
        "from that run only; the ones above are this server's, for this run."
    )
