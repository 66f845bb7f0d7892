"""A clip's timeline read from its packets (no decoding): every frame's presentation time, the keyframe
before it, and the span, preferred over what the header claims."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from stts_core.data.video_guard import AV_ERRORS, Deadline, VideoError


@dataclass
class Timeline:
    """Presentation timestamps of every frame, read from packets without decoding them."""

    pts: np.ndarray  # int64, ascending, one per displayed frame
    key_pts: np.ndarray  # int64, pts of the last keyframe at or before each frame
    end_pts: int  # pts just after the last frame (its pts plus its duration)
    has_pts: bool  # False when the stream has no timestamps; pts are then frame ordinals


def read_timeline(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    deadline: Deadline,
    fps_hint: float | None,
) -> Timeline:
    pts_list: list[int] = []
    key_list: list[int] = []
    dur_by_pts: dict[int, int] = {}
    has_pts = True
    try:
        for packet in container.demux(stream):
            deadline.check()
            if packet.size == 0 or packet.is_discard:
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                has_pts = False
                ts = len(pts_list)
            pts_list.append(int(ts))
            if packet.is_keyframe:
                key_list.append(int(ts))
            if packet.duration:
                dur_by_pts[int(ts)] = int(packet.duration)
    except AV_ERRORS as err:
        if not pts_list:
            raise VideoError("The video could not be read; the file may be damaged or incomplete.") from err
        # A damaged tail still leaves the frames before it usable.
    if not pts_list:
        raise VideoError("No picture could be decoded from this video; the file may be damaged or incomplete.")
    if has_pts and len(set(pts_list)) < len(pts_list):
        # Repeated timestamps (e.g. every packet at 0, written by a broken muxer) cannot order the frames;
        # decode order can, and the file plays that way.
        has_pts = False
    if not has_pts:
        pts = np.arange(len(pts_list), dtype=np.int64)
        return Timeline(pts=pts, key_pts=np.zeros_like(pts), end_pts=len(pts), has_pts=False)

    pts = np.unique(np.asarray(pts_list, dtype=np.int64))
    keys = np.unique(np.asarray(key_list or [pts[0]], dtype=np.int64))
    pos = np.searchsorted(keys, pts, side="right") - 1
    key_pts = np.where(pos >= 0, keys[np.clip(pos, 0, None)], pts[0])

    last = int(pts[-1])
    last_dur = dur_by_pts.get(last, 0)
    if last_dur <= 0:
        if len(pts) > 1:
            last_dur = int(np.median(np.diff(pts)))
        elif fps_hint and stream.time_base:
            last_dur = max(1, round(1.0 / (fps_hint * float(stream.time_base))))
        else:
            last_dur = 1
    return Timeline(pts=pts, key_pts=key_pts, end_pts=last + max(1, last_dur), has_pts=True)


# A clip without usable timestamps: a header rate above this is taken as broken, and times assume ASSUMED_FPS.
MAX_PLAUSIBLE_FPS = 240.0
ASSUMED_FPS = 25.0


def apply_timeline(info: dict[str, Any], timeline: Timeline, time_base: float) -> None:
    """Prefer what the packets say over the header: they are exact for frame count and span."""
    count = len(timeline.pts)
    span = 0.0
    if timeline.has_pts and time_base > 0:
        span = float(timeline.end_pts - int(timeline.pts[0])) * time_base
    fps = info["fps"] or (count / span if span > 0 else 1.0)
    info["timestamps"] = "stream" if timeline.has_pts else "missing"
    if not timeline.has_pts and fps > MAX_PLAUSIBLE_FPS:  # the header's rate came from the broken timestamps
        fps = ASSUMED_FPS
    if span <= 0:
        span = count / fps
    info["fps"] = float(fps)
    info["duration"] = span
    info["total_frames"] = count
