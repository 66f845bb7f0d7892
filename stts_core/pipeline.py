"""One request end to end: video -> frames -> ViT prefix -> scores -> selection -> packed ViT
suffix -> connector -> LLM -> answer, for the STTS run and the unpruned baseline, every stage timed.

The UI and the CLIs only read the `RunResult` this returns.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stts_core.backends.base import PreparedInputs
from stts_core.scoring import SCORER_KINDS, heuristic_scores, random_scores
from stts_core.selection import attention_bias, select_groups, validate_keep_ratio
from stts_core.timing import StageTimer, device_name, peak_memory_gb, reset_peak_memory, synchronize
from stts_core.video import SampledVideo, VideoLimits, load_video

# Report order. "ttft" (time to first token) = preprocess .. llm_prefill; "total" adds decoding.
STAGES = ("decode_video", "preprocess", "vit_prefix", "scoring", "vit_suffix", "connector", "llm_prefill", "decoding")
MODEL_STAGES = STAGES[1:7]


@dataclass
class RunSettings:
    keep_ratio: float = 0.5
    scorer: str = "learned"
    num_frames: int = 16
    max_new_tokens: int = 16
    seed: int = 0
    match_budget: bool = False  # test-time scaling: STTS samples round(frames / keep) frames
    attention_bias: bool | None = None  # None: on for the learned scorer (it was trained with it), off otherwise
    run_baseline: bool = True
    stop_at_eos: bool = True

    def validated(self) -> RunSettings:
        validate_keep_ratio(self.keep_ratio)
        if self.scorer not in SCORER_KINDS:
            raise ValueError(f"Unknown scorer {self.scorer!r}; choose one of {', '.join(SCORER_KINDS)}.")
        if not isinstance(self.num_frames, int) or not 1 <= self.num_frames <= 512:
            raise ValueError(f"The number of frames must be a whole number from 1 to 512, got {self.num_frames!r}.")
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= 1024:
            raise ValueError(f"max_new_tokens must be from 1 to 1024, got {self.max_new_tokens!r}.")
        return self

    def stts_frames(self) -> int:
        if not self.match_budget:
            return self.num_frames
        return min(512, max(1, round(self.num_frames / self.keep_ratio)))


@dataclass
class ModelRun:
    """One model run (STTS or baseline): answer, token counts and measured stage times in seconds."""

    answer: str
    token_ids: list[int]
    timings: dict[str, float]
    num_frames: int
    visual_tokens: int
    prompt_tokens: int
    vit_suffix_tokens: int  # patches the post-pruning ViT blocks ran on (per block)
    peak_mem_gb: float | None

    @property
    def ttft_s(self) -> float:
        return sum(self.timings.get(s, 0.0) for s in MODEL_STAGES)

    @property
    def total_s(self) -> float:
        return sum(self.timings.get(s, 0.0) for s in STAGES)


@dataclass
class RunResult:
    frames: np.ndarray  # (T, H, W, 3) uint8: the frames the STTS run scored
    timestamps: np.ndarray  # (T,) seconds
    scores: np.ndarray  # (T, G) float32 in [0, 1]
    keep: np.ndarray  # (T, G) bool
    groups: np.ndarray  # (G, P) patch indices per group inside a frame (-1 = padding)
    grid: tuple[int, int]  # groups per frame as (rows, cols)
    patch_grid: tuple[int, int]  # patches per frame as (rows, cols)
    settings: RunSettings
    scorer_used: str
    stts: ModelRun
    baseline: ModelRun | None
    device: str
    warmup: bool  # the first run after the model loaded pays one-off costs
    notes: list[str] = field(default_factory=list)

    @property
    def agree(self) -> bool | None:
        if self.baseline is None:
            return None
        return normalize_answer(self.baseline.answer) == normalize_answer(self.stts.answer)

    @property
    def ttft_speedup(self) -> float | None:
        return None if self.baseline is None else self.baseline.ttft_s / max(self.stts.ttft_s, 1e-12)

    @property
    def e2e_speedup(self) -> float | None:
        return None if self.baseline is None else self.baseline.total_s / max(self.stts.total_s, 1e-12)

    def to_json(self) -> dict[str, Any]:
        def run(r: ModelRun | None) -> dict[str, Any] | None:
            if r is None:
                return None
            return {"answer": r.answer, "token_ids": r.token_ids, "timings_s": r.timings, "ttft_s": r.ttft_s,
                    "total_s": r.total_s, "num_frames": r.num_frames, "visual_tokens": r.visual_tokens,
                    "prompt_tokens": r.prompt_tokens, "vit_suffix_tokens": r.vit_suffix_tokens,
                    "peak_mem_gb": r.peak_mem_gb}

        return {
            "settings": asdict(self.settings),
            "scorer_used": self.scorer_used,
            "device": self.device,
            "warmup": self.warmup,
            "keep_mask_shape": list(self.keep.shape),
            "kept_groups": int(self.keep.sum()),
            "stts": run(self.stts),
            "baseline": run(self.baseline),
            "agree": self.agree,
            "ttft_speedup": self.ttft_speedup,
            "e2e_speedup": self.e2e_speedup,
            "notes": self.notes,
        }


def normalize_answer(text: str) -> str:
    return " ".join(text.lower().replace(".", " ").split())


def compute_scores(backend: Any, kind: str, state: Any, inputs: PreparedInputs, seed: int) -> torch.Tensor:
    """(T, G) scores from the chosen scorer, on the scoring block's features."""
    if kind == "learned":
        return backend.learned_scores(state, inputs)
    if kind == "heuristic":
        return heuristic_scores(state.hidden, inputs.groups)
    t, g = inputs.num_frames, inputs.groups.shape[0]
    return random_scores(t, g, seed=seed, device=state.hidden.device)


