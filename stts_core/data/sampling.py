"""The one uniform frame-sampling rule: the decoder applies it to a clip's timestamps, the pipeline and
the analysis to frames already decoded, and the ``frames`` method to choose its subset."""

from __future__ import annotations

import numpy as np


def uniform_positions(times: np.ndarray, start: float, end: float, n: int) -> np.ndarray:
    """Positions (into ascending ``times``) of ``n`` distinct frames spread uniformly over ``[start, end)``.

    Targets are the centres of ``n`` equal time slices and each takes the frame nearest in presentation
    time. Collisions, possible with variable frame rate, are pushed to the nearest free neighbour so the
    result never repeats a frame. With ``n >= len(times)`` every frame is returned.
    """
    count = len(times)
    if n >= count:
        return np.arange(count, dtype=np.int64)
    span = max(end - start, 0.0)
    targets = start + (np.arange(n, dtype=np.float64) + 0.5) * (span / n)
    right = np.clip(np.searchsorted(times, targets, side="left"), 1, count - 1)
    left = right - 1
    nearest = np.where(np.abs(times[left] - targets) <= np.abs(times[right] - targets), left, right)
    chosen = nearest.astype(np.int64)
    for k in range(1, n):
        chosen[k] = max(chosen[k], chosen[k - 1] + 1)
    for k in range(n - 1, -1, -1):
        upper = count - n + k if k == n - 1 else chosen[k + 1] - 1
        chosen[k] = min(chosen[k], upper)
    return chosen


def uniform_subset(num_frames: int, n: int) -> np.ndarray:
    """Positions of ``n`` of ``num_frames`` already sampled, equally spaced frames, by the same rule
    (frame i stands for the slice [i, i + 1); ties go to the earlier frame)."""
    return uniform_positions(np.arange(num_frames, dtype=np.float64), 0.0, float(num_frames), max(1, int(n)))
