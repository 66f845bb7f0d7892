"""Writing frames to a video file (synthetic data, examples, the app's masks video)."""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from stts_core.data.video import validate_frames
from stts_core.data.video_guard import AV_ERRORS, VideoError

_CODECS = {
    ".mp4": ("libx264", "yuv420p"),
    ".m4v": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".webm": ("libvpx-vp9", "yuv420p"),
    ".gif": ("gif", "rgb8"),
}
_CODEC_OPTIONS = {
    "libx264": {"crf": "18"},
    "libvpx-vp9": {"crf": "30", "b": "0", "deadline": "good", "cpu-used": "5"},
}


def write_video(path: str | Path, frames: np.ndarray, fps: float = 8.0, codec: str | None = None) -> Path:
    """Encode RGB frames (T, H, W, 3, uint8) to ``path``; used for synthetic data and examples.

    The codec follows the extension (.mp4/.mov/.mkv: H.264, .webm: VP9, .gif: GIF with a 3-3-2 colour
    palette) unless ``codec`` is given. Odd sizes are padded by repeating the last row/column, since
    4:2:0 chroma needs even dimensions.
    """
    arr = validate_frames(frames)
    if not isinstance(fps, numbers.Real) or not math.isfinite(float(fps)) or float(fps) <= 0:
        raise VideoError(f"The frame rate must be a positive number (got {fps!r}).")
    out = Path(path)
    ext = out.suffix.lower()
    default_codec, pix_fmt = _CODECS.get(ext, (None, "yuv420p"))
    codec = codec or default_codec
    if codec is None:
        raise VideoError(f"Cannot choose a video codec for '{ext or out.name}' files; use .mp4, .webm or .gif.")
    if codec == "gif":
        pix_fmt = "rgb8"
    elif pix_fmt == "rgb8":
        pix_fmt = "yuv420p"
    if pix_fmt == "yuv420p" and (arr.shape[1] % 2 or arr.shape[2] % 2):
        arr = np.pad(arr, ((0, 0), (0, arr.shape[1] % 2), (0, arr.shape[2] % 2), (0, 0)), mode="edge")
    height, width = int(arr.shape[1]), int(arr.shape[2])
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(out), mode="w") as container:
            if codec == "gif":
                # GIF delays are in centiseconds; time the frames in that unit so any fps is honoured.
                time_base = Fraction(1, 100)
                stream = container.add_stream(codec)
                stream.time_base = time_base
                stream.codec_context.time_base = time_base
                pts_of = [round(i * 100 / float(fps)) for i in range(len(arr))]
            else:
                rate = Fraction(float(fps)).limit_denominator(1001)
                stream = container.add_stream(codec, rate=rate, options=_CODEC_OPTIONS.get(codec, {}))
                time_base = 1 / rate
                pts_of = list(range(len(arr)))
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            for i, picture in enumerate(arr):
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts = pts_of[i]
                frame.time_base = time_base
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    except AV_ERRORS as err:
        raise VideoError(f"Could not write the video '{out.name}' with codec {codec}: {err}") from err
    return out
