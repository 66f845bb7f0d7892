"""Input checks of the page and the API: every value a visitor (or a script) sends is checked before any
model work, and every problem is one sentence (a `gr.Error`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from stts_core.data.video import VideoLimits
from stts_core.methods.budget import validate_keep_ratio
from stts_core.pipeline import RunSettings

LIMITS = VideoLimits()  # the library's limits: the app and the CLI accept the same videos
VIDEO_TYPES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
FRAMES_RANGE = (4, 256)
KEEP_RANGE = (0.05, 1.0)
MAX_NEW_TOKENS = 32


def limits_text(limits: VideoLimits = LIMITS) -> str:
    mb = limits.max_bytes / 1024**2
    minutes = limits.max_duration_s / 60
    return (f"Accepted: {', '.join(t[1:] for t in VIDEO_TYPES)}; up to {mb:.0f} MB and {minutes:g} minutes. "
            "Frames are sampled uniformly in time.")


@dataclass
class RunRequest:
    """Checked inputs of one run."""

    path: str
    question: str
    source: str
    settings: RunSettings
    precise: bool


def fail(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def whole_number(value: Any, name: str, lo: int, hi: int) -> int:
    """An API or form value as an int in [lo, hi]; 4.5, NaN, None and text are refused with a sentence."""
    try:
        number = float(value) if not isinstance(value, bool) and value is not None else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or not number.is_integer() or not lo <= number <= hi:
        raise ValueError(f"{name} must be a whole number from {lo} to {hi} (got {shown(value)}).")
    return int(number)


def ratio(value: Any) -> float:
    try:
        number = float(value) if not isinstance(value, bool) and value is not None else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or not KEEP_RANGE[0] <= number <= KEEP_RANGE[1]:
        raise ValueError(f"The keep ratio must be a number from {KEEP_RANGE[0]} to {KEEP_RANGE[1]} "
                         f"(got {shown(value)}).")
    validate_keep_ratio(number)
    return number


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def video_path(video: Any) -> str:
    """The file path of a gr.Video value (a path, or a FileData-like dict from an API call)."""
    if isinstance(video, dict):
        video = video.get("path") or (video.get("video") or {}).get("path")
    if not video or not isinstance(video, str | Path):
        raise fail("Please upload a video (or click one of the examples) first.")
    return str(video)


