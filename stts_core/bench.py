"""`python -m stts_core.bench`: how much faster STTS makes a video VLM, stage by stage.

For every (frames, keep) cell the unmodified model (baseline) and the STTS path run on the same
synthetic clip, alternating B S B S ... in one process after warm-up, with CUDA-synchronised stage
timers and the same fixed number of generated tokens; the report holds medians. `--train` times
one forward + backward step (task + auxiliary loss) instead of generation.

Presets build the architecture with random weights: timing does not depend on weight values.
What is measured, and what "overhead" includes, is written down in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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

import torch

from stts_core.backends.molmo2 import Molmo2Backend
from stts_core.packing import PackedLayout, frame_block_mask, pack, resolve_backend, unpack
from stts_core.pipeline import ModelRun, RunSettings, VisualPass, resolve_scorer, run_model
from stts_core.scoring import SCORER_KINDS
from stts_core.selection import groups_to_patch_mask, kept_group_count, validate_keep_ratio
from stts_core.timing import device_name, peak_memory_gb, reset_peak_memory, synchronize
from stts_core.video import frames_from_array

# Model-side stages up to the first token. CPU preprocessing (identical work in both runs, done by
# data loaders in practice) is reported on its own and counted in end to end only.
TTFT_STAGES = ("vit_prefix", "scoring", "vit_suffix", "connector", "llm_prefill")
INFERENCE_STAGES = ("preprocess", *TTFT_STAGES, "decoding", "decode_per_token", "packing", "ttft", "e2e")
TRAIN_STAGES = ("forward", "backward", "step")
INFERENCE_CELL_KEYS = ("frames", "keep", "ttft_speedup", "e2e_speedup", "overhead_pct", "ttft_delta_pct",
                       "baseline_ttft_s", "stts_ttft_s", "baseline_e2e_s", "stts_e2e_s", "visual_tokens",
                       "vit_suffix_tokens", "peak_mem_gb", "stages_s", "repeats", "error")
TRAIN_CELL_KEYS = ("frames", "keep", "step_speedup", "baseline_step_s", "stts_step_s", "visual_tokens",
                   "peak_mem_gb", "stages_s", "repeats", "error")
STAGE_LABELS = {"preprocess": "preproc", "vit_prefix": "vit_pre", "vit_suffix": "vit_suf", "connector": "connect",
                "llm_prefill": "prefill", "decoding": "decode", "decode_per_token": "dec/tok"}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
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


def _log(line: str) -> None:
    """Progress goes to stderr so stdout holds only the table."""
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- set-up
def build_backend(preset: str | None, model: str | None, device: torch.device, dtype: torch.dtype,
                  seed: int) -> Molmo2Backend:
    """A preset's architecture with random weights, or a checkpoint loaded the way users load one."""
    if model is not None:
        from stts_core.backends.molmo2 import load_molmo2

        return load_molmo2(model, device=device, dtype=dtype)
    from stts_core.backends.molmo2_build import PRESETS, build_model, build_processor, build_tokenizer
    from stts_core.synthetic import VOCABULARY

    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    tokenizer = build_tokenizer(VOCABULARY)
    net = build_model(preset, tokenizer, seed=seed, dtype=dtype, device=device)
    processor = build_processor(tokenizer, PRESETS[preset]["image_size"])
    return Molmo2Backend(net, processor, source=f"preset:{preset}")


def synthetic_clip(num_frames: int, seed: int) -> tuple[Any, str, str]:
    """A synthetic clip's frames (a static background that later frames repeat, moving shapes), one
    question and its answer: redundancy like real video's, which a pure-noise clip would not have."""
    from stts_core.synthetic import make_clip

    clip = make_clip(seed, num_frames=num_frames, size=CLIP_SIZE)
    qa = clip.qas[0]
    return clip.frames, qa.question, qa.answer


