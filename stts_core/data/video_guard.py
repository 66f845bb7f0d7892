"""The errors and bounds of video input: `VideoError` (one sentence a person understands), the PyAV
errors it replaces, and the wall-clock deadline that keeps a pathological file from hanging a worker."""

from __future__ import annotations

import time

import av
import av.error

MB = 1024**2
AV_ERRORS: tuple[type[BaseException], ...] = (av.error.FFmpegError, OSError, EOFError, RuntimeError)


class VideoError(ValueError):
    """The one error type for any unusable video input.

    ``str(err)`` is a sentence a person understands, e.g.
    "This file is not a video we can read (it looks like plain text).", never a traceback.
    """


class Deadline:
    """Wall-clock budget checked between packets and frames, so a pathological file cannot hang a worker."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.end = time.monotonic() + self.seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise VideoError(
                f"Reading the video took longer than {fmt_seconds(self.seconds)}, so it was stopped; "
                "try a shorter or smaller clip."
            )


def fmt_seconds(seconds: float) -> str:
    if seconds >= 60:
        minutes = seconds / 60
        return f"{minutes:g} minute" + ("" if minutes == 1 else "s")
    return f"{seconds:g} second" + ("" if seconds == 1 else "s")


def fmt_bytes(n_bytes: float) -> str:
    if n_bytes >= MB:
        mb = n_bytes / MB
        return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.3g} MB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:.3g} KB"
    return f"{n_bytes:.0f} bytes"
