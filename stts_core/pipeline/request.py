"""One request end to end: video -> frames -> ViT prefix -> scores -> selection -> packed ViT
suffix -> connector -> LLM -> answer, for the STTS run and the unpruned baseline, every stage timed.

The UI and the CLIs only read the `RunResult` this returns.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stts_core.data.video import SampledVideo, VideoFile, VideoLimits, decoding_notes, open_video
from stts_core.methods.budget import attention_bias, select_groups, validate_keep_ratio
from stts_core.methods.scorers import SCORER_KINDS, heuristic_scores, random_scores
from stts_core.models.base import PreparedInputs, VideoBackend, ViTState
from stts_core.timing import StageTimer, device_name, peak_memory_gb, reset_peak_memory, synchronize

# The stages of one run, in report order, and the three times every report uses:
# - time to first token (TTFT): the model side up to the first answer token, TTFT_STAGES. Decoding the
#   video and the processor's CPU preprocessing are identical work in both runs (a data loader does them
#   in a serving system), so they are reported on their own and left out of it;
# - model time: TTFT plus generating the remaining tokens;
# - end to end: every stage, video decoding and preprocessing included.
STAGES = ("decode_video", "preprocess", "vit_prefix", "scoring", "vit_suffix", "connector", "llm_prefill", "decoding")
TTFT_STAGES = ("vit_prefix", "scoring", "vit_suffix", "connector", "llm_prefill")
MODEL_STAGES = (*TTFT_STAGES, "decoding")
MAX_QUESTION_CHARS = 2000


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
        """Model-side time to first token (TTFT_STAGES)."""
        return sum(self.timings.get(s, 0.0) for s in TTFT_STAGES)

    @property
    def model_s(self) -> float:
        """Model-side time for the whole answer: TTFT plus decoding."""
        return sum(self.timings.get(s, 0.0) for s in MODEL_STAGES)

    @property
    def e2e_s(self) -> float:
        """Every stage, video decoding and preprocessing included."""
        return sum(self.timings.get(s, 0.0) for s in STAGES)


@dataclass
class RunResult:
    frames: np.ndarray  # (T, H, W, 3) uint8: the frames the STTS run scored
    timestamps: np.ndarray  # (T,) seconds
    scores: np.ndarray  # (T, G) float32 in [0, 1]
    keep_mask: np.ndarray  # (T, G) bool: the groups STTS kept
    groups: np.ndarray  # (G, P) patch indices per group inside a frame (-1 = padding)
    grid: tuple[int, int]  # groups per frame as (rows, cols)
    patch_grid: tuple[int, int]  # patches per frame as (rows, cols)
    settings: RunSettings
    scorer_used: str
    stts: ModelRun
    baseline: ModelRun | None
    device: str
    warmup: bool  # the first run after the model loaded pays one-off costs
    decode_s: float = 0.0  # video decoding, shared by both runs when they use the same frames
    notes: list[str] = field(default_factory=list)

    @property
    def agree(self) -> bool | None:
        """Same normalised answer; None without a baseline, False when either answer is empty."""
        if self.baseline is None:
            return None
        return answers_agree(self.baseline.answer, self.stts.answer)

    def _speedup(self, attr: str) -> float | None:
        if self.baseline is None:
            return None
        return getattr(self.baseline, attr) / max(getattr(self.stts, attr), 1e-12)

    @property
    def ttft_speedup(self) -> float | None:
        return self._speedup("ttft_s")

    @property
    def model_speedup(self) -> float | None:
        return self._speedup("model_s")

    @property
    def e2e_speedup(self) -> float | None:
        return self._speedup("e2e_s")

    def to_json(self) -> dict[str, Any]:
        def run(r: ModelRun | None) -> dict[str, Any] | None:
            if r is None:
                return None
            return {"answer": r.answer, "token_ids": r.token_ids, "timings_s": r.timings, "ttft_s": r.ttft_s,
                    "model_s": r.model_s, "e2e_s": r.e2e_s, "num_frames": r.num_frames,
                    "visual_tokens": r.visual_tokens,
                    "prompt_tokens": r.prompt_tokens, "vit_suffix_tokens": r.vit_suffix_tokens,
                    "peak_mem_gb": r.peak_mem_gb}

        return {
            "settings": asdict(self.settings),
            "scorer_used": self.scorer_used,
            "device": self.device,
            "warmup": self.warmup,
            "keep_mask_shape": list(self.keep_mask.shape),
            "kept_groups": int(self.keep_mask.sum()),
            "grid": list(self.grid),
            "timestamps_s": [float(t) for t in self.timestamps],
            "scores": [[round(float(x), 6) for x in row] for row in self.scores],
            "keep_mask": [[bool(x) for x in row] for row in self.keep_mask],
            "decode_s": self.decode_s,
            "stts": run(self.stts),
            "baseline": run(self.baseline),
            "agree": self.agree,
            "ttft_speedup": self.ttft_speedup,
            "model_speedup": self.model_speedup,
            "e2e_speedup": self.e2e_speedup,
            "notes": self.notes,
        }


def normalize_answer(text: str) -> str:
    return " ".join(text.lower().replace(".", " ").split())


def answers_agree(a: str, b: str) -> bool:
    """Two answers agree when their normalised text is equal and not empty: no answer is never agreement."""
    na, nb = normalize_answer(a or ""), normalize_answer(b or "")
    return bool(na) and na == nb


def compute_scores(backend: VideoBackend, kind: str, state: ViTState, inputs: PreparedInputs,
                   seed: int) -> torch.Tensor:
    """(T, G) scores from the chosen scorer, on the scoring block's features."""
    if kind == "learned":
        return backend.learned_scores(state, inputs)
    if kind == "heuristic":
        return heuristic_scores(state.hidden, inputs.groups)
    t, g = inputs.num_frames, inputs.groups.shape[0]
    return random_scores(t, g, seed=seed, device=state.hidden.device)


