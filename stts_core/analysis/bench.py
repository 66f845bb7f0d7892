"""`python -m stts_core.bench`: how much faster STTS makes a video VLM, stage by stage.

For every (frames, keep) cell the unmodified model (baseline) and the STTS path run on the same
synthetic clip, alternating in one process after warm-up (B S, then S B: the order flips every round so
neither run always goes first), with CUDA-synchronised stage timers and the same fixed number of
generated tokens; the report holds medians, and beside them the per-round paired TTFT ratios (median
and interquartile range), which a slow drift of the machine moves less. `--train` times
one forward + backward step (task + auxiliary loss) instead of generation.

Presets build the architecture with random weights: timing does not depend on weight values.
What is measured, and what "overhead" includes, is written down in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import platform
import shlex
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stts_core.analysis import roofline
from stts_core.data.video import SampledVideo, frames_from_array
from stts_core.host_memory import host_allocator
from stts_core.methods.budget import groups_to_patch_mask, kept_group_count
from stts_core.methods.packing import PackedLayout, frame_block_mask, pack, resolve_backend, unpack
from stts_core.methods.registry import get_method
from stts_core.models.base import PreparedInputs, VideoBackend
from stts_core.pipeline import TTFT_STAGES, ModelRun, RunSettings, VisualPass, resolve_scorer, run_model
from stts_core.timing import device_name, peak_memory_gb, reset_peak_memory, synchronize

# TTFT_STAGES (pipeline) are the model side up to the first token; the CPU preprocessing (identical
# work in both runs, done by data loaders in practice) is reported on its own and counted in end to end.
INFERENCE_STAGES = ("preprocess", *TTFT_STAGES, "decoding", "decode_per_token", "packing", "ttft", "e2e")
TRAIN_STAGES = ("forward", "backward", "step")
INFERENCE_CELL_KEYS = ("frames", "keep", "ttft_speedup", "e2e_speedup", "overhead_pct", "ttft_delta_pct",
                       "ttft_paired", "baseline_ttft_s", "stts_ttft_s", "baseline_e2e_s", "stts_e2e_s", "visual_tokens",
                       "vit_suffix_tokens", "peak_mem_gb", "stages_s", "methods", "repeats", "error")
TRAIN_CELL_KEYS = ("frames", "keep", "step_speedup", "baseline_step_s", "stts_step_s", "visual_tokens",
                   "peak_mem_gb", "stages_s", "repeats", "error")
STAGE_LABELS = {"preprocess": "preproc", "vit_prefix": "vit_pre", "vit_suffix": "vit_suf", "connector": "connect",
                "llm_prefill": "prefill", "decoding": "decode", "decode_per_token": "dec/tok"}
CLIP_SIZE = 252  # make_clip's native size; the processor resizes to the model's input size


@dataclass
class BenchConfig:
    """Everything a benchmark run depends on (also written to the JSON as `settings`)."""

    frames: list[int]
    keeps: list[float]
    repeats: int = 5
    warmup: int = 1
    train: bool = False
    scorer: str = "learned"
    new_tokens: int = 8
    seed: int = 0
    grad_checkpoint: bool = False
    scorers: tuple[str, ...] = ()  # every method to compare with the baseline (inference); empty: just `scorer`

    def methods(self) -> list[str]:
        return list(dict.fromkeys(self.scorers or (self.scorer,)))


def _log(line: str) -> None:
    """Progress goes to stderr so stdout holds only the table."""
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- set-up
def synthetic_clip(num_frames: int, seed: int) -> tuple[Any, str, str]:
    """A synthetic clip's frames (a static background that later frames repeat, moving shapes), one
    question and its answer: redundancy like real video's, which a pure-noise clip would not have."""
    from stts_core.data.synthetic import make_clip

    clip = make_clip(seed, num_frames=num_frames, size=CLIP_SIZE)
    qa = clip.qas[0]
    return clip.frames, qa.question, qa.answer


def versions() -> dict[str, str | None]:
    """Library versions that change timings."""
    import numpy
    import transformers

    out: dict[str, str | None] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
    }
    for name in ("plotly", "flash-attn", "stts-studio"):
        try:
            out[name.replace("-", "_")] = version(name)
        except PackageNotFoundError:
            out[name.replace("-", "_")] = None
    return out


