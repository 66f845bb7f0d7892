"""Video input: validation, decoding and uniform frame sampling with PyAV.

Every problem with a user-supplied file surfaces as :class:`VideoError`, whose message is a plain
sentence that can be shown in the UI as is. Decoding never holds more than one full-resolution frame
at a time: sampled frames are downscaled as soon as they are decoded.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from stts_core.data.sampling import uniform_positions
from stts_core.data.timeline import Timeline, apply_timeline, read_timeline
from stts_core.data.video_guard import AV_ERRORS, Deadline, VideoError, fmt_bytes, fmt_seconds

__all__ = [
    "SampledVideo",
    "VideoFile",
    "VideoError",
    "MAX_FRAMES",
    "VideoLimits",
    "frames_from_array",
    "load_video",
    "open_video",
    "probe_video",
]

MAX_FRAMES = 512  # the one frame limit: a request samples at most this many frames
# Seeking flushes the decoder and refills its thread pipeline; below this gap decoding through is cheaper.
_MIN_SEEK_SKIP = 32
# Only local files: playlists or concat lists must not make FFmpeg open other paths or URLs.
_OPEN_OPTIONS = {"protocol_whitelist": "file"}


@dataclass(frozen=True)
class VideoLimits:
    """Bounds that keep a single request from exhausting memory or time."""

    max_bytes: int = 500 * 1024**2
    max_duration_s: float = 20 * 60
    max_pixels: int = 4096 * 4096
    max_side: int = 768
    min_frames: int = 1
    max_frames: int = MAX_FRAMES
    decode_timeout_s: float = 120.0


@dataclass
class SampledVideo:
    """Frames sampled from one clip plus the metadata a video processor needs to place them in time."""

    frames: np.ndarray
    timestamps: np.ndarray
    indices: np.ndarray
    fps: float
    duration: float
    total_frames: int
    width: int
    height: int
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def metadata(self) -> dict[str, Any]:
        """Plain-Python metadata in the shape transformers' ``VideoMetadata`` accepts."""
        return {
            "fps": float(self.fps),
            "duration": float(self.duration),
            "total_num_frames": int(self.total_frames),
            "frames_indices": [int(i) for i in self.indices],
            "width": int(self.width),
            "height": int(self.height),
        }


# ----------------------------------------------------------------------------------------------------------
# helpers


def _looks_like_text(head: bytes) -> bool:
    """True for content that is clearly text (a renamed .txt, HTML, JSON, a playlist), never a video."""
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        # A multi-byte character cut off by the read window is still text.
        if err.start < len(head) - 4:
            return False
        text = head[: err.start].decode("utf-8")
    if not text:
        return False
    printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
    return printable / len(text) > 0.95


def _check_file(path: str | Path, limits: VideoLimits) -> Path:
    """Checks that need only the file system, done before FFmpeg sees any byte."""
    try:
        p = Path(path).expanduser()
    except TypeError as err:
        raise VideoError("No video file was given.") from err
    if not p.exists():
        raise VideoError(f"We could not find the file '{p.name or p}'.")
    if p.is_dir():
        raise VideoError(f"'{p.name}' is a folder, not a video file.")
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            head = fh.read(4096)
    except OSError as err:
        raise VideoError(f"The file '{p.name}' could not be read ({err.strerror or 'access denied'}).") from err
    if size == 0:
        raise VideoError(f"The file '{p.name}' is empty (0 bytes), so there is no video in it.")
    if size > limits.max_bytes:
        raise VideoError(f"The file is too large ({fmt_bytes(size)}); the limit is {fmt_bytes(limits.max_bytes)}.")
    if _looks_like_text(head):
        raise VideoError("This file is not a video we can read (it looks like plain text).")
    return p