def resolve_scorer(backend: Any, requested: str) -> tuple[str, list[str]]:
    if requested == "learned" and not backend.has_learned_scorer:
        return "heuristic", ["This model has no trained STTS scorer weights, so the heuristic scorer "
                             "(1 - cosine similarity to the previous frame) was used instead."]
    return requested, []


def _question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise ValueError("Please type a question about the video.")
    if len(question) > 2000:
        raise ValueError("The question is too long (2000 characters at most).")
    return question.strip()


@dataclass
class VisualPass:
    """What one pass through the vision side produced (shared by inference, training and evaluation)."""

    prefix: Any  # ViTState after block k (its features feed the auxiliary loss)
    scores: torch.Tensor | None  # (T, G)
    keep: torch.Tensor | None  # (T, G) selection (all True at keep 1)
    prune: torch.Tensor | None  # keep when something is pruned, else None (the unmodified path)
    visual: torch.Tensor  # (kept groups, LLM width)
    suffix_tokens: int  # tokens each post-pruning ViT block ran on


def visual_pass(
    backend: Any,
    inputs: PreparedInputs,
    keep_ratio: float,
    scorer: str,
    seed: int = 0,
    use_bias: bool | None = None,
    timer: StageTimer | None = None,
) -> VisualPass:
    """ViT prefix -> scores -> selection (+ bias) -> packed ViT suffix -> connector.

    scorer "none" is the unmodified model. use_bias None means: on for the learned scorer only.
    """
    timed = timer.stage if timer is not None else (lambda _name: nullcontext())
    with timed("vit_prefix"):
        prefix = backend.vit_prefix(inputs)
    scores = keep = prune = bias = None
    with timed("scoring"):
        if scorer != "none":
            scores = compute_scores(backend, scorer, prefix, inputs, seed)
            keep = select_groups(scores, keep_ratio)
            prune = None if bool(keep.all()) else keep
            if (use_bias if use_bias is not None else scorer == "learned") and prune is not None:
                bias = attention_bias(scores, inputs.groups, inputs.patches_per_frame)
    counter: list[int] = []
    with timed("vit_suffix"):
        suffix = backend.vit_suffix(prefix, inputs, prune, bias, counter=counter)
    with timed("connector"):
        visual = backend.connect(suffix, inputs, prune)
    return VisualPass(prefix=prefix, scores=scores, keep=keep, prune=prune, visual=visual,
                      suffix_tokens=counter[-1] if counter else 0)