def resolve_scorer(backend: VideoBackend, requested: str) -> tuple[str, list[str]]:
    """The one fallback rule (run, evaluate, analyze, bench and the app use it): a model without
    trained scorer weights scores with the heuristic, and says so, rather than with random weights."""
    if requested not in SCORER_KINDS:
        raise ValueError(f"Unknown scorer {requested!r}; choose one of {', '.join(SCORER_KINDS)}.")
    if requested == "learned" and not backend.has_learned_scorer:
        return "heuristic", ["This model has no trained STTS scorer weights, so the heuristic scorer "
                             "(1 - cosine similarity to the previous frame) was used instead."]
    return requested, []


def validate_question(question: object) -> str:
    """The question, stripped; a one-sentence ValueError for no text, too much text or text that is
    not valid Unicode (a lone surrogate cannot be encoded for the tokenizer)."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("Please type a question about the video.")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"The question is too long ({MAX_QUESTION_CHARS} characters at most).")
    try:
        question.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("The question contains characters that are not valid text; please retype it.") from None
    return question.strip()


@dataclass
class VisualPass:
    """What one pass through the vision side produced (shared by inference, training and evaluation)."""

    prefix: ViTState  # after block k (its features feed the auxiliary loss)
    scores: torch.Tensor | None  # (T, G)
    keep_mask: torch.Tensor | None  # (T, G) selection (all True at keep ratio 1); None for the baseline
    prune: torch.Tensor | None  # keep_mask when something is pruned, else None (the unmodified path)
    visual: torch.Tensor  # (kept groups, LLM width)
    suffix_tokens: int  # tokens each post-pruning ViT block ran on


def visual_pass(
    backend: VideoBackend,
    inputs: PreparedInputs,
    keep_ratio: float,
    scorer: str,
    seed: int = 0,
    use_bias: bool | None = None,
    timer: StageTimer | None = None,
    prefix: ViTState | None = None,
    scores: torch.Tensor | None = None,
) -> VisualPass:
    """ViT prefix -> scores -> selection (+ bias) -> packed ViT suffix -> connector.

    scorer "none" is the unmodified model. use_bias None means: on for the learned scorer only.
    A `prefix` (and `scores`) computed once can be passed in to share them between settings of the
    same clip; the suffix never modifies them.
    """
    timed = timer.stage if timer is not None else (lambda _name: nullcontext())
    with timed("vit_prefix"):
        prefix = prefix if prefix is not None else backend.vit_prefix(inputs)
    keep_mask = prune = bias = None
    with timed("scoring"):
        if scorer != "none":
            if scores is None:
                scores = compute_scores(backend, scorer, prefix, inputs, seed)
            keep_mask = select_groups(scores, keep_ratio)
            prune = None if bool(keep_mask.all()) else keep_mask
            if (use_bias if use_bias is not None else scorer == "learned") and prune is not None:
                bias = attention_bias(scores, inputs.groups, inputs.patches_per_frame)
        else:
            scores = None
    counter: list[int] = []
    with timed("vit_suffix"):
        suffix = backend.vit_suffix(prefix, inputs, prune, bias, counter=counter)
    with timed("connector"):
        visual = backend.connect(suffix, inputs, prune)
    return VisualPass(prefix=prefix, scores=scores, keep_mask=keep_mask, prune=prune, visual=visual,
                      suffix_tokens=counter[-1] if counter else 0)


@torch.no_grad()
def run_model(
    backend: VideoBackend,
    video: SampledVideo,
    question: str,
    keep_ratio: float,
    scorer: str,
    settings: RunSettings,
    decode_s: float = 0.0,
    on_stage: Callable[[str], None] | None = None,
) -> tuple[ModelRun, VisualPass, PreparedInputs]:
    """One timed run. scorer "none" is the unmodified model (the baseline). `on_stage` hears each
    stage's name as it starts (outside the clock), for progress bars."""
    device = backend.device
    timer = StageTimer(device, on_stage)
    timer.add("decode_video", decode_s)
    reset_peak_memory(device)
    with timer.stage("preprocess"):
        inputs = backend.prepare(video.frames, question, video.metadata())
    vp = visual_pass(backend, inputs, keep_ratio, scorer, settings.seed, settings.attention_bias, timer)
    with timer.stage("llm_prefill"):
        llm = backend.llm_inputs(inputs, vp.prune)
    if on_stage is not None:
        on_stage("decoding")
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


