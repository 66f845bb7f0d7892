"""MVBench (OpenGVLab/MVBench on Hugging Face): 20 tasks of 200 multiple-choice questions on short clips.

Layout (``mvbench:/path/to/MVBench``), as the dataset card's configs name it (``data_files:
json/<task>.json``) and as lmms-eval reads it (``lmms_eval/tasks/mvbench/utils.py``, ``DATA_LIST``):

- ``json/<task>.json``: a list of ``{"video", "question", "candidates", "answer"}`` records (``answer`` is
  the text of one candidate); the time-bounded tasks (action_sequence, action_prediction,
  object_interaction, action_localization, episodic_reasoning) add ``"start"`` and ``"end"`` in seconds.
- the videos, under ``video/<folder>/`` (the zips of the main revision unpacked there) or ``<folder>/``
  (the ``video`` revision lmms-eval downloads), ``data0613/<folder>`` tried as well. Each task's folders
  are tried in order: lmms-eval's (``star/Charades_segment``, ``sta/sta_video_segment``,
  ``tvqa/video_fps3_hq_segment``, ``nturgbd_convert``, ``ssv2_video_mp4``, ...) then those of the original
  evaluation (OpenGVLab/Ask-Anything ``video_chat2/mvbench.ipynb``, repeated in allenai/molmo2
  ``olmo/data/academic_video_datasets.py``: ``star/Charades_v1_480``, ``sta/sta_video``, ``nturgbd``,
  ``ssv2_video``, ``tvqa/frames_fps3_hq``).

A question's ``start``/``end`` become its span (frames are sampled inside it, as the original evaluation
and Molmo2 do) unless its video was found in a ``*_segment`` folder, whose clips are already cut to the
span. Episodic reasoning in ``tvqa/frames_fps3_hq`` is a folder of frames per question: its
``video.mp4`` (which Molmo2's loader builds from the frames at 3 fps) is used when present; a folder
without one is reported for its question. ``--subset`` names tasks (the json files' stems).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stts_core.data.benchmarks.common import (
    check_subset,
    choice_example,
    file_error,
    find_video,
    read_json,
    records_of,
    rel,
)
from stts_core.data.benchmarks.registry import Benchmark, register_benchmark
from stts_core.data.tables import DatasetError, Example

# task -> folders its videos may be in (lmms-eval's first, then the original evaluation's)
TASKS: dict[str, tuple[str, ...]] = {
    "action_sequence": ("star/Charades_segment", "star/Charades_v1_480"),
    "action_prediction": ("star/Charades_segment", "star/Charades_v1_480"),
    "action_antonym": ("ssv2_video_mp4", "ssv2_video"),
    "fine_grained_action": ("Moments_in_Time_Raw/videos",),
    "unexpected_action": ("FunQA_test/test",),
    "object_existence": ("clevrer/video_validation",),
    "object_interaction": ("star/Charades_segment", "star/Charades_v1_480"),
    "object_shuffle": ("perception/videos",),
    "moving_direction": ("clevrer/video_validation",),
    "action_localization": ("sta/sta_video_segment", "sta/sta_video"),
    "scene_transition": ("scene_qa/video",),
    "action_count": ("perception/videos",),
    "moving_count": ("clevrer/video_validation",),
    "moving_attribute": ("clevrer/video_validation",),
    "state_change": ("perception/videos",),
    "fine_grained_pose": ("nturgbd_convert", "nturgbd"),
    "character_order": ("perception/videos",),
    "egocentric_navigation": ("vlnqa",),
    "episodic_reasoning": ("tvqa/video_fps3_hq_segment", "tvqa/frames_fps3_hq"),
    "counterfactual_inference": ("clevrer/video_validation",),
}
SUFFIXES = (".mp4", ".MP4", ".webm", ".avi", ".mkv")
LAYOUT = "json/<task>.json plus the videos under video/ (or the video revision's folders)"


def _folders(root: Path, task: str) -> list[Path]:
    out = []
    for folder in TASKS[task]:
        out += [root / "video" / folder, root / folder, root / "video" / "data0613" / folder, root / "data0613" / folder]
    return out


def _video(root: Path, task: str, name: str) -> tuple[Path | None, bool, str | None]:
    """The question's video, whether it is a pre-cut segment, and why it cannot be used (None: it can)."""
    path = find_video(_folders(root, task), name, SUFFIXES)
    if path is None:
        tried = ", ".join(rel(f, root) for f in _folders(root, task)[:2])
        return None, False, f"Its video '{name}' is in none of {tried} (nor their data0613 copies)."
    if path.is_dir():
        built = path / "video.mp4"
        if built.is_file():
            return built, False, None
        return None, False, (f"Its video '{rel(path, root)}' is a folder of frames; put the clips of "
                             f"{TASKS[task][0]} next to it, or a video.mp4 of the frames inside it.")
    return path, "_segment" in str(path.parent), None


