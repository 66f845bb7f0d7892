"""Tiny copies of the benchmarks in their published layouts, built from synthetic clips: the readers'
tests, the quick runs of the README, and a way to try ``stts analyze --data mvbench:...`` before the real
data is on disk. Field names and nesting are the benchmarks' (see each reader's docstring); the videos
are synthetic clips (`stts_core.data.synthetic`) and the questions are the world's own questions turned
into multiple choice (the gold answer among words of the same kind).

``python -m stts_core.data.benchmarks.fixtures --out DIR`` writes ``DIR/<benchmark>`` for every reader.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stts_core.data.synthetic import ANSWERS, make_clip
from stts_core.data.video_encode import write_video

FPS = 4.0
BASE_SEED = 7_000_000


def _questions(count: int, seed: int, frames: int, size: int, n_options: int
               ) -> list[tuple[np.ndarray, str, list[str], int, str]]:
    """``count`` (frames, question, options, gold index, question type) from synthetic clips, options
    drawn from the answers of the question's type (then the rest of the vocabulary)."""
    out = []
    rng = np.random.default_rng(seed)
    clip_seed = BASE_SEED + seed * 1000
    while len(out) < count:
        clip = make_clip(clip_seed, num_frames=frames, size=size)
        clip_seed += 1
        qa = clip.qas[0]
        same = [a for a in ANSWERS.get(qa.qtype, ()) if a != qa.answer]
        other = sorted({a for words in ANSWERS.values() for a in words} - {qa.answer, *same})
        pool = same + rng.permutation(other).tolist()
        options = [qa.answer, *rng.choice(pool[: max(n_options + 2, 6)], n_options - 1, replace=False).tolist()]
        rng.shuffle(options)
        out.append((clip.frames, qa.question, [str(o) for o in options], options.index(qa.answer), qa.qtype))
    return out


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")


def mvbench(root: Path, per_task: int = 2, frames: int = 8, size: int = 84) -> Path:
    """json/<task>.json + video/<folder>/: action_sequence (time-bounded, full Charades videos: the span
    is applied), action_prediction (bounded, in the video revision's pre-cut ``star/Charades_segment``
    at the top level: no span), object_shuffle and fine_grained_pose."""
    tasks = {"action_sequence": "video/star/Charades_v1_480", "action_prediction": "star/Charades_segment",
             "object_shuffle": "video/perception/videos", "fine_grained_pose": "video/nturgbd_convert"}
    for t, (task, folder) in enumerate(tasks.items()):
        records = []
        for i, (clip, question, options, gold, _) in enumerate(_questions(per_task, t + 1, frames, size, 4)):
            name = f"{task}_{i:03d}.mp4"
            write_video(root / folder / name, clip, fps=FPS)
            record = {"video": name, "question": question, "candidates": options,
                      "answer": options[gold]}
            if task.startswith("action_"):
                record.update(start=0.5, end=round(frames / FPS - 0.25, 2))
            records.append(record)
        _write_json(root / "json" / f"{task}.json", records)
    return root


def videomme(root: Path, per_task: int = 3, frames: int = 8, size: int = 84, parquet: bool = True) -> Path:
    """videomme/test-00000-of-00001.parquet (or test.json without pyarrow) + data/<videoID>.mp4: one video
    per duration class, ``per_task`` questions on each (Video-MME asks three per video)."""
    rows: list[dict[str, Any]] = []
    domains = ("Knowledge", "Film & Television", "Sports Competition")
    tasks = ("Temporal Perception", "Action Recognition", "Counting Problem")
    for v, duration in enumerate(("short", "medium", "long")):
        video_id = f"fx{v:02d}VidMME"
        qs = _questions(per_task, 10 + v, frames, size, 4)
        write_video(root / "data" / f"{video_id}.mp4", qs[0][0], fps=FPS)
        for q, (_, question, options, gold, _) in enumerate(qs):
            rows.append({"video_id": f"{v + 1:03d}", "duration": duration, "domain": domains[v],
                         "sub_category": "Other", "url": f"https://www.youtube.com/watch?v={video_id}",
                         "videoID": video_id, "question_id": f"{v + 1:03d}-{q + 1}", "task_type": tasks[q % 3],
                         "question": question,
                         "options": [f"{chr(65 + i)}. {o}" for i, o in enumerate(options)], "answer": chr(65 + gold)})
    if parquet:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            parquet = False
    if parquet:
        (root / "videomme").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), root / "videomme" / "test-00000-of-00001.parquet")
    else:
        _write_json(root / "videomme" / "test.json", rows)
    return root


