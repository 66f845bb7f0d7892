"""`python -m stts_core.analyze`: where does pruning change the answer, and why?

Runs the unpruned baseline and every scorer x keep ratio on each example of a dataset and writes into --out:

- ``results.jsonl``: one row per example and setting (answer, correct, agrees with the baseline, keep
  mask, kept groups per frame, score statistics, stage times), streamed as it goes. A rerun skips the
  rows already there and retries failed ones; a bad example (missing or damaged video, empty question)
  is recorded with its error and the batch goes on. The exit code is 1 when any row failed.
- ``summary.csv``: accuracy, agreement and flips per scorer x keep ratio, overall and per question type.
- ``report.html``: the same as charts and tables plus a gallery of flips with keep-mask thumbnails; one
  offline file (plotly.js embedded).

Data (--data): a folder with ``questions.csv`` or ``questions.jsonl`` (columns ``video``, ``question``,
optional ``answer``, ``type``, ``id``) and the videos, one of those files, a .zip of such a folder, or the
built-in synthetic split ``synthetic:test[:N]`` (also ``synthetic:test:N``; ``synthetic-rich:test:N`` for
the rich world over real photographs, ``synthetic-mixed:test:N`` for both in turn), or a benchmark's local
copy (``mvbench:/path``, ``videomme:``, ``nextqa:``, ``longvideobench:``; `stts_core.data.benchmarks`): its
multiple-choice questions are asked in the model family's prompt format (`analysis.prompting`), graded by
the letter read from the answer, tabled per benchmark and task / category / duration class
(`analysis.bench_tables`: summary.csv, paper_table.csv, the report) and logged in lmms-eval's sample format
(`analysis.lmms_export`). Questions about one video and one span share its decode and vision side.

Scorers: learned, heuristic, random (prune groups of all frames) and frames (sample round(keep x T)
frames uniformly and prune nothing: the same visual-token budget).

Work is shared: each video is decoded and preprocessed once, its ViT prefix runs once, each scorer's
scores are computed once and reused for every keep ratio, and, since the vision side does not read the
question, each setting's visual tokens are computed once per video and shared by its questions. The
frames scorer subsamples the decoded frames and runs its own, shorter ViT pass. ``--compare-naive N``
times this against calling ``pipeline.run`` once per setting on N examples.

Under ``torchrun --nproc_per_node N -m stts_core.analyze ...`` the videos are sharded across ranks
(gloo on the CPU, NCCL on GPUs), each rank streams its own part file and rank 0 merges them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stts_core.analysis.bench_tables import PAPER_TABLE, benchmark_cells, write_paper_table
from stts_core.analysis.lmms_export import write_lmms_samples
from stts_core.analysis.metrics import flagged, score_stats, summarize, write_summary
from stts_core.analysis.prompting import prompt_for, prompt_style
from stts_core.analysis.records import (
    BASELINE,
    Analysis,
    AnalysisSettings,
    Outcome,
    Setting,
    Thumb,
    answer_key,
    error_row,
    outcome_row,
)
from stts_core.analysis.store import REPORT, SUMMARY, Store, dedupe, make_thumb, ordered, save_thumb
from stts_core.data.tables import Example
from stts_core.data.video import SampledVideo, decoding_notes, load_video
from stts_core.methods.frames import frame_keep_mask, frame_positions
from stts_core.methods.registry import Method, get_method
from stts_core.models.base import Generation, PreparedInputs, VideoBackend, ViTState
from stts_core.pipeline import RunSettings, VisualPass, resolve_scorer, visual_pass
from stts_core.pipeline.request import llm_prune_for, subsample
from stts_core.pipeline.stages import STAGES
from stts_core.pipeline.visual import method_scores, visual_selection
from stts_core.timing import StageTimer

ProgressFn = Callable[[int, int, str], None]


@dataclass
class _Video:
    """One video's shared work: decoded frames, inputs per question, the ViT prefix, what they took,
    and what was computed from them so far: each vit-stage method's scores, the unpruned visual pass
    (the baseline's, which visual- and llm-stage methods start from) and the inputs per frame count."""

    sampled: SampledVideo
    questions: list[str]
    inputs: list[PreparedInputs]
    prefix: ViTState
    times: dict[str, float]  # decode_video, preprocess, vit_prefix
    seed: int
    notes: list[str]
    scores: dict[str, tuple[torch.Tensor, float]] = field(default_factory=dict)
    full: tuple[VisualPass, dict[str, float]] | None = None  # the unpruned vision side and its times
    subsets: dict[int, tuple[list[PreparedInputs], dict[str, float]]] = field(default_factory=dict)


def _prepare(backend: VideoBackend, video: SampledVideo, questions: list[str], prefix: bool = True
             ) -> tuple[list[PreparedInputs], ViTState | None, dict[str, float]]:
    timer = StageTimer(backend.device)
    with timer.stage("preprocess"):
        inputs = backend.prepare_questions(video.frames, questions, video.metadata())
    state = None
    if prefix:
        with timer.stage("vit_prefix"):
            state = backend.vit_prefix(inputs[0])
    return inputs, state, {"preprocess": timer.get("preprocess"), "vit_prefix": timer.get("vit_prefix")}


@torch.no_grad()
def _open_video(backend: VideoBackend, path: Path, questions: list[str], cfg: AnalysisSettings, seed: int,
                span: tuple[float, float] | None = None) -> _Video:
    timer = StageTimer(None)
    with timer.stage("decode_video"):
        sampled = load_video(path, cfg.num_frames, cfg.limits, span)
    inputs, prefix, times = _prepare(backend, sampled, questions)
    notes = []
    if sampled.frames.shape[0] < cfg.num_frames:
        notes.append(f"The clip has only {sampled.frames.shape[0]} frames, so all were used "
                     f"(asked for {cfg.num_frames}).")
    notes += decoding_notes(sampled)
    assert prefix is not None
    return _Video(sampled, questions, inputs, prefix, {"decode_video": timer.get("decode_video"), **times}, seed, notes)


def _answers(backend: VideoBackend, inputs: list[PreparedInputs], vp: VisualPass, max_new_tokens: int,
             method: Method | None = None, keep: float = 1.0) -> list[tuple[Generation, dict[str, float]]]:
    """Greedy answers for several questions from one shared visual pass, with each one's LLM times."""
    out = []
    for inp in inputs:
        prune_llm = llm_prune_for(backend, method, inp, keep)
        timer = StageTimer(backend.device)
        with timer.stage("llm_prefill"):
            llm = backend.llm_inputs(inp, vp.prune)
        extra = {} if prune_llm is None else {"llm_prune": prune_llm}
        gen = backend.generate(inp, vp.visual, vp.prune, max_new_tokens, True, llm=llm, **extra)
        out.append((gen, {"llm_prefill": timer.get("llm_prefill") + gen.prefill_s, "decoding": gen.decode_s}))
    return out


def _outcomes(gens: list[tuple[Generation, dict[str, float]]], times: dict[str, float], keep: np.ndarray,
              shared: list[str], vp: VisualPass, **fields: Any) -> list[Outcome]:
    """One outcome per answer; an llm-stage method's own keep mask and token count replace the vision side's."""
    outs = []
    for gen, llm in gens:
        mask = gen.keep_mask.cpu().numpy() if gen.keep_mask is not None else keep
        outs.append(Outcome(answer=gen.text, token_ids=list(gen.token_ids), keep=mask, shared=shared,
                            timings={s: float({**times, **llm}.get(s, 0.0)) for s in STAGES},
                            visual_tokens=gen.visual_tokens or int(vp.visual.shape[0]), vit_tokens=vp.vit_tokens,
                            suffix_tokens=vp.suffix_tokens, **fields))
    return outs


def _pass_times(timer: StageTimer, *names: str) -> dict[str, float]:
    return {name: timer.get(name) for name in names}


def _shared(v: _Video, *stages: str, per_question: tuple[str, ...] = ()) -> list[str]:
    """Stages this row shares with other rows: always `stages`, `per_question` only when the video has
    several questions (they then share the vision side)."""
    return [*stages, *(per_question if len(v.inputs) > 1 else ())]


def _full_pass(backend: VideoBackend, v: _Video, cfg: AnalysisSettings) -> tuple[VisualPass, dict[str, float]]:
    """The unpruned vision side, computed once per video (the baseline and every visual- or llm-stage
    method start from it)."""
    if v.full is None:
        timer = StageTimer(backend.device)
        vp = visual_pass(backend, v.inputs[0], 1.0, None, v.seed, cfg.attention_bias, timer, prefix=v.prefix)
        v.full = (vp, _pass_times(timer, "vit_suffix", "connector"))
    return v.full


def _run_baseline(backend: VideoBackend, v: _Video, sel: list[int], cfg: AnalysisSettings) -> list[Outcome]:
    vp, pass_times = _full_pass(backend, v, cfg)
    t, g = v.inputs[0].num_frames, v.inputs[0].groups.shape[0]
    shared = _shared(v, "decode_video", "preprocess", "vit_prefix", per_question=("vit_suffix", "connector"))
    gens = _answers(backend, [v.inputs[i] for i in sel], vp, cfg.max_new_tokens)
    return _outcomes(gens, {**v.times, **pass_times}, np.ones((t, g), dtype=bool), shared, vp, scorer_used=BASELINE,
                     stats=None, seed=v.seed, frames_used=list(range(t)), notes=[])


def _run_vit(backend: VideoBackend, v: _Video, method: Method, setting: Setting, sel: list[int],
             cfg: AnalysisSettings, notes: list[str]) -> list[Outcome]:
    """A vit-stage method at one keep ratio; its scores are computed once per video."""
    if method.name not in v.scores:
        timer = StageTimer(backend.device)
        with timer.stage("scoring"):
            scores = method_scores(backend, method, v.prefix, v.inputs[0], v.seed)
        v.scores[method.name] = (scores, timer.get("scoring"))
    scores, score_s = v.scores[method.name]
    timer = StageTimer(backend.device)
    vp = visual_pass(backend, v.inputs[0], setting.keep, method, v.seed, cfg.attention_bias, timer,
                     prefix=v.prefix, scores=scores)
    times = {**v.times, **_pass_times(timer, "vit_suffix", "connector"), "scoring": score_s + timer.get("scoring")}
    shared = _shared(v, "decode_video", "preprocess", "vit_prefix", "scoring", per_question=("vit_suffix", "connector"))
    assert vp.keep_mask is not None
    gens = _answers(backend, [v.inputs[i] for i in sel], vp, cfg.max_new_tokens)
    return _outcomes(gens, times, vp.keep_mask.cpu().numpy(), shared, vp, scorer_used=method.name,
                     stats=score_stats(scores), seed=v.seed, frames_used=list(range(v.inputs[0].num_frames)),
                     notes=notes)


def _run_after_vit(backend: VideoBackend, v: _Video, method: Method, setting: Setting, sel: list[int],
                   cfg: AnalysisSettings) -> list[Outcome]:
    """A visual- or llm-stage method: the unpruned vision side (shared with the baseline), then the
    method's selection over the connector's tokens (visual) or inside the LLM (llm)."""
    full, pass_times = _full_pass(backend, v, cfg)
    vp, times = full, {**v.times, **pass_times}
    if method.stage == "visual":
        timer = StageTimer(backend.device)
        with timer.stage("scoring"):
            scores, keep = visual_selection(method, full.visual, v.inputs[0], setting.keep, v.seed,
                                            backend.llm_hidden_size)
        prune = None if bool(keep.all()) else keep
        visual = full.visual if prune is None else full.visual[prune.reshape(-1)]
        vp = VisualPass(prefix=full.prefix, scores=scores, keep_mask=keep, prune=prune, visual=visual,
                        suffix_tokens=full.suffix_tokens, vit_tokens=full.vit_tokens)
        times["scoring"] = timer.get("scoring")
    shared = _shared(v, "decode_video", "preprocess", "vit_prefix", "vit_suffix", "connector")
    t, g = v.inputs[0].num_frames, int(v.inputs[0].groups.shape[0])
    keep_np = vp.keep_mask.cpu().numpy() if vp.keep_mask is not None else np.ones((t, g), dtype=bool)
    gens = _answers(backend, [v.inputs[i] for i in sel], vp, cfg.max_new_tokens, method, setting.keep)
    return _outcomes(gens, times, keep_np, shared, vp, scorer_used=method.name, stats=score_stats(vp.scores),
                     seed=v.seed, frames_used=list(range(t)), notes=[])


def _run_frames(backend: VideoBackend, v: _Video, setting: Setting, sel: list[int], cfg: AnalysisSettings
                ) -> list[Outcome]:
    """round(keep x T) uniformly spaced frames of the decoded ones, nothing pruned. Inputs are cached per
    frame count (two keep ratios can round to the same count)."""
    t = v.sampled.frames.shape[0]
    positions = frame_positions(t, setting.keep)
    if len(positions) not in v.subsets:
        inputs, _, times = _prepare(backend, subsample(v.sampled, positions), v.questions, prefix=False)
        v.subsets[len(positions)] = (inputs, times)
    inputs, times = v.subsets[len(positions)]
    timer = StageTimer(backend.device)
    vp = visual_pass(backend, inputs[0], 1.0, None, v.seed, cfg.attention_bias, timer)
    times = {"decode_video": v.times["decode_video"], **times,
             **_pass_times(timer, "vit_prefix", "vit_suffix", "connector")}
    keep = frame_keep_mask(t, int(inputs[0].groups.shape[0]), setting.keep).numpy()
    shared = _shared(v, "decode_video", per_question=("preprocess", "vit_prefix", "vit_suffix", "connector"))
    gens = _answers(backend, [inputs[i] for i in sel], vp, cfg.max_new_tokens)
    return _outcomes(gens, times, keep, shared, vp, scorer_used="frames", stats=None, seed=v.seed,
                     frames_used=[int(p) for p in positions], notes=[])


@torch.no_grad()
def _setting_outcomes(backend: VideoBackend, v: _Video, setting: Setting, sel: list[int], cfg: AnalysisSettings
                      ) -> list[Outcome]:
    """The rows of one setting: the baseline, or the method at its stage (never by its name)."""
    if setting.is_baseline:
        return _run_baseline(backend, v, sel, cfg)
    used, notes = resolve_scorer(backend, setting.scorer)
    method = get_method(used)
    if method.stage == "frames":
        return _run_frames(backend, v, setting, sel, cfg)
    if method.stage == "vit":
        return _run_vit(backend, v, method, setting, sel, cfg, notes)
    return _run_after_vit(backend, v, method, setting, sel, cfg)


@dataclass
class _Group:
    """The examples that share one video and span (decoded and run through the ViT once), or one bad example."""

    ordinal: int  # the video's number in the dataset: its random-scorer seed is settings.seed + ordinal
    examples: list[Example]


def group_by_video(examples: Iterable[Example]) -> list[_Group]:
    groups: dict[tuple[str, str], _Group] = {}
    for ex in examples:
        key = ("error", ex.id) if ex.error is not None or ex.path is None else ("video", str(ex.path), ex.span)
        if key not in groups:
            groups[key] = _Group(len(groups), [])
        groups[key].examples.append(ex)
    return list(groups.values())


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(err, ValueError) and message else f"{type(err).__name__}: {message}".rstrip(": ")


def _group_rows(backend: VideoBackend, group: _Group, todo: dict[str, list[Setting]], cfg: AnalysisSettings,
                baselines: dict[str, str], keep: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """Rows for the settings still to do of one group's examples; a failure turns every row not yet
    produced into an error row and the batch goes on."""
    exs = [e for e in group.examples if todo.get(e.id)]
    produced: set[tuple[str, str]] = set()
    try:
        if exs and (exs[0].error is not None or exs[0].path is None):
            raise ValueError(exs[0].error or "No video file is named in this row.")
        if not exs:
            return
        style = prompt_style(backend) if any(e.is_choice for e in exs) else None
        prompts = [prompt_for(backend, e, style) for e in exs]
        video = _open_video(backend, exs[0].path, prompts, cfg, cfg.seed + group.ordinal, exs[0].span)
        keep["video"] = video
        for setting in cfg.settings():
            sel = [i for i, e in enumerate(exs) if setting in todo[e.id]]
            if not sel:
                continue
            for i, out in zip(sel, _setting_outcomes(backend, video, setting, sel, cfg), strict=True):
                out.notes = video.notes + out.notes
                out.prompt = prompts[i]
                row = outcome_row(exs[i], setting, out, baselines.get(exs[i].id))
                if setting.is_baseline:
                    baselines[exs[i].id] = answer_key(row)
                produced.add((exs[i].id, setting.key))
                yield row
    except Exception as err:  # noqa: BLE001 - any failure is recorded on its rows; the batch goes on
        message = _one_line(err)
        for e in exs:
            for setting in todo[e.id]:
                if (e.id, setting.key) not in produced:
                    yield error_row(e, setting, message)


def _keep_thumbs(group: _Group, video: _Video | None, rows: dict[str, list[dict[str, Any]]],
                 thumbs: dict[str, Thumb], out_dir: Path | None) -> None:
    if video is None:
        return
    thumb = None
    for ex in group.examples:
        if flagged(rows.get(ex.id, [])):
            thumb = thumb or make_thumb(video.sampled.frames, video.inputs[0])
            thumbs[ex.id] = thumb
            if out_dir is not None:
                save_thumb(out_dir, ex.id, thumb)


def _work(backend: VideoBackend, groups: list[_Group], cfg: AnalysisSettings, done: dict[tuple[str, str], Any],
          store: Store | None, bar: Any, progress: ProgressFn | None) -> tuple[list[dict[str, Any]], dict, int]:
    plan = cfg.settings()
    baselines = {k[0]: answer_key(r) for k, r in done.items() if k[1] == BASELINE}
    new_rows: list[dict[str, Any]] = []
    thumbs: dict[str, Thumb] = {}
    total, finished, failed, computed = sum(len(g.examples) for g in groups), 0, 0, 0
    if progress is not None:
        progress(0, total, "starting")
    for group in groups:
        todo = {e.id: [s for s in plan if (e.id, s.key) not in done] for e in group.examples}
        computed += sum(bool(t) for t in todo.values())
        keep: dict[str, Any] = {}
        by_id: dict[str, list[dict[str, Any]]] = {}
        for key, row in done.items():
            if key[0] in todo:
                by_id.setdefault(key[0], []).append(row)
        for row in _group_rows(backend, group, todo, cfg, baselines, keep):
            new_rows.append(row)
            by_id.setdefault(row["id"], []).append(row)
            failed += bool(row.get("error"))
            if store is not None:
                store.write(row)
        _keep_thumbs(group, keep.get("video"), by_id, thumbs, store.dir if store else None)
        finished += len(group.examples)
        bar.update(len(group.examples))
        bar.set_postfix(failed_rows=failed, refresh=False)
        if progress is not None:
            progress(finished, total, f"{finished}/{total} examples")
    return new_rows, thumbs, computed


def run_analysis(
    backend: VideoBackend,
    examples: Sequence[Example],
    settings: AnalysisSettings | None = None,
    out_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    show_bar: bool = False,
    report: bool = True,
    model_name: str | None = None,
    rank: int = 0,
    world: int = 1,
) -> Analysis:
    """Run the baseline and every setting on every example; see the module docstring.

    With ``out_dir``: rows stream to results.jsonl (a rerun skips rows there), then summary.csv and
    (``report``) report.html are written. ``progress(done, total, text)`` is called after each video.
    Under torchrun (``world`` > 1) this rank takes every world-th video and rank 0 merges after a barrier.
    """
    from tqdm import tqdm

    cfg = (settings or AnalysisSettings()).validated()
    if world > 1 and out_dir is None:
        raise ValueError("Sharding across processes needs an output folder to merge the ranks' rows in.")
    start = time.perf_counter()
    store = Store(Path(out_dir), rank, world) if out_dir is not None else None
    if store is not None:
        store.check_manifest(cfg.manifest(model_name or backend.source))
    done = store.done() if store is not None else {}
    groups = group_by_video(examples)[rank::world]
    bar = tqdm(total=sum(len(g.examples) for g in groups), unit="ex", desc="analyze", disable=not show_bar,
               dynamic_ncols=True, smoothing=0.05, file=sys.stderr)
    try:
        new_rows, thumbs, computed = _work(backend, groups, cfg, done, store, bar, progress)
    finally:
        bar.close()
        if store is not None:
            store.close()
    backend.warm = True
    mine = sum(len(g.examples) for g in groups)
    if world > 1:
        print(f"rank {rank}: {mine} examples, {len(new_rows)} rows computed", file=sys.stderr)
    counts = _total((computed, len(new_rows)), world)  # also the barrier before rank 0 merges
    if rank != 0:
        return Analysis(new_rows, [], cfg, mine, len(new_rows), time.perf_counter() - start, thumbs,
                        store.dir if store is not None else None, computed)
    plan = cfg.settings()
    every = store.merge(plan) if store is not None else ordered(dedupe(new_rows).values(), plan)
    wanted = {(e.id, s.key) for e in examples for s in plan}
    rows = [r for r in every if (r["id"], r["setting"]) in wanted]
    summary = summarize(rows, plan)
    result = Analysis(rows, summary, cfg, len(examples), counts[1], time.perf_counter() - start, thumbs,
                      store.dir if store is not None else None, counts[0], benchmarks=benchmark_cells(rows, plan))
    if store is not None:
        _write_outputs(store.dir, result, examples, report, model_name or backend.source)
    return result


def _write_outputs(out_dir: Path, result: Analysis, examples: Sequence[Example], report: bool, model: str) -> None:
    """summary.csv (plus the benchmark cells), paper_table.csv and the lmms-eval sample logs of a benchmark
    run, and report.html."""
    write_summary(out_dir / SUMMARY, [*result.summary, *result.benchmarks])
    if result.benchmarks:
        write_paper_table(out_dir / PAPER_TABLE, result.benchmarks)
        result.exports = write_lmms_samples(out_dir, result.rows, examples)
    if report:
        from stts_core.analysis.report import write_report

        write_report(out_dir / REPORT, result, model)


def run_settings_for(row: dict[str, Any], settings: AnalysisSettings, run_baseline: bool = False) -> RunSettings:
    """The `pipeline.run` settings that reproduce one results row from its video (the single-video view
    opening a flip). A baseline row becomes keep 1 (nothing pruned) with its run_baseline off."""
    t = int(row["keep_mask"]["shape"][0]) if row.get("keep_mask") else settings.num_frames
    common = {"max_new_tokens": settings.max_new_tokens, "seed": int(row.get("seed") or 0),
              "attention_bias": settings.attention_bias, "num_frames": t}
    if row["setting"] == BASELINE:
        return RunSettings(keep_ratio=1.0, scorer="random", run_baseline=False, **common)
    return RunSettings(keep_ratio=float(row["keep"]), scorer=row["scorer"], run_baseline=run_baseline, **common)


def compare_naive(backend: VideoBackend, examples: Sequence[Example], settings: AnalysisSettings,
                  count: int) -> dict[str, Any]:
    """Time the shared path against one `pipeline.run` per example and setting (same seeds, frames and
    tokens) on the first `count` usable examples, and check that both give the same answers."""
    from stts_core.pipeline import run

    cfg = settings.validated()
    chosen = [e for e in examples if e.error is None][:count]
    if not chosen:
        return {}
    start = time.perf_counter()
    shared = run_analysis(backend, chosen, cfg)
    shared_s = time.perf_counter() - start
    good = [r for r in shared.rows if not r.get("error")]
    start = time.perf_counter()
    same = sum(run(backend, r["path"], r.get("prompt") or r["question"], run_settings_for(r, cfg), cfg.limits).stts.answer
               == r["answer"] for r in good)
    naive_s = time.perf_counter() - start
    return {"examples": len(chosen), "videos": len(group_by_video(chosen)), "settings": len(cfg.settings()),
            "shared_s": shared_s, "naive_s": naive_s, "speedup": naive_s / max(shared_s, 1e-9),
            "saving": 1.0 - shared_s / max(naive_s, 1e-9), "same_answers": same, "answers_compared": len(good),
            "failed_rows": len(shared.rows) - len(good)}


def _total(values: tuple[int, ...], world: int) -> tuple[int, ...]:
    """Counts summed over every rank (rank 0 reports the whole run); a collective, so also a barrier."""
    if world <= 1:
        return values
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, values)
    return tuple(sum(int(p[i]) for p in parts) for i in range(len(values)))


def _broadcast(value: Any, world: int) -> Any:
    """Rank 0's value on every rank."""
    if world <= 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