def subsample(video: SampledVideo, num_frames: int) -> SampledVideo:
    """`num_frames` of an already decoded sampling, spread uniformly (all of them when it has fewer)."""
    if video.frames.shape[0] <= num_frames:
        return video
    idx = np.unique(np.linspace(0, video.frames.shape[0] - 1, num_frames).round().astype(int))
    return SampledVideo(frames=video.frames[idx], timestamps=video.timestamps[idx], indices=video.indices[idx],
                        fps=video.fps, duration=video.duration, total_frames=video.total_frames,
                        width=video.width, height=video.height, extra=dict(video.extra))


class FrameSource:
    """Decoded frames for one request: each distinct frame count is decoded once, timed, and shared."""

    def __init__(self, video: str | Path | VideoFile | SampledVideo, limits: VideoLimits) -> None:
        self._given = video if isinstance(video, SampledVideo) else None
        self._file: VideoFile | None = video if isinstance(video, VideoFile) else None
        self._owned = False
        if self._given is None and self._file is None:
            self._file = open_video(video, limits)  # type: ignore[arg-type]
            self._owned = True
        self._times: dict[int, float] = {}

    def frames(self, num_frames: int) -> tuple[SampledVideo, float]:
        """(frames, seconds it took to decode them: 0 when already decoded for the other run)."""
        if self._given is not None:
            return subsample(self._given, num_frames), 0.0
        assert self._file is not None
        if num_frames not in self._times:
            timer = StageTimer(None)
            with timer.stage("decode"):
                self._file.sample(num_frames)
            self._times[num_frames] = timer.get("decode")
        return self._file.sample(num_frames), self._times[num_frames]

    @property
    def available_frames(self) -> int | None:
        return int(self._file.info["total_frames"]) if self._file is not None else None

    def close(self) -> None:
        if self._owned and self._file is not None:
            self._file.close()


