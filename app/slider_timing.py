"""`python -m app.slider_timing`: how long one keep-ratio slider move takes to redraw (the 150 ms budget).

Runs the page's own handlers: one full run on a 64-frame synthetic clip, then many slider moves,
each timed twice: the handler alone (selection + mask grid + two figures) and the handler plus the
Gradio post-processing the server does before sending (JPEG encode of the grid, figure JSON).
Without --model it uses a random checkpoint of the built-in model's architecture ("tiny").
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m app.slider_timing", description=__doc__)
    p.add_argument("--model", default=None, help="checkpoint folder (default: a random 'tiny' one)")
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--moves", type=int, default=40)
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="stts-slider-"))
    os.environ.setdefault("GRADIO_TEMP_DIR", str(work / "gradio"))
    try:
        import gradio as gr

        from app.handlers import Handlers
        from app.models import CACHE
        from app.views import warm_up_rendering
        from stts_core.data.synthetic import VOCABULARY, make_clip
        from stts_core.data.video_encode import write_video
        from stts_core.models.molmo2.build import build_random_checkpoint

        model = args.model or str(build_random_checkpoint(work / "tiny", "tiny", words=VOCABULARY))
        clip = make_clip(7, num_frames=args.frames)
        video = str(write_video(work / "clip.mp4", clip.frames, fps=8))
        CACHE.configure(device="cpu")
        handlers = Handlers()
        warm_up_rendering()
        out = handlers.run(video, clip.qas[0].question, model, "learned", args.frames, 0.5, False)
        view = out.view
        image, plot = gr.Image(format="jpeg"), gr.Plot()
        ratios = np.random.default_rng(0).uniform(0.05, 1.0, args.moves)
        handler_ms, total_ms = [], []
        for ratio in ratios:
            start = time.perf_counter()
            moved = handlers.preview(float(ratio), view, video, model, view.key[3], args.frames, False)
            mid = time.perf_counter()
            image.postprocess(moved.masks)
            plot.postprocess(moved.heatmap)
            plot.postprocess(moved.kept_bars)
            end = time.perf_counter()
            handler_ms.append((mid - start) * 1e3)
            total_ms.append((end - start) * 1e3)
        t, g = view.result.keep_mask.shape
        print(f"{t} frames x {g} groups, grid {moved.masks.shape[1]}x{moved.masks.shape[0]} px, {args.moves} moves")
        for name, ms in (("handler", handler_ms), ("handler + gradio postprocess", total_ms)):
            print(f"{name:>30}: median {np.median(ms):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms, max {max(ms):.1f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