# ------------------------------------------------------------------------------------ measuring
def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _medians(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: _median([r[k] for r in runs]) for k in runs[0]}


def paired_speedup(base: Sequence[dict[str, float]], other: Sequence[dict[str, float]], key: str = "ttft"
                   ) -> dict[str, float | int]:
    """Per-round ratios base/other of `key` (the two runs of a round ran next to each other): their
    median and interquartile range. A machine that drifts between rounds moves both runs of a round
    alike, so these ratios scatter less than the medians of each side taken apart."""
    ratios = [b[key] / max(o[key], 1e-12) for b, o in zip(base, other, strict=True)]
    if len(ratios) < 2:
        return {"median": ratios[0], "low": ratios[0], "high": ratios[0], "rounds": len(ratios)}
    low, _, high = statistics.quantiles(ratios, n=4, method="inclusive")
    return {"median": _median(ratios), "low": low, "high": high, "rounds": len(ratios)}


def _peak(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _attention_layout(layout: PackedLayout, impl: str, tokens: torch.Tensor, heads: int, head_dim: int,
                      blocks: int) -> None:
    """The per-back-end state the packed blocks build on top of the layout, and for the row layout
    the per-block scatter into rows and gather back (q, k, v in, one output out)."""
    if impl == "flex":
        frame_block_mask(layout, tokens.device)
    elif impl == "rows":
        slot, mask = layout.row_slots()
        rows, cap = mask.shape[0], layout.capacity
        x = tokens.new_empty(tokens.shape[0], heads, head_dim)
        for _ in range(blocks):
            for _ in range(3):
                x.new_zeros(rows * cap, *x.shape[1:]).index_copy(0, slot, x)
            x.new_zeros(rows * cap, *x.shape[1:]).index_select(0, slot)


def packing_cost(backend: VideoBackend, vp: VisualPass, inputs: PreparedInputs) -> float:
    """Seconds to lay out, pack and unpack the kept tokens on this run's real shapes.

    This work happens inside the ViT-suffix stage of the STTS run; timing it alone lets the
    overhead figure count it beside scoring and selection. Zero when nothing was pruned.
    """
    if vp.prune is None:
        return 0.0
    hidden = vp.prefix.hidden
    device = hidden.device
    shape = backend.suffix_geometry
    impl = resolve_backend(backend.attention_impl, device)
    blocks, unpacks, heads, head_dim = shape.packed_blocks, shape.unpacked_reads, shape.heads, shape.head_dim
    with torch.inference_mode():
        synchronize(device)
        start = time.perf_counter()
        layout = PackedLayout.from_mask(groups_to_patch_mask(vp.prune, inputs.groups, inputs.patches_per_frame))
        tokens = pack(hidden, layout)
        _attention_layout(layout, impl, tokens, heads, head_dim, blocks)
        for _ in range(unpacks):
            unpack(tokens, layout)
        synchronize(device)
        return time.perf_counter() - start


def inference_record(backend: VideoBackend, run: ModelRun, packing_s: float) -> dict[str, float]:
    """One run's stage seconds, the pipeline's derived figures (time to first token, end to end), the
    decoding time per token and, on a device with a known peak, prefill MFU and decode bandwidth use
    (stts_core.roofline). The clip comes from memory, so end to end has no video decoding."""
    t = dict(run.timings)
    steps = max(1, len(run.token_ids) - 1)
    return roofline.run_record(backend, run, t["decoding"] / steps) | {
        "preprocess": t["preprocess"],
        **{s: t[s] for s in TTFT_STAGES},
        "decoding": t["decoding"],
        "decode_per_token": t["decoding"] / steps,
        "packing": packing_s,
        "ttft": run.ttft_s,
        "e2e": run.e2e_s,
    }


def _error_cell(frames: int, keep: float, keys: Sequence[str], err: BaseException) -> dict[str, Any]:
    cell: dict[str, Any] = dict.fromkeys(keys)
    cell.update(frames=frames, keep=keep, repeats=0, error=f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}")
    return cell


def _free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _alternating_runs(backend: VideoBackend, video: SampledVideo, question: str, keep: float, cfg: BenchConfig,
                      names: Sequence[str]) -> dict[str, dict[str, list]]:
    """Baseline, then each method (B M1 M2), then the reverse (M2 M1 B), and so on: per run name the timed
    records (index i of every name is round i), peaks and token counts. Flipping the order every round
    keeps a run that always went first (a cold cache, the previous run's freed memory) from biasing one side."""
    settings = RunSettings(keep_ratio=keep, scorer=names[0], num_frames=int(video.frames.shape[0]),
                           max_new_tokens=cfg.new_tokens, seed=cfg.seed, stop_at_eos=False)
    out: dict[str, dict[str, list]] = {n: {"records": [], "peaks": [], "tokens": []} for n in ("baseline", *names)}
    with torch.inference_mode():
        for i in range(cfg.warmup + cfg.repeats):
            measured = [_timed_run(backend, video, question, keep, name, settings)
                        for name in _round_order(names, flip=i % 2 == 1)]
            if len({len(run.token_ids) for _, run, _ in measured}) != 1:
                raise RuntimeError("The runs of one round generated different numbers of tokens.")
            if i < cfg.warmup:
                continue
            for name, run, packing_s in measured:
                out[name]["records"].append(inference_record(backend, run, packing_s))
                out[name]["peaks"].append(run.peak_mem_gb)
                out[name]["tokens"] = [run.vit_tokens, run.vit_suffix_tokens, run.visual_tokens]
    return out


def _round_order(names: Sequence[str], flip: bool) -> list[str]:
    """One round's run order: the baseline then the methods, or all of it reversed."""
    order = ["baseline", *names]
    return order[::-1] if flip else order


def _timed_run(backend: VideoBackend, video: SampledVideo, question: str, keep: float, name: str,
               settings: RunSettings) -> tuple[str, ModelRun, float]:
    """One run of the baseline (keep 1, no method) or a method, with its packing seconds."""
    if name == "baseline":
        run, _, _ = run_model(backend, video, question, 1.0, None, settings)
        return name, run, 0.0
    run, vp, inputs = run_model(backend, video, question, keep, name, settings)
    # Packing happens only where a vit-stage method shortened the ViT's later blocks.
    packing_s = packing_cost(backend, vp, inputs) if get_method(name).stage == "vit" else 0.0
    return name, run, packing_s  # vp and inputs go here, so the next run's peak memory does not include them


VISION_STAGES = ("vit_prefix", "scoring", "vit_suffix", "connector")  # the ViT side of TTFT


def method_entry(name: str, b: dict[str, float], s: dict[str, float], tokens: list[int],
                 peak: float | None, paired: dict[str, float | int] | None = None) -> dict[str, Any]:
    """One method against the baseline in one cell: TTFT, and where it saved (ViT side or LLM prefill)."""
    vision_b, vision_s = sum(b[k] for k in VISION_STAGES), sum(s[k] for k in VISION_STAGES)
    return {"method": name, "stage": get_method(name).stage, "ttft_s": s["ttft"], "e2e_s": s["e2e"],
            "ttft_speedup": b["ttft"] / max(s["ttft"], 1e-12), "e2e_speedup": b["e2e"] / max(s["e2e"], 1e-12),
            "ttft_paired": paired, "vision_s": vision_s, "vision_saved_s": vision_b - vision_s, "llm_prefill_s": s["llm_prefill"],
            "llm_prefill_saved_s": b["llm_prefill"] - s["llm_prefill"], "vit_tokens": tokens[0],
            "vit_suffix_tokens": tokens[1], "visual_tokens": tokens[2], "peak_mem_gb": peak, "stages_s": s}


def inference_cell(backend: VideoBackend, video: SampledVideo, question: str, keep: float, cfg: BenchConfig,
                   scorer: str | Sequence[str]) -> dict[str, Any]:
    """The baseline and each method alternating on one clip (B M1 M2 .. B M1 M2 ..); medians of
    `cfg.repeats` timed rounds. The cell's top-level figures ("stts") are the first method's; `methods`
    holds every method's TTFT against the baseline, its ViT-side and LLM-side savings and its tokens."""
    names = [scorer] if isinstance(scorer, str) else list(scorer)
    runs = _alternating_runs(backend, video, question, keep, cfg, names)
    medians = {n: _medians(r["records"]) for n, r in runs.items()}
    b, s = medians["baseline"], medians[names[0]]
    paired = {n: paired_speedup(runs["baseline"]["records"], runs[n]["records"]) for n in names}
    base_tokens, first_tokens = runs["baseline"]["tokens"], runs[names[0]]["tokens"]
    return {
        "frames": int(video.frames.shape[0]),
        "keep": keep,
        "ttft_speedup": b["ttft"] / max(s["ttft"], 1e-12),
        "e2e_speedup": b["e2e"] / max(s["e2e"], 1e-12),
        "overhead_pct": 100.0 * (s["scoring"] + s["packing"]) / max(b["ttft"], 1e-12),
        "ttft_delta_pct": 100.0 * (s["ttft"] / max(b["ttft"], 1e-12) - 1.0),
        "ttft_paired": paired[names[0]],
        "baseline_ttft_s": b["ttft"],
        "stts_ttft_s": s["ttft"],
        "baseline_e2e_s": b["e2e"],
        "stts_e2e_s": s["e2e"],
        "visual_tokens": [base_tokens[2], first_tokens[2]],
        "vit_suffix_tokens": [base_tokens[1], first_tokens[1]],
        "peak_mem_gb": [_peak(runs["baseline"]["peaks"]), _peak(runs[names[0]]["peaks"])],
        "stages_s": {"baseline": b, "stts": s},
        "methods": [method_entry(n, b, medians[n], runs[n]["tokens"], _peak(runs[n]["peaks"]), paired[n])
                    for n in names],
        "repeats": len(runs["baseline"]["records"]),
        "error": None,
    }


def train_step(backend: VideoBackend, prepared: list[PreparedInputs], answers: list[str], keep: float,
               scorer: str) -> tuple[dict[str, float], float | None, float, int]:
    """One forward + backward of the STTS objective on already prepared inputs (preprocessing is data
    loading, kept off the clock): stage seconds, peak memory, the loss (a NaN check) and the visual
    tokens that reached the LLM."""
    from stts_core.train.objective import stts_loss

    device = backend.device
    backend.model.zero_grad(set_to_none=True)
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    parts = stts_loss(backend, prepared, answers, keep, scorer=scorer)
    synchronize(device)
    middle = time.perf_counter()
    parts["loss"].backward()
    synchronize(device)
    end = time.perf_counter()
    stages = {"forward": middle - start, "backward": end - middle, "step": end - start}
    return stages, peak_memory_gb(device), float(parts["loss"].detach()), int(parts["visual_tokens"])


def _train_pairs(backend: VideoBackend, prepared: list[PreparedInputs], answers: list[str], keep: float,
                 cfg: BenchConfig, scorer: str) -> tuple[list[dict[str, float]], list[dict[str, float]],
                                                        tuple[list[float | None], list[float | None]], list[int]]:
    """Alternating baseline / STTS training steps: the timed runs, their peaks and the token counts."""
    runs: tuple[list[dict[str, float]], list[dict[str, float]]] = ([], [])
    peaks: tuple[list[float | None], list[float | None]] = ([], [])
    tokens = [0, 0]
    for i in range(cfg.warmup + cfg.repeats):
        for side, (ratio, kind) in enumerate(((1.0, None), (keep, scorer))):
            stages, peak, loss, tokens[side] = train_step(backend, prepared, answers, ratio, kind)
            if not math.isfinite(loss):
                raise RuntimeError("A training step produced a non-finite loss.")
            if i >= cfg.warmup:
                runs[side].append(stages)
                peaks[side].append(peak)
    return runs[0], runs[1], peaks, tokens


def train_cell(backend: VideoBackend, frames: np.ndarray, question: str, answer: str, keep: float, cfg: BenchConfig,
               scorer: str) -> dict[str, Any]:
    """Baseline (no scorer, no aux loss) and STTS training steps alternating; medians of the timed pairs."""
    prepared = backend.prepare_questions(frames, [question])
    backend.model.train()
    try:
        base_runs, stts_runs, peaks, tokens = _train_pairs(backend, prepared, [answer], keep, cfg, scorer)
    finally:
        backend.model.zero_grad(set_to_none=True)
        backend.model.eval()
    b, s = _medians(base_runs), _medians(stts_runs)
    inputs = prepared[0]
    expected = kept_group_count(inputs.num_frames, int(inputs.groups.shape[0]), keep)
    if tokens[1] != expected:
        raise RuntimeError(f"STTS kept {tokens[1]} visual tokens, expected {expected}.")
    return {
        "frames": inputs.num_frames,
        "keep": keep,
        "step_speedup": b["step"] / max(s["step"], 1e-12),
        "baseline_step_s": b["step"],
        "stts_step_s": s["step"],
        "visual_tokens": tokens,
        "peak_mem_gb": [_peak(peaks[0]), _peak(peaks[1])],
        "stages_s": {"baseline": b, "stts": s},
        "repeats": len(base_runs),
        "error": None,
    }


def run_bench(backend: VideoBackend, cfg: BenchConfig, log: Callable[[str], None] = _log,
              on_cell: Callable[[list[dict[str, Any]]], None] | None = None) -> tuple[list[dict[str, Any]], str, list[str]]:
    """Every (frames, keep) cell in order; a cell that fails (out of memory, say) is recorded with its error.

    `on_cell` sees the cells so far after each one, so a long run that is stopped keeps what it measured.
    Several methods (`cfg.scorers`, inference only) run in each cell, each after the same baseline."""
    used = [resolve_scorer(backend, name) for name in cfg.methods()]
    names = list(dict.fromkeys(u[0] for u in used))
    notes = list(dict.fromkeys(n for u in used for n in u[1]))
    scorer = names[0]
    if cfg.train and len(names) > 1:
        raise ValueError("A training-step benchmark compares one method with the baseline.")
    device = backend.device
    cells: list[dict[str, Any]] = []
    for frames in cfg.frames:
        clip, question, answer = synthetic_clip(frames, cfg.seed)
        video = frames_from_array(clip)
        for keep in cfg.keeps:
            torch.manual_seed(cfg.seed)
            started = time.perf_counter()
            try:
                if cfg.train:
                    cell = train_cell(backend, clip, question, answer, keep, cfg, scorer)
                else:
                    cell = inference_cell(backend, video, question, keep, cfg, scorer if len(names) == 1 else names)
            except torch.OutOfMemoryError as err:
                cell = _error_cell(frames, keep, TRAIN_CELL_KEYS if cfg.train else INFERENCE_CELL_KEYS, err)
            except Exception as err:  # one broken cell must not lose the others of a long GPU run
                log(traceback.format_exc())
                cell = _error_cell(frames, keep, TRAIN_CELL_KEYS if cfg.train else INFERENCE_CELL_KEYS, err)
            _free_memory(device)
            cells.append(cell)
            log(f"  frames {frames:>4}  keep {keep:<4g} done in {time.perf_counter() - started:.1f} s"
                + (f"  ({cell['error']})" if cell["error"] else ""))
            if on_cell is not None:
                on_cell(cells)
    return cells, scorer, notes


# ------------------------------------------------------------------------------------ reporting
def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.1f}"


