"""The fewer-frames baseline: sample round(keep x T) of the T frames uniformly and prune nothing, so
the LLM gets the same number of visual tokens as pruning at that keep ratio (whole frames only)."""

from __future__ import annotations

import numpy as np
import torch

from stts_core.data.sampling import uniform_subset
from stts_core.methods.budget import validate_keep_ratio


def frame_count(num_frames: int, keep_ratio: float) -> int:
    """round(keep x T) frames, at least one and at most T."""
    validate_keep_ratio(keep_ratio)
    return min(num_frames, max(1, round(keep_ratio * num_frames)))


def frame_positions(num_frames: int, keep_ratio: float) -> np.ndarray:
    """Which of T decoded frames the method keeps (the decoder's uniform rule, `data.sampling`)."""
    return uniform_subset(num_frames, frame_count(num_frames, keep_ratio))


def frame_keep_mask(num_frames: int, groups_per_frame: int, keep_ratio: float) -> torch.Tensor:
    """(T, G) mask over the T frames: every group of a chosen frame, nothing of the others."""
    keep = torch.zeros(num_frames, groups_per_frame, dtype=torch.bool)
    keep[torch.from_numpy(frame_positions(num_frames, keep_ratio))] = True
    return keep
