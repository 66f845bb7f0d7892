"""stts_core: Spatio-Temporal Token Scoring (STTS) for video VLMs.

The method modules (scoring, selection, packing, losses) know nothing about any model family;
backends adapt a concrete model; the pipeline composes both into one timed run.

The front door::

    from stts_core import RunSettings, load_backend, run

    backend = load_backend()  # the built-in model; or a checkpoint folder / hub id
    result = run(backend, "clip.mp4", "what moves ?", RunSettings(keep_ratio=0.5))
    print(result.stts.answer, result.baseline.answer, result.ttft_speedup)
"""

from stts_core.methods.budget import (
    attention_bias,
    groups_to_patch_mask,
    kept_group_count,
    select_groups,
    validate_keep_ratio,
)
from stts_core.methods.losses import AUX_LOSS_WEIGHT, group_patch_features, temporal_aux_loss, temporal_redundancy
from stts_core.methods.packing import PackedLayout, first_fit_decreasing, pack, packed_attention, unpack
from stts_core.methods.scorers import SCORER_KINDS, TokenScorer, heuristic_scores, random_scores
from stts_core.models.base import ModelLoadError, VideoBackend
from stts_core.models.loading import DEFAULT_MODEL, backend_from_preset, load_backend
from stts_core.pipeline.request import RunResult, RunSettings, run

__all__ = [
    "AUX_LOSS_WEIGHT",
    "DEFAULT_MODEL",
    "ModelLoadError",
    "PackedLayout",
    "RunResult",
    "RunSettings",
    "SCORER_KINDS",
    "TokenScorer",
    "VideoBackend",
    "attention_bias",
    "backend_from_preset",
    "first_fit_decreasing",
    "group_patch_features",
    "groups_to_patch_mask",
    "heuristic_scores",
    "kept_group_count",
    "load_backend",
    "pack",
    "packed_attention",
    "random_scores",
    "run",
    "select_groups",
    "temporal_aux_loss",
    "temporal_redundancy",
    "unpack",
    "validate_keep_ratio",
]