def wake_device(device: torch.device) -> None:
    """A little untimed work so the first timed run does not pay for waking idle worker threads (CPU)
    or a sleeping GPU; otherwise whichever run goes first looks slower."""
    x = torch.randn(256, 256, device=device)
    for _ in range(8):
        x = torch.tanh(x @ x)
    synchronize(device)


def _tell(on_stage: Callable[[str, str], None] | None, run_name: str) -> Callable[[str], None] | None:
    return None if on_stage is None else (lambda stage: on_stage(run_name, stage))


def _source_notes(source: FrameSource, settings: RunSettings, sampled: SampledVideo) -> list[str]:
    notes = []
    available = source.available_frames
    if available is not None and available < settings.stts_frames():
        notes.append(f"The clip has only {available} frames, so all {sampled.frames.shape[0]} were used "
                     f"(asked for {settings.stts_frames()}).")
    return notes + decoding_notes(sampled)


def run(
    backend: VideoBackend,
    video: str | Path | VideoFile | SampledVideo,
    question: str,
    settings: RunSettings | None = None,
    limits: VideoLimits | None = None,
    on_stage: Callable[[str, str], None] | None = None,
) -> RunResult:
    """Run the unpruned baseline and STTS on one video and question; return everything measured.
    `on_stage(run, stage)` hears "baseline"/"stts" and each stage's name as it starts.

    The video is opened once and each distinct frame count decoded once: the baseline and STTS share
    the decoded frames (and each run's `decode_video` is the time those frames took)."""
    settings = (settings or RunSettings()).validated()
    question = validate_question(question)
    scorer, notes = resolve_scorer(backend, settings.scorer)
    source = FrameSource(video, limits or VideoLimits())
    try:
        warmup = not backend.warm
        wake_device(backend.device)
        baseline = None
        if settings.run_baseline:
            base_video, base_decode = source.frames(settings.num_frames)
            baseline, _, _ = run_model(backend, base_video, question, 1.0, "none", settings, base_decode,
                                       _tell(on_stage, "baseline"))
        stts_video, stts_decode = source.frames(settings.stts_frames())
        if baseline is not None and settings.stts_frames() == settings.num_frames:
            stts_decode = base_decode
        stts, vp, inputs = run_model(backend, stts_video, question, settings.keep_ratio, scorer, settings,
                                     stts_decode, _tell(on_stage, "stts"))
        notes += _source_notes(source, settings, stts_video)
    finally:
        source.close()
    backend.warm = True
    if warmup:
        notes.append("First run after the model loaded: timings include one-off warm-up costs.")
    if settings.match_budget:
        notes.append(f"Same token budget as the baseline: STTS sampled {stts.num_frames} frames "
                     f"at keep {settings.keep_ratio:g}.")
    return RunResult(
        frames=stts_video.frames,
        timestamps=np.asarray(stts_video.timestamps, dtype=np.float64),
        scores=vp.scores.detach().float().cpu().numpy(),
        keep_mask=vp.keep_mask.cpu().numpy(),
        groups=inputs.groups.cpu().numpy(),
        grid=inputs.grid,
        patch_grid=inputs.patch_grid,
        settings=settings,
        scorer_used=scorer,
        stts=stts,
        baseline=baseline,
        device=device_name(backend.device),
        warmup=warmup,
        decode_s=stts_decode,
        notes=notes,
    )