def _x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _paired(paired: dict[str, float] | None) -> str:
    if not paired:
        return "-"
    return f"{paired['median']:.2f}x ({paired['low']:.2f}-{paired['high']:.2f})"


def _gb(values: Sequence[float | None]) -> str:
    return "-" if all(v is None for v in values) else "/".join("-" if v is None else f"{v:.1f}" for v in values)


def _source(report: dict[str, Any]) -> str:
    return f"preset {report['preset']}" if report.get("preset") else f"model {report.get('model')}"


def format_table(report: dict[str, Any]) -> str:
    """The summary table, then the per-stage medians of every cell (milliseconds)."""
    cells = report["cells"]
    train = report["mode"] == "train"
    lines = [f"device: {report['device']}   {_source(report)}   mode: {report['mode']}"
             f"   scorer: {', '.join(report['settings'].get('scorers_used') or [report['settings']['scorer_used']])}"]
    if train:
        lines.append(f"{'frames':>6} {'keep':>5} {'tokens base->STTS':>18} {'step base ms':>13} {'step STTS ms':>13}"
                     f" {'speedup':>8} {'peak GB':>10}")
        for c in cells:
            tok = "-" if c["error"] else f"{c['visual_tokens'][0]}->{c['visual_tokens'][1]}"
            lines.append(f"{c['frames']:>6} {c['keep']:>5.2f} {tok:>18} {_ms(c['baseline_step_s']):>13}"
                         f" {_ms(c['stts_step_s']):>13} {_x(c['step_speedup']):>8}"
                         f" {_gb(c['peak_mem_gb'] or []):>10}" + (f"  {c['error']}" if c["error"] else ""))
        stages: tuple[str, ...] = TRAIN_STAGES
    else:
        lines.append(f"{'frames':>6} {'keep':>5} {'tokens base->STTS':>18} {'TTFT base ms':>13} {'TTFT STTS ms':>13}"
                     f" {'TTFT':>7} {'paired (IQR)':>19} {'E2E':>7} {'overhead':>9} {'peak GB':>10}")
        for c in cells:
            tok = "-" if c["error"] else f"{c['visual_tokens'][0]}->{c['visual_tokens'][1]}"
            over = "-" if c["overhead_pct"] is None else f"{c['overhead_pct']:.1f}%"
            lines.append(f"{c['frames']:>6} {c['keep']:>5.2f} {tok:>18} {_ms(c['baseline_ttft_s']):>13}"
                         f" {_ms(c['stts_ttft_s']):>13} {_x(c['ttft_speedup']):>7} {_paired(c.get('ttft_paired')):>19}"
                         f" {_x(c['e2e_speedup']):>7}"
                         f" {over:>9} {_gb(c['peak_mem_gb'] or []):>10}" + (f"  {c['error']}" if c["error"] else ""))
        stages = INFERENCE_STAGES
    lines.append("")
    lines.append(f"{'frames':>6} {'keep':>5} {'run':>9} " + " ".join(f"{STAGE_LABELS.get(s, s):>10}" for s in stages))
    for c in cells:
        if c["error"]:
            continue
        for run, row in _stage_rows(c):
            lines.append(f"{c['frames']:>6} {c['keep']:>5.2f} {run:>9} " + " ".join(f"{_ms(row[s]):>10}" for s in stages))
    lines.append(f"(medians of {report['settings']['repeats']} alternating rounds after "
                 f"{report['settings']['warmup']} warm-up round(s), the run order flipped every round; milliseconds"
                 + ("" if train else "; paired: median and interquartile range of the per-round TTFT ratios") + ")")
    if not train and any(c["keep"] >= 1.0 and not c["error"] for c in cells):
        lines.append("(keep 1 prunes nothing: the STTS path is the unmodified model and its scorer runs after the "
                     "timed stages, for the score maps only; the scorer's cost shows in the pruned cells' scoring)")
    if not train:
        lines += ["", methods_table(cells), "", roofline.roofline_table(report)]
    return "\n".join(lines)