@torch.no_grad()
def run_model(
    backend: Any,
    video: SampledVideo,
    question: str,
    keep_ratio: float,
    scorer: str,
    settings: RunSettings,
    decode_s: float = 0.0,
) -> tuple[ModelRun, VisualPass, PreparedInputs]:
    """One timed run. scorer "none" is the unmodified model (the baseline)."""
    device = backend.device
    timer = StageTimer(device)
    timer.add("decode_video", decode_s)
    reset_peak_memory(device)
    with timer.stage("preprocess"):
        inputs = backend.prepare(video.frames, question, video.metadata())
    vp = visual_pass(backend, inputs, keep_ratio, scorer, settings.seed, settings.attention_bias, timer)
    with timer.stage("llm_prefill"):
        llm = backend.llm_inputs(inputs, vp.prune)
    gen = backend.generate(inputs, vp.visual, vp.prune, settings.max_new_tokens, settings.stop_at_eos, llm=llm)
    timer.add("llm_prefill", gen.prefill_s)
    timer.add("decoding", gen.decode_s)
    run = ModelRun(
        answer=gen.text,
        token_ids=gen.token_ids,
        timings={s: timer.get(s) for s in STAGES},
        num_frames=inputs.num_frames,
        visual_tokens=int(vp.visual.shape[0]),
        prompt_tokens=gen.prompt_tokens,
        vit_suffix_tokens=vp.suffix_tokens,
        peak_mem_gb=peak_memory_gb(device),
    )
    return run, vp, inputs


def _load(video: str | Path | SampledVideo, num_frames: int, limits: VideoLimits) -> tuple[SampledVideo, float]:
    if isinstance(video, SampledVideo):
        if video.frames.shape[0] != num_frames:
            idx = np.unique(np.linspace(0, video.frames.shape[0] - 1, num_frames).round().astype(int))
            video = SampledVideo(frames=video.frames[idx], timestamps=video.timestamps[idx],
                                 indices=video.indices[idx], fps=video.fps, duration=video.duration,
                                 total_frames=video.total_frames, width=video.width, height=video.height)
        return video, 0.0
    timer = StageTimer(None)
    with timer.stage("decode"):
        sampled = load_video(video, num_frames, limits)
    return sampled, timer.get("decode")


def wake_device(device: torch.device) -> None:
    """A little untimed work so the first timed run does not pay for waking idle worker threads (CPU)
    or a sleeping GPU; otherwise whichever run goes first looks slower."""
    x = torch.randn(256, 256, device=device)
    for _ in range(8):
        x = torch.tanh(x @ x)
    synchronize(device)


def run(
    backend: Any,
    video: str | Path | SampledVideo,
    question: str,
    settings: RunSettings | None = None,
    limits: VideoLimits | None = None,
) -> RunResult:
    """Run the unpruned baseline and STTS on one video and question; return everything measured."""
    settings = (settings or RunSettings()).validated()
    question = _question(question)
    limits = limits or VideoLimits()
    scorer, notes = resolve_scorer(backend, settings.scorer)
    warmup = not getattr(backend, "_warm", False)
    wake_device(backend.device)
    baseline = None
    if settings.run_baseline:
        base_video, base_decode = _load(video, settings.num_frames, limits)
        baseline, _, _ = run_model(backend, base_video, question, 1.0, "none", settings, base_decode)
    stts_video, stts_decode = _load(video, settings.stts_frames(), limits)
    stts, vp, inputs = run_model(backend, stts_video, question, settings.keep_ratio, scorer, settings, stts_decode)
    backend._warm = True
    if warmup:
        notes.append("First run after the model loaded: timings include one-off warm-up costs.")
    if settings.match_budget:
        notes.append(f"Same token budget as the baseline: STTS sampled {stts.num_frames} frames "
                     f"at keep {settings.keep_ratio:g}.")
    return RunResult(
        frames=stts_video.frames,
        timestamps=np.asarray(stts_video.timestamps, dtype=np.float64),
        scores=vp.scores.detach().float().cpu().numpy(),
        keep=vp.keep.cpu().numpy(),
        groups=inputs.groups.cpu().numpy(),
        grid=inputs.grid,
        patch_grid=inputs.patch_grid,
        settings=settings,
        scorer_used=scorer,
        stts=stts,
        baseline=baseline,
        device=device_name(backend.device),
        warmup=warmup,
        notes=notes,
    )
