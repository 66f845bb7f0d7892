"""Files the app writes: uploads converted to browser-playable MP4, the masks video, the download bundle.

Everything goes to one folder per process (under GRADIO_TEMP_DIR when set, else the system temp dir);
request folders older than `MAX_AGE_S` are deleted whenever a new one is made, and the whole folder at exit.
"""

from __future__ import annotations

import atexit
import csv
import ctypes
import ctypes.util
import io
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from app import render
from stts_core.data.video import VideoError, VideoFile, VideoLimits, open_video

MAX_AGE_S = 2 * 3600
PLAYABLE = {("mp4", "h264"), ("mp4", "av1"), ("webm", "vp8"), ("webm", "vp9"), ("webm", "av1")}
MAX_CONVERT_SIDE = 1280
_ROOT: Path | None = None
_ROOT_LOCK = threading.Lock()


def work_dir() -> Path:
    """This process's folder for written files (created on first use, removed at exit)."""
    global _ROOT
    with _ROOT_LOCK:
        if _ROOT is None:
            parent = os.environ.get("GRADIO_TEMP_DIR") or None  # beside Gradio's own files when it has a folder
            if parent:
                Path(parent).mkdir(parents=True, exist_ok=True)
            _ROOT = Path(tempfile.mkdtemp(prefix="stts-studio-", dir=parent))
            atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
        return _ROOT


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def release_memory() -> None:
    """Give the freed pages of a run's decoded frames back to the OS (glibc keeps them per worker thread
    otherwise, so the process would grow by one run's frames for every thread that served a run)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def new_folder(max_age_s: float = MAX_AGE_S) -> Path:
    """A fresh subfolder for one request's files; older request folders are purged first."""
    root = work_dir()
    cutoff = time.time() - max_age_s
    for old in root.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue
    folder = root / uuid.uuid4().hex[:12]
    folder.mkdir()
    return folder


def is_playable(info: dict[str, Any]) -> bool:
    """True for containers and codecs every current browser plays in a <video> element."""
    container = str(info.get("container", "")).split(",")
    family = "mp4" if "mp4" in container or "mov" in container else ("webm" if "webm" in container else "")
    return (family, str(info.get("codec", ""))) in PLAYABLE


def _even_size(width: int, height: int, max_side: int = MAX_CONVERT_SIDE) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


CONVERTED_MARK = "STTS Studio: converted for the browser player from "


def converted_from(info: dict) -> str | None:
    """The source codec of an MP4 that `convert_to_mp4` wrote (gradio hands back a copy under another
    path, so the file's own metadata is what tells), else None."""
    comment = str(info.get("comment") or "")
    return comment.removeprefix(CONVERTED_MARK) if comment.startswith(CONVERTED_MARK) else None