def _open(p: Path) -> av.container.InputContainer:
    try:
        return av.open(str(p), mode="r", container_options=_OPEN_OPTIONS, metadata_errors="replace")
    except AV_ERRORS as err:
        raise VideoError(
            "This file could not be opened as a video: it may be damaged or incomplete, "
            "or it is not a video format we can read."
        ) from err


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The first real video stream; cover art attached to audio files does not count as video."""
    attached = av.stream.Disposition.attached_pic
    for stream in container.streams.video:
        if not (stream.disposition & attached):
            return stream
    if container.streams.audio:
        raise VideoError("This file has no video track (it looks like audio only).")
    raise VideoError("This file has no video track.")


def _coded_size(stream: av.video.stream.VideoStream) -> tuple[int, int]:
    """Width and height of the displayed picture before rotation (sample aspect ratio applied)."""
    w, h = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
    if w <= 0 or h <= 0:
        raise VideoError("The video track has no picture size; the file may be damaged or incomplete.")
    sar = stream.sample_aspect_ratio
    if sar is not None and sar > 0 and sar != 1:
        w = max(1, round(w * float(sar)))
    return w, h


def _rotation_from_tag(stream: av.video.stream.VideoStream) -> int:
    """Legacy ``rotate`` tag (clockwise degrees) as a counter-clockwise angle like ``VideoFrame.rotation``."""
    try:
        return -int(float(stream.metadata.get("rotate", 0)))
    except (TypeError, ValueError):
        return 0


def _quarter_turns(rotation_ccw: float) -> int:
    """Counter-clockwise display rotation rounded to quarter turns (the only ones video players honour)."""
    return int(round(rotation_ccw / 90.0)) % 4


def _frame_rotation(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
    rot = int(frame.rotation or 0)
    return rot if rot else _rotation_from_tag(stream)


def _header_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _header_fps(stream: av.video.stream.VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0 and math.isfinite(float(rate)) and float(rate) < 10000:
            return float(rate)
    return None


def _first_frame(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, deadline: Deadline
) -> av.VideoFrame:
    try:
        for packet in container.demux(stream):
            deadline.check()
            for frame in stream.decode(packet):
                return frame
    except AV_ERRORS as err:
        raise VideoError("The video could not be decoded; the file may be damaged or incomplete.") from err
    raise VideoError("No picture could be decoded from this video; the file may be damaged or incomplete.")


def _target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size that fits the longest side into ``max_side`` with the aspect ratio kept (never upscales)."""
    longest = max(width, height)
    if max_side <= 0 or longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _iter_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, deadline: Deadline,
    skipped: list[int] | None = None,
) -> Iterator[av.VideoFrame]:
    """Decoded frames in order; a packet the decoder rejects is stepped over and counted in ``skipped``."""
    for packet in container.demux(stream):
        deadline.check()
        try:
            frames = stream.decode(packet)
        except av.error.InvalidDataError:
            if skipped is None:
                raise
            skipped[0] += 1
            continue
        yield from frames


def _decode_selected(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    timeline: Timeline,
    chosen: np.ndarray,
    deadline: Deadline,
    convert: Callable[[av.VideoFrame], np.ndarray],
    skipped: list[int] | None = None,
) -> list[tuple[int, np.ndarray]]:
    """Decode only what is needed to get the frames at timeline positions ``chosen`` (ascending).

    Decoding runs forward while the next wanted frame is close; when the keyframe before it is more
    than ``_MIN_SEEK_SKIP`` frames ahead it seeks there instead. Short clips and dense sampling are
    therefore read once sequentially, and sparse sampling of a long clip costs about one GOP per frame.
    Returns ``(position, rgb)`` pairs.
    """
    wanted = timeline.pts[chosen]
    key_pos = np.searchsorted(timeline.pts, timeline.key_pts[chosen], side="left")
    out: list[tuple[int, np.ndarray]] = []
    n = len(wanted)
    k = 0
    last_pos = -1
    ordinal = -1
    can_seek = timeline.has_pts
    frames = _iter_frames(container, stream, deadline, skipped)
    while k < n:
        deadline.check()
        if can_seek and int(key_pos[k]) - last_pos > _MIN_SEEK_SKIP:
            try:
                container.seek(int(timeline.key_pts[chosen[k]]), stream=stream, backward=True, any_frame=False)
                frames = _iter_frames(container, stream, deadline, skipped)
                last_pos = int(key_pos[k]) - 1
            except AV_ERRORS:
                can_seek = False
        frame = next(frames, None)
        if frame is None:
            break
        ordinal += 1
        pts = frame.pts if (timeline.has_pts and frame.pts is not None) else ordinal
        last_pos = max(last_pos, int(np.searchsorted(timeline.pts, pts, side="right")) - 1)
        # A frame past the next wanted one means the current target was not found (damaged file):
        # drop that target rather than fill it with a duplicate.
        while k + 1 < n and pts >= wanted[k + 1]:
            k += 1
        if pts >= wanted[k]:
            out.append((int(chosen[k]), convert(frame)))
            k += 1
    return out