def nextqa(root: Path, per_task: int = 3, frames: int = 8, size: int = 84) -> Path:
    """nextqa/test.csv and val.csv (a0..a4) + map_vid_vidorID.json + NExTVideo/<folder>/<video>.mp4."""
    mapping: dict[str, str] = {}
    types = ("CW", "TN", "DC")
    for s, split in enumerate(("test", "val")):
        lines = []
        for i, (clip, question, options, gold, _) in enumerate(_questions(per_task * 2, 20 + s, frames, size, 5)):
            video = str(4_000_000_000 + s * 1000 + i // 2)
            mapping[video] = f"{1000 + s:04d}/{video}"
            path = root / "NExTVideo" / f"{mapping[video]}.mp4"
            if not path.exists():
                write_video(path, clip, fps=FPS)
            lines.append({"video": video, "frame_count": frames, "width": size, "height": size, "question": question,
                          "answer": gold, "qid": i % 2, "type": types[i % 3],
                          **{f"a{k}": o for k, o in enumerate(options)}})
        (root / "nextqa").mkdir(parents=True, exist_ok=True)
        with (root / "nextqa" / f"{split}.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(lines[0]))
            writer.writeheader()
            writer.writerows(lines)
    _write_json(root / "map_vid_vidorID.json", mapping)
    return root


def longvideobench(root: Path, per_task: int = 2, frames: int = 8, size: int = 84, long_frames: int = 64) -> Path:
    """lvb_val.json + videos/<video_path>: questions in the four duration groups, the last group's video
    ``long_frames`` frames long (more than a run samples)."""
    records = []
    categories = ("S2E", "E2O", "T3O")
    for g, group in enumerate((15, 60, 600, 3600)):
        n = long_frames if group == 3600 else frames
        for i, (clip, question, options, gold, _) in enumerate(_questions(per_task, 30 + g, n, size, 4)):
            video_id = f"lvb{g}{i:02d}"
            write_video(root / "videos" / f"{video_id}.mp4", clip, fps=FPS)
            records.append({"video_id": video_id, "question": question, "question_wo_referring_query":
                            question, "candidates": options, "correct_choice": gold, "position": [0],
                            "topic_category": "NP-News-Programs", "question_category": categories[i % 3],
                            "level": "L1-Perception" if i % 2 == 0 else "L2-Relation", "id": f"{video_id}_0",
                            "video_path": f"{video_id}.mp4", "subtitle_path": f"{video_id}_en.json",
                            "duration_group": group, "starting_timestamp_for_subtitles": 0, "duration": n / FPS})
    _write_json(root / "lvb_val.json", records)
    return root


WRITERS: dict[str, Callable[..., Path]] = {"mvbench": mvbench, "videomme": videomme, "nextqa": nextqa,
                                           "longvideobench": longvideobench}


def write_fixtures(out: Path, names: Sequence[str] = tuple(WRITERS), per_task: int | None = None) -> dict[str, Path]:
    """Every named benchmark's tiny copy under ``out/<name>``."""
    kwargs = {} if per_task is None else {"per_task": per_task}
    return {name: WRITERS[name](Path(out) / name, **kwargs) for name in names}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stts_core.data.benchmarks.fixtures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder to write <benchmark>/ copies into")
    p.add_argument("--only", nargs="+", choices=list(WRITERS), default=list(WRITERS))
    p.add_argument("--per-task", type=int, default=None, help="questions per task (or per video / group)")
    args = p.parse_args(argv)
    for name, path in write_fixtures(args.out, args.only, args.per_task).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