def convert_to_mp4(source: str | Path, limits: VideoLimits) -> Path:
    """Re-encode any readable video (GIF, AVI, MKV, ...) as H.264 MP4 with its own frame timing.

    The content is checked first (`open_video`), so a bad file raises VideoError with a sentence.
    """
    with open_video(source, limits) as video:
        width, height = _even_size(int(video.info["width"]), int(video.info["height"]))
        fps = float(video.info["fps"] or 8.0)
        codec = str(video.info["codec"])
    out = new_folder() / (Path(source).stem[:60] + ".mp4")
    time_base = Fraction(1, 1000)
    try:
        with av.open(str(source), options={"protocol_whitelist": "file"}) as src, av.open(str(out), "w") as dst:
            dst.metadata["comment"] = CONVERTED_MARK + codec  # the player's copy says what it was made from
            stream_in = src.streams.video[0]
            stream = dst.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                    options={"crf": "20", "preset": "veryfast"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.time_base = time_base
            last = -1
            for i, frame in enumerate(src.decode(stream_in)):
                pts = round(frame.time * 1000) if frame.time is not None else round(i * 1000 / fps)
                pts = max(pts, last + 1)
                last = pts
                picture = frame.reformat(width=width, height=height, format="yuv420p")
                picture.pts, picture.time_base = pts, time_base
                dst.mux(stream.encode(picture))
            dst.mux(stream.encode(None))
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise VideoError("This video could not be converted for the browser player; it may be damaged.") from err
    return out


# ----------------------------------------------------------------------------------------- per-file cache


@dataclass
class OpenClip:
    """A probed upload kept open between the upload check and the run, so Run does not probe it again."""

    video: VideoFile
    stamp: tuple[int, int]  # (size, mtime_ns) of the file when opened
    lock: threading.Lock = field(default_factory=threading.Lock)


class ClipCache:
    """The last few uploads' opened `VideoFile`s by path (bounded; the least recently used is closed)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._clips: OrderedDict[str, OpenClip] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, limits: VideoLimits) -> OpenClip:
        """The opened clip for `path`; opens (checks and probes) it only when new or changed on disk."""
        stat = Path(path).stat() if Path(path).is_file() else None
        stamp = (stat.st_size, stat.st_mtime_ns) if stat else (-1, -1)
        key = f"{path}|{limits!r}"
        with self._lock:
            clip = self._clips.get(key)
            if clip is not None and clip.stamp == stamp:
                self._clips.move_to_end(key)
                return clip
        clip = OpenClip(video=open_video(path, limits), stamp=stamp)
        with self._lock:
            old = self._clips.pop(key, None)
            self._clips[key] = clip
            while len(self._clips) > self.size:
                _, dropped = self._clips.popitem(last=False)
                dropped.video.close()
        if old is not None:
            old.video.close()
        return clip

    def __len__(self) -> int:
        return len(self._clips)


# ------------------------------------------------------------------------------------------ run outputs


def write_masks_video(folder: Path, frames: np.ndarray, keep: np.ndarray, groups: np.ndarray,
                      patch_grid: tuple[int, int], timestamps: np.ndarray) -> Path:
    """original | masked, one sampled frame per step, H.264 MP4 at a pace that shows every frame;
    encoded picture by picture (PyAV)."""
    out = folder / "stts_masks.mp4"
    fps = 4 if len(frames) <= 32 else 8
    try:
        with av.open(str(out), "w") as container:
            stream = None
            for i, picture in enumerate(render.side_by_side(frames, keep, groups, patch_grid, timestamps)):
                if stream is None:
                    stream = container.add_stream("libx264", rate=fps, options={"crf": "23", "preset": "veryfast"})
                    stream.width, stream.height = picture.shape[1] // 2 * 2, picture.shape[0] // 2 * 2
                    stream.pix_fmt = "yuv420p"
                frame = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(picture[:stream.height, :stream.width]), format="rgb24")
                frame.pts = i
                container.mux(stream.encode(frame))
            if stream is not None:
                container.mux(stream.encode(None))
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise VideoError(f"Could not write the masks video: {err}") from err
    return out


def kept_csv(keep: np.ndarray, timestamps: np.ndarray) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["frame", "timestamp_s", "kept_groups", "pruned_groups"])
    for t, row in enumerate(np.asarray(keep, dtype=bool)):
        writer.writerow([t, f"{float(timestamps[t]):.4f}", int(row.sum()), int((~row).sum())])
    return buf.getvalue()


def write_bundle(folder: Path, details: dict[str, Any], masks_video: Path | None, keep: np.ndarray,
                 timestamps: np.ndarray) -> Path:
    """stts_run.zip: result.json (settings, scores, keep mask, answers, timings), the masks video, kept.csv."""
    out = folder / "stts_run.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("result.json", json.dumps(details, indent=1))
        zf.writestr("kept_per_frame.csv", kept_csv(keep, timestamps))
        if masks_video is not None and masks_video.is_file():
            zf.write(masks_video, "stts_masks.mp4")
    return out
