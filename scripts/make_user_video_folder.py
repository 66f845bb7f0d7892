"""Write a small "user" dataset for `python -m stts_core.analyze --data FOLDER`: real and synthetic
clips in several containers, one damaged file, and a questions.csv with and without gold answers.

    python scripts/make_user_video_folder.py runs/user_videos
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

from stts_core.data.synthetic import SPLIT_SEEDS, make_clip
from stts_core.data.video_encode import write_video

REPO = Path(__file__).resolve().parent.parent


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, ext in enumerate((".mp4", ".webm", ".mkv", ".mp4")):
        clip = make_clip(SPLIT_SEEDS["test"] + 500 + i)
        name = f"clip_{i}{ext}"
        write_video(out / name, clip.frames, fps=8.0)
        rows += [{"video": name, "question": qa.question, "answer": qa.answer, "type": qa.qtype} for qa in clip.qas]
    real = REPO / "assets" / "examples" / "bigbuckbunny_360p.mp4"
    if real.exists():
        shutil.copy(real, out / "bunny.mp4")
        rows += [{"video": "bunny.mp4", "question": q, "answer": "", "type": "open"}
                 for q in ("what color is the moving object ?", "how many objects are there at the end ?")]
    good = (out / "clip_0.mp4").read_bytes()
    (out / "damaged.mp4").write_bytes(good[: len(good) // 3])  # cut off mid-stream, as a failed upload would be
    rows.append({"video": "damaged.mp4", "question": "what shape is the moving object ?", "answer": "circle",
                 "type": "moving_shape"})
    with (out / "questions.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["video", "question", "answer", "type"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{out}: {len(rows)} questions")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/user_videos"))