def _validate_num_frames(num_frames: Any, limits: VideoLimits) -> int:
    lo, hi = limits.min_frames, limits.max_frames
    ok = isinstance(num_frames, numbers.Integral) and not isinstance(num_frames, bool)
    if not ok or not (lo <= int(num_frames) <= hi):
        raise VideoError(f"The number of frames must be a whole number from {lo} to {hi} (got {num_frames!r}).")
    return int(num_frames)


def _inspect(container: av.container.InputContainer, limits: VideoLimits, deadline: Deadline) -> dict[str, Any]:
    """Header checks plus one decoded frame, which proves the file decodes and carries the rotation."""
    stream = _video_stream(container)
    coded_w, coded_h = _coded_size(stream)
    raw_w, raw_h = int(stream.codec_context.width), int(stream.codec_context.height)
    if raw_w * raw_h > limits.max_pixels:
        raise VideoError(
            f"The video picture is too large ({raw_w}x{raw_h}); the limit is {limits.max_pixels:,} pixels "
            "(width x height)."
        )
    duration = _header_duration(container, stream)
    _check_duration(duration, limits)
    stream.thread_type = "AUTO"
    first = _first_frame(container, stream, deadline)
    rotation = _frame_rotation(first, stream)
    turns = _quarter_turns(rotation)
    width, height = (coded_h, coded_w) if turns % 2 else (coded_w, coded_h)
    fps = _header_fps(stream)
    frames = int(stream.frames or 0)
    if frames <= 0 and duration and fps:
        frames = max(1, round(duration * fps))
    return {
        "fps": fps,
        "duration": duration,
        "total_frames": frames,
        "width": width,
        "height": height,
        "coded_width": coded_w,
        "coded_height": coded_h,
        "rotation": turns * 90,
        "codec": stream.codec_context.name,
        "container": container.format.name,
        "comment": str(container.metadata.get("comment", "")),  # e.g. what a converter wrote about the source
    }


# ----------------------------------------------------------------------------------------------------------
# public API