def _stage_rows(cell: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """(run name, stage medians): baseline and stts, or baseline and every method when several ran."""
    methods = cell.get("methods") or []
    if len(methods) > 1:
        return [("baseline", cell["stages_s"]["baseline"]), *((m["method"], m["stages_s"]) for m in methods)]
    return [(run, cell["stages_s"][run]) for run in ("baseline", "stts")]


def methods_table(cells: Sequence[dict[str, Any]]) -> str:
    """TTFT of every method against the baseline, per cell, with where each saved: ViT-side tokens and
    time (only a vit-stage method prunes inside the ViT) and the LLM's visual tokens and prefill time."""
    lines = [f"{'frames':>6} {'keep':>5} {'method':>9} {'stage':>7} {'ViT tok blk0/after':>19} {'LLM tok':>8}"
             f" {'TTFT ms':>9} {'TTFT':>7} {'ViT-side ms':>12} {'saved':>8} {'prefill ms':>11} {'saved':>8}"]
    for c in cells:
        if c["error"] or not c.get("methods"):
            continue
        b = c["stages_s"]["baseline"]
        vision_b = sum(b[k] for k in VISION_STAGES)
        base_tok = f"{c['vit_suffix_tokens'][0]}"
        lines.append(f"{c['frames']:>6} {c['keep']:>5.2f} {'baseline':>9} {'-':>7} {base_tok + '/' + base_tok:>19}"
                     f" {c['visual_tokens'][0]:>8} {_ms(b['ttft']):>9} {'1.00x':>7} {_ms(vision_b):>12} {'-':>8}"
                     f" {_ms(b['llm_prefill']):>11} {'-':>8}")
        for m in c["methods"]:
            tok = f"{m['vit_tokens']}/{m['vit_suffix_tokens']}"
            lines.append(f"{c['frames']:>6} {c['keep']:>5.2f} {m['method']:>9} {m['stage']:>7} {tok:>19}"
                         f" {m['visual_tokens']:>8} {_ms(m['ttft_s']):>9} {_x(m['ttft_speedup']):>7}"
                         f" {_ms(m['vision_s']):>12} {_ms(m['vision_saved_s']):>8} {_ms(m['llm_prefill_s']):>11}"
                         f" {_ms(m['llm_prefill_saved_s']):>8}")
    lines.append("(TTFT per method against the baseline, medians; ViT tokens: patches through ViT block 0 / through "
                 "each block after the pruning point; saved: baseline minus method, milliseconds)")
    return "\n".join(lines)


def write_html(report: dict[str, Any], path: Path) -> None:
    """Speedup against frames, one line per keep ratio; plotly.js is embedded so the file works offline."""
    import plotly.graph_objects as go
    import plotly.io as pio

    train = report["mode"] == "train"
    key = "step_speedup" if train else "ttft_speedup"
    fig = go.Figure()
    for keep in sorted({c["keep"] for c in report["cells"]}, reverse=True):
        cells = sorted((c for c in report["cells"] if c["keep"] == keep and c[key] is not None),
                       key=lambda c: c["frames"])
        fig.add_trace(go.Scatter(x=[c["frames"] for c in cells], y=[c[key] for c in cells],
                                 mode="lines+markers", name=f"keep {keep:g}"))
    fig.add_hline(y=1.0, line_dash="dot", line_color="grey")
    what = "training step" if train else "time to first token"
    fig.update_layout(title=f"STTS speedup ({what}) - {_source(report)} on {report['device']}",
                      xaxis_title="frames", yaxis_title="speedup over the unpruned model (x)",
                      template="plotly_white")
    pio.write_html(fig, str(path), include_plotlyjs=True, full_html=True)


def make_report(args: argparse.Namespace, argv: list[str], backend: VideoBackend, dtype: torch.dtype,
                started: str, cells: list[dict[str, Any]], scorer_used: str, notes: list[str]) -> dict[str, Any]:
    """The JSON report: what ran where, with which settings, and every cell so far."""
    return {
        "device": device_name(backend.device),
        "versions": versions(),
        "preset": args.preset,
        "model": args.model,
        "mode": "train" if args.train else "inference",
        "date": started,
        "command": "stts bench " + shlex.join(argv),
        "settings": {
            "frames": list(args.frames), "keeps": list(args.keep), "repeats": args.repeats, "warmup": args.warmup,
            "scorer": args.scorer, "scorer_used": scorer_used, "new_tokens": args.max_new_tokens,
            "scorers": list(getattr(args, "scorers", [args.scorer])),
            "scorers_used": list(dict.fromkeys(resolve_scorer(backend, n)[0]
                                               for n in getattr(args, "scorers", [args.scorer]))),
            "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads(), "host_allocator": host_allocator(), "seed": args.seed,
            "attention": resolve_backend(args.attention_impl, backend.device), "grad_checkpoint": args.grad_checkpoint,
            "preprocess_on": "cpu" if args.cpu_preprocess or backend.device.type == "cpu" else str(backend.device),
            "scoring_layer": backend.scoring_layer, "serving": args.serving, "prefill": args.prefill,
            "serving_notes": list(backend.serving.notes) if getattr(backend, "serving", None) else [],
        },
        "notes": notes,
        "complete": len(cells) == len(args.frames) * len(args.keep),
        "cells": cells,
    }
