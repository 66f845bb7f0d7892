"""One request end to end: video -> frames -> ViT prefix -> scores -> selection -> packed ViT suffix ->
connector -> LLM -> answer, for the pruned run and the unpruned baseline, every stage timed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stts_core.data.sampling import uniform_subset
from stts_core.data.video import SampledVideo, VideoFile, VideoLimits, decoding_notes, open_video
from stts_core.methods.budget import kept_group_count
from stts_core.methods.frames import frame_keep_mask, frame_positions
from stts_core.methods.registry import Method, get_method
from stts_core.models.base import LLMPrune, PreparedInputs, VideoBackend
from stts_core.pipeline.result import ModelRun, RunResult
from stts_core.pipeline.settings import RunSettings, validate_question
from stts_core.pipeline.stages import STAGES
from stts_core.pipeline.visual import VisualPass, resolve_scorer, selects_nothing, visual_pass
from stts_core.timing import CpuShare, StageTimer, device_name, peak_memory_gb, reset_peak_memory, synchronize

LLM_PRUNE_CAPABILITY = "llm_prune"


def llm_prune_for(backend: VideoBackend, method: Method | None, inputs: PreparedInputs,
                  keep_ratio: float) -> LLMPrune | None:
    """What an llm-stage method asks the backend's generate for (None for every other stage): the same
    number of visual tokens after the method's layer as the other methods give the LLM."""
    if method is None or method.stage != "llm":
        return None
    if LLM_PRUNE_CAPABILITY not in getattr(backend, "capabilities", frozenset()):
        raise ValueError(f"The {backend.name} model family cannot prune inside its LLM, so the method "
                         f"{method.name!r} is not available for it.")
    budget = kept_group_count(inputs.num_frames, int(inputs.groups.shape[0]), keep_ratio)
    return LLMPrune(method=method.name, keep_tokens=budget, options=dict(method.options))


UNPRUNED_NOTE = ("This keep ratio prunes nothing, so the STTS run is the unmodified model: its scorer ran after "
                 "the timed stages, for the score maps only, and its time is not in the STTS timings.")


@torch.no_grad()  # inference: no autograd graph (recording one made the app's runs 10-20% slower)
def run_model(
    backend: VideoBackend,
    video: SampledVideo,
    question: str,
    keep_ratio: float,
    method: str | Method | None,
    settings: RunSettings,
    decode_s: float = 0.0,
    on_stage: Callable[[str], None] | None = None,
) -> tuple[ModelRun, VisualPass, PreparedInputs]:
    """One timed run. ``method`` None is the unmodified model (the baseline). ``on_stage`` hears each
    stage's name as it starts (outside the clock), for progress bars."""
    device = backend.device
    chosen = get_method(method) if method is not None else None
    timer = StageTimer(device, on_stage)
    clock = CpuShare(device)
    timer.add("decode_video", decode_s)
    reset_peak_memory(device)
    with timer.stage("preprocess"):
        inputs = backend.prepare(video.frames, question, video.metadata())
    vp = visual_pass(backend, inputs, keep_ratio, chosen, settings.seed, settings.attention_bias, timer)
    prune_llm = llm_prune_for(backend, chosen, inputs, keep_ratio)
    with timer.stage("llm_prefill"):
        llm = backend.llm_inputs(inputs, vp.prune)
    if on_stage is not None:
        on_stage("decoding")
    extra = {} if prune_llm is None else {"llm_prune": prune_llm}
    gen = backend.generate(inputs, vp.visual, vp.prune, settings.max_new_tokens, settings.stop_at_eos, llm=llm,
                           **extra)
    if prune_llm is not None and gen.keep_mask is not None:
        vp = dataclasses.replace(vp, keep_mask=gen.keep_mask, prune=gen.keep_mask)
    timer.add("llm_prefill", gen.prefill_s)
    timer.add("decoding", gen.decode_s)
    run = ModelRun(answer=gen.text, token_ids=gen.token_ids, timings={s: timer.get(s) for s in STAGES},
                   num_frames=inputs.num_frames, visual_tokens=gen.visual_tokens or int(vp.visual.shape[0]),
                   prompt_tokens=gen.prompt_tokens, vit_suffix_tokens=vp.suffix_tokens,
                   peak_mem_gb=peak_memory_gb(device), vit_tokens=vp.vit_tokens, cpu_share=clock.share())
    return run, vp, inputs