class VideoFile:
    """One video file, opened once per request: content checked, header probed, packet timeline read,
    then any number of samplings decoded from the same container (each frame count decoded once).

    Use as a context manager, or call ``close``; ``info`` is what ``probe_video`` returns and
    ``skipped_packets`` counts damaged packets that decoding stepped over.
    """

    def __init__(self, path: Path, container: av.container.InputContainer, info: dict[str, Any],
                 timeline: Timeline, limits: VideoLimits) -> None:
        self.path = path
        self.info = info
        self.limits = limits
        self.skipped_packets = 0
        self._container: av.container.InputContainer | None = container
        self._timeline = timeline
        self._samples: dict[Any, SampledVideo] = {}

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def forget_samples(self) -> None:
        """Drop the decoded samplings (keeping the probe and timeline), so a long-lived VideoFile holds
        no frames between requests; the next `sample` decodes again."""
        self._samples.clear()

    def sample(self, num_frames: int, span: tuple[float, float] | None = None) -> SampledVideo:
        """``num_frames`` frames spread uniformly in time (see ``load_video``), over the whole clip or the
        part ``span`` (start, end seconds from the stream start); cached per frame count and span."""
        n = _validate_num_frames(num_frames, self.limits)
        n = min(n, len(self._timeline.pts))
        key: Any = n if span is None else (n, float(span[0]), float(span[1]))
        if key not in self._samples:
            self._samples[key] = self._decode(n) if span is None else self._decode(n, span)
        return self._samples[key]

    def _times(self) -> tuple[np.ndarray, float]:
        """Presentation time of every frame in seconds from the stream start, and the clip's end."""
        timeline, info = self._timeline, self.info
        if timeline.has_pts and info["time_base"] > 0:
            first = int(timeline.pts[0])
            start_pts = info["start_pts"]
            origin = start_pts if (start_pts is not None and start_pts <= first) else first
            times = (timeline.pts - origin).astype(np.float64) * info["time_base"]
            return times, float(timeline.end_pts - origin) * info["time_base"]
        times = timeline.pts.astype(np.float64) / info["fps"]
        return times, len(times) / info["fps"]

    def _decode(self, n: int, span: tuple[float, float] | None = None) -> SampledVideo:
        if self._container is None:
            raise VideoError("The video was already closed.")
        times, end = self._times()
        chosen = uniform_positions(times, float(times[0]), end, n) if span is None else _in_span(times, end, n, span)
        turns = _quarter_turns(self.info["rotation"])
        out_w, out_h = _target_size(self.info["coded_width"], self.info["coded_height"], self.limits.max_side)

        # Each decoded frame is written straight into one preallocated array, so the peak stays at the
        # sampled frames plus one frame in flight (a list of frames stacked at the end would hold two copies).
        shape = (out_h, out_w) if turns % 2 == 0 else (out_w, out_h)
        buffer = np.empty((len(chosen), *shape, 3), dtype=np.uint8)
        filled = [0]

        def convert(frame: av.VideoFrame) -> np.ndarray:
            rgb = frame.reformat(width=out_w, height=out_h, format="rgb24", interpolation="AREA").to_ndarray()
            slot = buffer[filled[0]]
            slot[...] = np.rot90(rgb, turns) if turns else rgb
            filled[0] += 1
            return slot

        deadline = Deadline(self.limits.decode_timeout_s)
        container = self._container
        stream = _video_stream(container)
        _rewind(container, stream)
        counter = [0]
        try:
            decoded = _decode_selected(container, stream, self._timeline, chosen, deadline, convert, counter)
        except AV_ERRORS as err:
            raise VideoError("The video could not be decoded; the file may be damaged or incomplete.") from err
        self.skipped_packets = max(self.skipped_packets, counter[0])
        if not decoded:
            raise VideoError("No picture could be decoded from this video; the file may be damaged or incomplete.")
        got = np.asarray([pos for pos, _ in decoded], dtype=np.int64)
        info = self.info
        return SampledVideo(
            frames=buffer if filled[0] == len(buffer) else buffer[: filled[0]].copy(),
            timestamps=times[got].astype(np.float64), indices=got,
            fps=float(info["fps"]), duration=float(info["duration"]), total_frames=int(info["total_frames"]),
            width=int(info["width"]), height=int(info["height"]),
            extra={"rotation": info["rotation"], "codec": info["codec"], "container": info["container"],
                   "skipped_packets": self.skipped_packets, "timestamps": info.get("timestamps", "stream")},
        )


def _in_span(times: np.ndarray, end: float, n: int, span: tuple[float, float]) -> np.ndarray:
    """The uniform rule applied to the frames inside ``span`` (clipped to the clip); a span that holds no
    frame (past the end, or shorter than a frame) takes the frame nearest its middle."""
    start = min(max(float(span[0]), float(times[0])), end)
    stop = min(max(float(span[1]), start), end)
    inside = np.nonzero((times >= start) & (times < stop))[0]
    if len(inside) == 0:
        return np.asarray([int(np.argmin(np.abs(times - (start + stop) / 2)))], dtype=np.int64)
    return inside[uniform_positions(times[inside], start, stop, n)]