def enable_grad_checkpointing(backend: Molmo2Backend) -> None:
    """Recompute activations in the backward pass for every ViT and LLM block, packed ones included,
    so both runs trade compute for memory the same way (long videos do not fit one GPU otherwise)."""
    from torch.utils.checkpoint import checkpoint

    model = backend.model
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for config in (model.config, getattr(model.config, "text_config", None)):
        if config is not None:
            config.use_cache = False
    plain = backend._packed_block

    def block(index: int, tokens: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
        if backend.model.training and torch.is_grad_enabled():
            return checkpoint(plain, index, tokens, layout, use_reentrant=False)
        return plain(index, tokens, layout)

    backend._packed_block = block  # type: ignore[method-assign]


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


def packing_cost(backend: Molmo2Backend, vp: VisualPass, inputs: Any) -> float:
    """Seconds to lay out, pack and unpack the kept tokens on this run's real shapes.

    This work happens inside the ViT-suffix stage of the STTS run; timing it alone lets the
    overhead figure count it beside scoring and selection. Zero when nothing was pruned.
    """
    if vp.prune is None:
        return 0.0
    hidden = vp.prefix.hidden
    device = hidden.device
    k1 = backend.scoring_layer + 1
    blocks = backend.last_layer - k1
    unpacks = sum(1 for i in backend.feature_layers if i > k1)
    impl = resolve_backend(backend.attention_backend, device)
    attn = backend.model.model.vision_tower.layers[k1].self_attn
    heads, head_dim = attn.config.num_attention_heads, attn.head_dim
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


def inference_record(run: ModelRun, packing_s: float) -> dict[str, float]:
    """One run's stage seconds plus the derived figures (time to first token, end to end, per token)."""
    t = dict(run.timings)
    ttft = sum(t[s] for s in TTFT_STAGES)
    steps = max(1, len(run.token_ids) - 1)
    return {
        "preprocess": t["preprocess"],
        **{s: t[s] for s in TTFT_STAGES},
        "decoding": t["decoding"],
        "decode_per_token": t["decoding"] / steps,
        "packing": packing_s,
        "ttft": ttft,
        "e2e": t["preprocess"] + ttft + t["decoding"],
    }


def _error_cell(frames: int, keep: float, keys: Sequence[str], err: BaseException) -> dict[str, Any]:
    cell: dict[str, Any] = dict.fromkeys(keys)
    cell.update(frames=frames, keep=keep, repeats=0, error=f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}")
    return cell


def _free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def inference_cell(backend: Molmo2Backend, video: Any, question: str, keep: float, cfg: BenchConfig,
                   scorer: str) -> dict[str, Any]:
    """Baseline and STTS alternating on one clip; medians of `cfg.repeats` timed pairs."""
    settings = RunSettings(keep_ratio=keep, scorer=scorer, num_frames=int(video.frames.shape[0]),
                           max_new_tokens=cfg.new_tokens, seed=cfg.seed, stop_at_eos=False)
    base_runs: list[dict[str, float]] = []
    stts_runs: list[dict[str, float]] = []
    peaks: tuple[list[float | None], list[float | None]] = ([], [])
    tokens = suffix = (0, 0)
    with torch.inference_mode():
        for i in range(cfg.warmup + cfg.repeats):
            base, _, _ = run_model(backend, video, question, 1.0, "none", settings)
            stts, vp, inputs = run_model(backend, video, question, keep, scorer, settings)
            packing_s = packing_cost(backend, vp, inputs)
            del vp, inputs  # the next baseline run's peak memory must not include them
            if len(base.token_ids) != len(stts.token_ids):
                raise RuntimeError("The two runs generated different numbers of tokens.")
            if i < cfg.warmup:
                continue
            base_runs.append(inference_record(base, 0.0))
            stts_runs.append(inference_record(stts, packing_s))
            peaks[0].append(base.peak_mem_gb)
            peaks[1].append(stts.peak_mem_gb)
            tokens = (base.visual_tokens, stts.visual_tokens)
            suffix = (base.vit_suffix_tokens, stts.vit_suffix_tokens)
    b, s = _medians(base_runs), _medians(stts_runs)
    return {
        "frames": int(video.frames.shape[0]),
        "keep": keep,
        "ttft_speedup": b["ttft"] / max(s["ttft"], 1e-12),
        "e2e_speedup": b["e2e"] / max(s["e2e"], 1e-12),
        "overhead_pct": 100.0 * (s["scoring"] + s["packing"]) / max(b["ttft"], 1e-12),
        "ttft_delta_pct": 100.0 * (s["ttft"] / max(b["ttft"], 1e-12) - 1.0),
        "baseline_ttft_s": b["ttft"],
        "stts_ttft_s": s["ttft"],
        "baseline_e2e_s": b["e2e"],
        "stts_e2e_s": s["e2e"],
        "visual_tokens": list(tokens),
        "vit_suffix_tokens": list(suffix),
        "peak_mem_gb": [_peak(peaks[0]), _peak(peaks[1])],
        "stages_s": {"baseline": b, "stts": s},
        "repeats": len(base_runs),
        "error": None,
    }


class _PreparedBackend:
    """The backend with `prepare` answered from a cache, so data loading stays off a training step's
    clock; also notes how many visual tokens reached the LLM."""

    def __init__(self, backend: Molmo2Backend, inputs: Any) -> None:
        self._backend = backend
        self._inputs = inputs
        self.visual_tokens = 0

    def prepare(self, *_args: Any, **_kwargs: Any) -> Any:
        return self._inputs

    def encoder_outputs(self, visual: torch.Tensor) -> Any:
        self.visual_tokens = int(visual.shape[0])
        return self._backend.encoder_outputs(visual)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def train_step(backend: Any, sample: Any, keep: float, scorer: str) -> tuple[dict[str, float], float | None, float]:
    """One forward + backward of stts_loss: stage seconds, peak memory and the loss (a NaN check)."""
    from stts_core.train import stts_loss

    device = backend.device
    backend.model.zero_grad(set_to_none=True)
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    parts = stts_loss(backend, sample, keep, scorer=scorer)
    synchronize(device)
    middle = time.perf_counter()
    parts["loss"].backward()
    synchronize(device)
    end = time.perf_counter()
    loss = float(parts["loss"].detach())
    return {"forward": middle - start, "backward": end - middle, "step": end - start}, peak_memory_gb(device), loss


def train_cell(backend: Molmo2Backend, frames: Any, question: str, answer: str, keep: float, cfg: BenchConfig,
               scorer: str) -> dict[str, Any]:
    """Baseline (no scorer, no aux loss) and STTS training steps alternating; medians of the timed pairs."""
    from stts_core.train import Sample

    inputs = backend.prepare(frames, question)
    cached = _PreparedBackend(backend, inputs)
    sample = Sample(frames, question, answer)
    base_runs: list[dict[str, float]] = []
    stts_runs: list[dict[str, float]] = []
    peaks: tuple[list[float | None], list[float | None]] = ([], [])
    tokens = [0, 0]
    backend.model.train()
    try:
        for i in range(cfg.warmup + cfg.repeats):
            rb, pb, lb = train_step(cached, sample, 1.0, "none")
            tokens[0] = cached.visual_tokens
            rs, ps, ls = train_step(cached, sample, keep, scorer)
            tokens[1] = cached.visual_tokens
            if not (torch.isfinite(torch.tensor(lb)) and torch.isfinite(torch.tensor(ls))):
                raise RuntimeError("A training step produced a non-finite loss.")
            if i < cfg.warmup:
                continue
            base_runs.append(rb)
            stts_runs.append(rs)
            peaks[0].append(pb)
            peaks[1].append(ps)
    finally:
        backend.model.zero_grad(set_to_none=True)
        backend.model.eval()
    b, s = _medians(base_runs), _medians(stts_runs)
    expected = kept_group_count(inputs.num_frames, int(inputs.groups.shape[0]), keep)
    if scorer != "none" and tokens[1] != expected:
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


def run_bench(backend: Molmo2Backend, cfg: BenchConfig, log: Callable[[str], None] = _log,
              on_cell: Callable[[list[dict[str, Any]]], None] | None = None) -> tuple[list[dict[str, Any]], str, list[str]]:
    """Every (frames, keep) cell in order; a cell that fails (out of memory, say) is recorded with its error.

    `on_cell` sees the cells so far after each one, so a long run that is stopped keeps what it measured."""
    scorer, notes = resolve_scorer(backend, cfg.scorer)
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
                    cell = inference_cell(backend, video, question, keep, cfg, scorer)
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


def _gb(values: Sequence[float | None]) -> str:
    return "-" if all(v is None for v in values) else "/".join("-" if v is None else f"{v:.1f}" for v in values)


def _source(report: dict[str, Any]) -> str:
    return f"preset {report['preset']}" if report.get("preset") else f"model {report.get('model')}"


def format_table(report: dict[str, Any]) -> str:
    """The summary table, then the per-stage medians of every cell (milliseconds)."""
    cells = report["cells"]
    train = report["mode"] == "train"
    lines = [f"device: {report['device']}   {_source(report)}   mode: {report['mode']}"
             f"   scorer: {report['settings']['scorer_used']}"]
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
                     f" {'TTFT':>7} {'E2E':>7} {'overhead':>9} {'peak GB':>10}")
        for c in cells:
            tok = "-" if c["error"] else f"{c['visual_tokens'][0]}->{c['visual_tokens'][1]}"
            over = "-" if c["overhead_pct"] is None else f"{c['overhead_pct']:.1f}%"
            lines.append(f"{c['frames']:>6} {c['keep']:>5.2f} {tok:>18} {_ms(c['baseline_ttft_s']):>13}"
                         f" {_ms(c['stts_ttft_s']):>13} {_x(c['ttft_speedup']):>7} {_x(c['e2e_speedup']):>7}"
                         f" {over:>9} {_gb(c['peak_mem_gb'] or []):>10}" + (f"  {c['error']}" if c["error"] else ""))
        stages = INFERENCE_STAGES
    lines.append("")
    lines.append(f"{'frames':>6} {'keep':>5} {'run':>8} " + " ".join(f"{STAGE_LABELS.get(s, s):>10}" for s in stages))
    for c in cells:
        if c["error"]:
            continue
        for run in ("baseline", "stts"):
            row = c["stages_s"][run]
            lines.append(f"{c['frames']:>6} {c['keep']:>5.2f} {run:>8} " + " ".join(f"{_ms(row[s]):>10}" for s in stages))
    lines.append(f"(medians of {report['settings']['repeats']} alternating pairs after "
                 f"{report['settings']['warmup']} warm-up pair(s); milliseconds)")
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


