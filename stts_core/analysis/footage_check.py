"""`stts footage`: does a scorer keep what moves in a real video? Motion from optical flow, not labels.

Real footage has no ground-truth motion masks, so the frames the model sees (sampled by the app's
decoder, resized to the model's input like its processor does) get dense optical flow between each
frame and the one before (Farneback, OpenCV). A pixel moves when its flow is at least `FLOW_PX` pixels
of the model's input; a group of frame t >= 1 is "moving" when at least `MOVING_FRACTION` of its pixels
move. Camera motion moves every group, as the flow says. Per vit-stage method it reports the recall of
moving groups at the keep ratio (`select_groups`, the pipeline's own selection), its ratio to chance
(the share of prunable groups kept) and to the heuristic scorer's recall, and the AUC of the scores
(`analysis.ood`'s tally). Nothing here is used for training.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from stts_core.analysis.ood import ScorerTally, group_motion
from stts_core.data.video import load_video
from stts_core.methods.budget import select_groups
from stts_core.methods.registry import get_method
from stts_core.models.base import VideoBackend
from stts_core.pipeline.visual import method_scores

FLOW_PX = 1.0  # flow magnitude, in pixels of the model's input, from which a pixel counts as moving
MOVING_FRACTION = 0.1  # share of a group's pixels that must move


def flow_motion(frames: np.ndarray, size: tuple[int, int], flow_px: float = FLOW_PX) -> np.ndarray:
    """(T, H, W) bool at the model's input size (H, W): pixels whose Farneback flow from the previous
    frame is at least `flow_px` (frame 0: nothing moves)."""
    h, w = size
    grey = [cv2.cvtColor(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY) for f in frames]
    motion = np.zeros((len(grey), h, w), dtype=bool)
    for t in range(1, len(grey)):
        flow = cv2.calcOpticalFlowFarneback(grey[t - 1], grey[t], None, pyr_scale=0.5, levels=3, winsize=15,
                                            iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
        motion[t] = np.hypot(flow[..., 0], flow[..., 1]) >= flow_px
    return motion


def _input_size(backend: VideoBackend, inputs) -> tuple[int, int]:
    """The model's input frame size in pixels (its patch grid times the patch size)."""
    rows, cols = inputs.patch_grid
    patch = int(getattr(backend.model.config.vision_config, "patch_size", 14))
    return rows * patch, cols * patch


@torch.no_grad()
def footage_check(backend: VideoBackend, video: str | Path, scorers: list[str], num_frames: int = 16,
                  keep_ratio: float = 0.3, seed: int = 0) -> dict:
    """Per scorer: the AUC and the recall of optical-flow-moving groups at `keep_ratio` on one video
    (with ratios to chance and to the heuristic), and the share of prunable groups that move."""
    sampled = load_video(video, num_frames)
    inputs = backend.prepare(sampled.frames, "what moves ?", sampled.metadata())
    motion = flow_motion(sampled.frames, _input_size(backend, inputs))
    labels = group_motion(motion, *inputs.grid)
    prefix = backend.vit_prefix(inputs)
    out: dict = {"video": str(video), "frames": int(inputs.num_frames), "keep": keep_ratio,
                 "moving_share": float(labels[1:].mean()), "flow_px": FLOW_PX, "moving_fraction": MOVING_FRACTION}
    for name in scorers:
        scores = method_scores(backend, get_method(name), prefix, inputs, seed)
        tally = ScorerTally([])
        tally.add(scores.detach().float().cpu().numpy(), select_groups(scores, keep_ratio).cpu().numpy(), labels)
        out[name] = tally.summary()
    base = out.get("heuristic", {}).get("recall")
    for name in scorers:
        recall = out[name]["recall"]
        out[name]["recall_over_heuristic"] = recall / base if base and recall is not None else None
    return out


def table(results: list[dict], scorers: list[str]) -> str:
    """One markdown row per video and scorer."""
    lines = ["| video | moving groups | scorer | AUC | recall at keep | x chance | x heuristic |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for name in scorers:
            s = r[name]

            def fmt(x: float | None, pattern: str) -> str:
                return "-" if x is None else pattern.format(x)

            lines.append(f"| {Path(r['video']).name} | {r['moving_share']:.0%} | {name} | {fmt(s['auc'], '{:.3f}')} | "
                         f"{fmt(s['recall'], '{:.1%}')} | {fmt(s['recall_over_chance'], '{:.2f}x')} | "
                         f"{fmt(s.get('recall_over_heuristic'), '{:.2f}x')} |")
    return "\n".join(lines)