def frames_per_row(backend: VideoBackend) -> int:
    """Frames one keep-mask row covers: 1, or the family's temporal patch (2 for Qwen-VL)."""
    return max(1, int(getattr(backend, "frames_per_unit", 1) or 1))


def mask_rows(video: SampledVideo, per_row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """One frame and one timestamp per keep-mask row (a row's first frame), each row's frame times
    ((rows, per_row) seconds, None at one frame per row) and the notes that say what a row is. A count
    that is not a whole number of rows is padded by repeating the last frame, as Qwen-VL's processor does."""
    times = np.asarray(video.timestamps, dtype=np.float64)
    if per_row == 1:
        return video.frames, times, None, []
    count = len(times)
    pad = -count % per_row
    row_times = np.concatenate([times, np.repeat(times[-1:], pad)]).reshape(-1, per_row)
    notes = [f"Each mask row is a temporal patch: {per_row} consecutive frames that the model's patch embedding "
             f"fuses into one set of tokens, shown by its first frame and labelled with both frame times."]
    if pad:
        notes.append(f"The {count} sampled frames were padded to {count + pad} by repeating the last frame, as the "
                     "model's processor does, so the last row holds that frame twice.")
    return video.frames[::per_row], row_times[:, 0].copy(), row_times, notes


def frames_to_rows(keep: np.ndarray, per_row: int) -> np.ndarray:
    """A frames-stage method's (frames, G) mask -> (rows, G) when a row covers `per_row` frames: the model
    pairs the sampled frames into temporal patches of their own, so the mask marks as many rows as the LLM
    got temporal patches (ceil(sampled / per_row)), spread by the same uniform rule."""
    if per_row == 1:
        return keep
    rows = -(-keep.shape[0] // per_row)
    out = np.zeros((rows, keep.shape[1]), dtype=bool)
    out[uniform_subset(rows, -(-int(keep.any(axis=1).sum()) // per_row))] = True
    return out


def subsample(video: SampledVideo, positions: np.ndarray) -> SampledVideo:
    """The frames at ``positions`` of an already decoded sampling."""
    return dataclasses.replace(video, frames=video.frames[positions], timestamps=video.timestamps[positions],
                               indices=video.indices[positions], extra=dict(video.extra))


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
        """(frames, seconds it took to decode them: 0 when already decoded for the other run). Frames given
        already decoded are thinned by the decoder's uniform rule (`data.sampling`)."""
        if self._given is not None:
            total = self._given.frames.shape[0]
            if total <= num_frames:
                return self._given, 0.0
            return subsample(self._given, uniform_subset(total, num_frames)), 0.0
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


@torch.no_grad()
def warm_up(backend: VideoBackend, num_frames: int = 16, keep_ratio: float | None = None, rounds: int = 2) -> float:
    """Untimed runs of both paths, the unpruned baseline and the default method (the learned scorer, or
    the heuristic for a model without one), at the checkpoint's keep ratio on a small synthetic clip.

    A server calls this after loading a model and before it takes requests, so the first visitor's run
    is not the one that pays lazy initialisation, thread-pool start, allocator growth and kernel set-up;
    the backend is then marked warm and `run` no longer calls its next result a warm-up run. Returns the
    seconds it took."""
    from stts_core.data.synthetic import make_clip
    from stts_core.data.video import frames_from_array

    timer = StageTimer(backend.device)
    clip = make_clip(0, num_frames=num_frames)
    video = frames_from_array(clip.frames)
    method, _ = resolve_scorer(backend, "learned")
    keep = float(keep_ratio if keep_ratio is not None else backend.default_keep_ratio)
    settings = RunSettings(keep_ratio=keep, scorer=method, num_frames=num_frames, stop_at_eos=False).validated()
    with timer.stage("warm_up"):
        for _ in range(max(1, rounds)):
            wake_device(backend.device)
            run_model(backend, video, clip.qas[0].question, 1.0, None, settings)
            run_model(backend, video, clip.qas[0].question, keep, method, settings)
    backend.warm = True
    return timer.get("warm_up")


def _tell(on_stage: Callable[[str, str], None] | None, run_name: str) -> Callable[[str], None] | None:
    return None if on_stage is None else (lambda stage: on_stage(run_name, stage))


def _source_notes(source: FrameSource, settings: RunSettings, sampled: SampledVideo) -> list[str]:
    notes = []
    available = source.available_frames
    if available is not None and available < settings.stts_frames():
        notes.append(f"The clip has only {available} frames, so all {sampled.frames.shape[0]} were used "
                     f"(asked for {settings.stts_frames()}).")
    return notes + decoding_notes(sampled)


def _pruned_run(backend: VideoBackend, method: Method, video: SampledVideo, question: str, settings: RunSettings,
                decode_s: float, on_stage: Callable[[str], None] | None) -> tuple[ModelRun, np.ndarray | None,
                                                                                  np.ndarray, PreparedInputs]:
    """The pruned side: (run, scores, keep mask over the decoded frames, inputs). A frames-stage method
    samples fewer of the decoded frames and runs them unpruned; its mask marks the frames it used."""
    if method.stage == "frames":
        positions = frame_positions(video.frames.shape[0], settings.keep_ratio)
        run, _, inputs = run_model(backend, subsample(video, positions), question, 1.0, None, settings, decode_s,
                                   on_stage)
        keep = frame_keep_mask(video.frames.shape[0], int(inputs.groups.shape[0]), settings.keep_ratio).numpy()
        return run, None, frames_to_rows(keep, frames_per_row(backend)), inputs
    run, vp, inputs = run_model(backend, video, question, settings.keep_ratio, method, settings, decode_s, on_stage)
    assert vp.keep_mask is not None
    scores = None if vp.scores is None else vp.scores.detach().float().cpu().numpy()
    return run, scores, vp.keep_mask.cpu().numpy(), inputs


@torch.no_grad()
def run(
    backend: VideoBackend,
    video: str | Path | VideoFile | SampledVideo,
    question: str,
    settings: RunSettings | None = None,
    limits: VideoLimits | None = None,
    on_stage: Callable[[str, str], None] | None = None,
) -> RunResult:
    """Run the unpruned baseline and a method on one video and question; return everything measured.
    ``on_stage(run, stage)`` hears "baseline"/"stts" and each stage's name as it starts.

    The video is opened once and each distinct frame count decoded once: the baseline and the pruned
    run share the decoded frames (and each run's ``decode_video`` is the time those frames took)."""
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
            baseline, _, _ = run_model(backend, base_video, question, 1.0, None, settings, base_decode,
                                       _tell(on_stage, "baseline"))
        stts_video, stts_decode = source.frames(settings.stts_frames())
        if baseline is not None and settings.stts_frames() == settings.num_frames:
            stts_decode = base_decode
        stts, scores, keep, inputs = _pruned_run(backend, get_method(scorer), stts_video, question, settings,
                                                 stts_decode, _tell(on_stage, "stts"))
        notes += _source_notes(source, settings, stts_video)
        if get_method(scorer).stage == "vit" and selects_nothing(inputs, settings.keep_ratio):
            notes.append(UNPRUNED_NOTE)
    finally:
        source.close()
    backend.warm = True
    if warmup:
        notes.append("First run after the model loaded: timings include one-off warm-up costs.")
    if settings.match_budget:
        notes.append(f"Same token budget as the baseline: STTS sampled {len(stts_video.frames)} frames "
                     f"at keep {settings.keep_ratio:g}.")
    frames, timestamps, row_times, row_notes = mask_rows(stts_video, frames_per_row(backend))
    return RunResult(frames=frames, timestamps=timestamps, scores=scores, keep_mask=keep,
                     groups=inputs.groups.cpu().numpy(), grid=inputs.grid,
                     patch_grid=inputs.patch_grid, settings=settings, scorer_used=scorer, stts=stts,
                     baseline=baseline, device=device_name(backend.device), warmup=warmup, decode_s=stts_decode,
                     notes=notes + row_notes, frame_unit=getattr(backend, "frame_unit", "frame"), row_times=row_times)