# ---------------------------------------------------------------------------------------- CLI
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _frames(text: str) -> int:
    value = _positive_int(text)
    if value > 512:
        raise argparse.ArgumentTypeError(f"at most 512 frames, got {text!r}")
    return value


def _keep(text: str) -> float:
    try:
        return validate_keep_ratio(float(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m stts_core.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help="build this architecture with random weights (tiny, cpu-mid, molmo2-4b, micro)")
    src.add_argument("--model", help="checkpoint directory or hub id")
    p.add_argument("--frames", type=_frames, nargs="+", default=[16, 32])
    p.add_argument("--keep", type=_keep, nargs="+", default=[1.0, 0.5, 0.3])
    p.add_argument("--repeats", type=_positive_int, default=5, help="timed baseline/STTS pairs per cell")
    p.add_argument("--warmup", type=int, default=1, help="untimed pairs before the timed ones")
    p.add_argument("--train", action="store_true", help="time a forward + backward training step instead")
    p.add_argument("--grad-checkpoint", action="store_true",
                   help="with --train: recompute activations in backward (both runs), for long videos on one GPU")
    p.add_argument("--scorer", choices=SCORER_KINDS, default="learned")
    p.add_argument("--new-tokens", type=int, default=8, help="tokens both runs generate (at least 2)")
    p.add_argument("--attention", choices=("auto", "flash", "flex", "rows", "loop"), default="auto",
                   help="packed attention back end of the STTS path")
    p.add_argument("--device", default=None, help="cuda when available, else cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="bf16 on CUDA, fp32 on the CPU by default")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    p.add_argument("--html", type=Path, default=None, help="write a speedup chart here")
    args = p.parse_args(argv)
    if args.new_tokens < 2 or args.new_tokens > 1024:
        p.error("--new-tokens must be from 2 to 1024 (decoding per token needs a second token)")
    if args.warmup < 0:
        p.error("--warmup cannot be negative")
    if args.grad_checkpoint and not args.train:
        p.error("--grad-checkpoint only applies with --train")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda asked for, but CUDA is not available", file=sys.stderr)
        return 2
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    cfg = BenchConfig(frames=list(args.frames), keeps=list(args.keep), repeats=args.repeats, warmup=args.warmup,
                      train=args.train, scorer=args.scorer, new_tokens=args.new_tokens, seed=args.seed,
                      grad_checkpoint=args.grad_checkpoint)
    _log(f"building {'preset ' + args.preset if args.preset else args.model} on {device} ({dtype})")
    try:
        backend = build_backend(args.preset, args.model, device, dtype, args.seed)
        resolve_backend(args.attention, device)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    backend.attention_backend = args.attention
    if cfg.grad_checkpoint:
        enable_grad_checkpointing(backend)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    scorer_used, notes = resolve_scorer(backend, cfg.scorer)

    def make_report(cells: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "device": device_name(device),
            "versions": versions(),
            "preset": args.preset,
            "model": args.model,
            "mode": "train" if cfg.train else "inference",
            "date": started,
            "command": "python -m stts_core.bench " + shlex.join(argv_list),
            "settings": {
                "frames": cfg.frames, "keeps": cfg.keeps, "repeats": cfg.repeats, "warmup": cfg.warmup,
                "scorer": cfg.scorer, "scorer_used": scorer_used, "new_tokens": cfg.new_tokens,
                "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads(), "seed": cfg.seed,
                "attention": resolve_backend(args.attention, device), "grad_checkpoint": cfg.grad_checkpoint,
                "scoring_layer": backend.scoring_layer,
            },
            "notes": notes,
            "complete": len(cells) == len(cfg.frames) * len(cfg.keeps),
            "cells": cells,
        }

    def write_json(cells: list[dict[str, Any]]) -> None:
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(make_report(cells), indent=2))

    cells, scorer_used, notes = run_bench(backend, cfg, _log, on_cell=write_json)
    report = make_report(cells)
    print(format_table(report))
    for note in notes:
        print(f"note: {note}")
    write_json(cells)
    if args.html is not None:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        write_html(report, args.html)
    # Running out of memory is a result (the cell does not fit this device); any other failure is not.
    failed = [c for c in cells if c["error"] and not c["error"].startswith("OutOfMemoryError")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