def _rewind(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> None:
    """Back to the first packet after the timeline scan, so sampling decodes from the start."""
    try:
        container.seek(0, backward=True, any_frame=False)
    except AV_ERRORS as err:
        raise VideoError("The video could not be read again from its start; it may be a live stream.") from err
    stream.codec_context.flush_buffers()


def open_video(path: str | Path, limits: VideoLimits = VideoLimits()) -> VideoFile:
    """Check that ``path`` is a readable video within ``limits``, probe it and read its timeline,
    all from one open container. The content decides, not the file name: FFmpeg probes the bytes, and
    one frame is decoded so a file that opens but cannot be decoded is rejected here rather than
    halfway through a run."""
    p = _check_file(path, limits)
    deadline = Deadline(limits.decode_timeout_s)
    container = _open(p)
    try:
        deadline.check()
        info = _inspect(container, limits, deadline)
        stream = _video_stream(container)
        _rewind(container, stream)
        timeline = read_timeline(container, stream, deadline, info["fps"])
        info["time_base"] = float(stream.time_base) if stream.time_base else 0.0
        info["start_pts"] = stream.start_time
        apply_timeline(info, timeline, info["time_base"])
        _check_duration(info["duration"], limits)
    except BaseException:
        container.close()
        raise
    return VideoFile(p, container, info, timeline, limits)


def probe_video(path: str | Path, limits: VideoLimits = VideoLimits()) -> dict[str, Any]:
    """Check that ``path`` is a readable video within ``limits`` and describe it.

    Returns ``fps`` (float), ``duration`` (seconds), ``total_frames`` (counted from the packets),
    ``width``/``height`` (display size after rotation), ``coded_width``/``coded_height``,
    ``rotation`` (counter-clockwise degrees applied to the pictures: 0, 90, 180 or 270), ``codec`` and
    ``container``.
    """
    with open_video(path, limits) as video:
        return {k: v for k, v in video.info.items() if k not in ("time_base", "start_pts")}


def _check_duration(duration: float | None, limits: VideoLimits) -> None:
    if duration is not None and duration > limits.max_duration_s:
        raise VideoError(
            f"The video is too long ({fmt_seconds(round(duration, 1))}); "
            f"the limit is {fmt_seconds(limits.max_duration_s)}."
        )


def load_video(path: str | Path, num_frames: int, limits: VideoLimits = VideoLimits(),
               span: tuple[float, float] | None = None) -> SampledVideo:
    """Decode ``num_frames`` frames spread uniformly over the clip (or over its part ``span``: start and
    end seconds from the stream start, e.g. the moment a benchmark question is about).

    Sampling is by time: the clip's duration is cut into ``num_frames`` equal slices and the frame
    nearest to each slice centre (by presentation time) is taken. Time rather than ``round(linspace)``
    over frame indices keeps sampling uniform in real time for variable-frame-rate clips, and centres
    rather than end points give each frame an equal share of the clip instead of always spending two
    samples on the first and last frames (often black or a fade). A clip with fewer frames than requested
    yields all of its frames, never duplicates.

    ``indices`` are positions in the decoded (presentation-ordered) frame sequence and ``timestamps`` are
    seconds from the stream start. Frames are RGB uint8, rotated for display and downscaled so the
    longest side is at most ``limits.max_side``. Damaged packets are stepped over and counted in
    ``extra["skipped_packets"]``.
    """
    n = _validate_num_frames(num_frames, limits)
    with open_video(path, limits) as video:
        return video.sample(n, span)


def decoding_notes(sampled: SampledVideo) -> list[str]:
    """What a reader of results from these frames should know about how they were decoded."""
    notes = []
    if sampled.extra.get("skipped_packets"):
        notes.append(f"{sampled.extra['skipped_packets']} damaged packet(s) of the video were skipped while decoding.")
    if sampled.extra.get("timestamps") == "missing":
        notes.append("The video carries no usable timestamps: frames were sampled in decoding order, and the "
                     "times shown are estimates.")
    return notes


def validate_frames(frames: Any) -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        raise VideoError("Frames must be given as a numpy array of shape (frames, height, width, 3).")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoError(
            f"Frames must have shape (frames, height, width, 3) with RGB colour; got shape {frames.shape}."
        )
    if min(frames.shape[:3]) < 1:
        raise VideoError(f"Frames must contain at least one non-empty picture; got shape {frames.shape}.")
    if frames.dtype != np.uint8:
        raise VideoError(f"Frames must be 8-bit (uint8) RGB values; got {frames.dtype}.")
    return frames


def frames_from_array(frames: np.ndarray, fps: float = 8.0) -> SampledVideo:
    """Wrap in-memory RGB frames (T, H, W, 3, uint8) as a clip sampled at ``fps``, so callers that
    already hold pictures (webcam, generated data) take the same path as decoded files."""
    arr = np.ascontiguousarray(validate_frames(frames))
    if not isinstance(fps, numbers.Real) or not math.isfinite(float(fps)) or float(fps) <= 0:
        raise VideoError(f"The frame rate must be a positive number (got {fps!r}).")
    t = arr.shape[0]
    return SampledVideo(
        frames=arr,
        timestamps=np.arange(t, dtype=np.float64) / float(fps),
        indices=np.arange(t, dtype=np.int64),
        fps=float(fps),
        duration=t / float(fps),
        total_frames=t,
        width=int(arr.shape[2]),
        height=int(arr.shape[1]),
    )