def _span(record: dict[str, Any], segment: bool) -> tuple[float, float] | None:
    if segment or "start" not in record or "end" not in record:
        return None
    try:
        start, end = float(record["start"]), float(record["end"])
    except (TypeError, ValueError):
        return None
    return (start, end) if end > start >= 0 else None


def _question(root: Path, task: str, doc_id: int, record: dict[str, Any]) -> Example:
    candidates = record.get("candidates")
    options = [str(c) for c in candidates] if isinstance(candidates, list) else []
    answer = str(record.get("answer"))
    gold = options.index(answer) if answer in options else None
    name = str(record.get("video") or "")
    path, segment, error = _video(root, task, name) if name else (None, False, None)
    if gold is None and options:
        error = f"Its answer {answer!r} is not one of its candidates."
    return choice_example(benchmark="mvbench", key=f"{task}/{doc_id}", doc_id=doc_id, doc=record, video=name,
                          path=path, question=record.get("question"), options=options, gold=gold, task=task,
                          span=_span(record, segment), error=error)


def read(root: Path, subset: tuple[str, ...]) -> tuple[list[Example], list[str]]:
    """Every task's questions in file order (the tasks in the benchmark's order). A task file that is
    not valid JSON is one failed row naming it; task files that are absent are named in a note (a copy
    may hold only some tasks), or are the error when a task asked for by the subset is absent."""
    if not (root / "json").is_dir():
        raise DatasetError(f"'{root}' has no json/ folder; an MVBench copy holds {LAYOUT}.")
    check_subset(subset, TASKS, "MVBench")
    examples: list[Example] = []
    absent = []
    for task in (t for t in TASKS if not subset or t in subset):
        path = root / "json" / f"{task}.json"
        if not path.exists():
            absent.append(task)
            continue
        try:
            records = records_of(read_json(path, root), rel(path, root))
        except DatasetError as err:
            examples.append(file_error("mvbench", f"{task}/annotation", str(err), task))
            continue
        examples += [_question(root, task, i, dict(r)) for i, r in enumerate(records)]
    if subset and absent:
        raise DatasetError(f"MVBench at '{root}' lacks {', '.join(f'json/{t}.json' for t in absent)}.")
    notes = [f"MVBench at '{root}' has {len(TASKS) - len(absent)} of {len(TASKS)} task files (json/<task>.json); "
             f"absent: {', '.join(absent)}."] if absent else []
    return examples, notes


def lmms_task(ex: Example) -> str:
    return f"mvbench_{ex.task}"


def lmms_target(ex: Example) -> Any:
    return ex.doc.get("answer")  # doc_to_target: "answer", the gold candidate's text


def lmms_metric(ex: Example, response: str, letter: str | None) -> dict[str, Any]:
    """``mvbench_process_results``: the raw prediction, the gold letter, and the 0/1 score (ours: by the
    extracted letter)."""
    return {"mvbench_accuracy": {"pred_answer": response, "gt_answer": ex.answer, "score": int(letter == ex.answer)}}


MVBENCH = register_benchmark(Benchmark(
    name="mvbench", label="MVBench", read=read, layout=LAYOUT, lmms_task=lmms_task, lmms_target=lmms_target,
    lmms_metric=lmms_metric,
))
