"""stts_core: Spatio-Temporal Token Scoring (STTS) for video VLMs.

The method modules (scoring, selection, packing, losses) know nothing about any model family;
backends adapt a concrete model; the pipeline composes both into one timed run.
"""

from stts_core.losses import AUX_LOSS_WEIGHT, group_patch_features, temporal_aux_loss, temporal_redundancy
from stts_core.packing import PackedLayout, first_fit_decreasing, pack, packed_attention, unpack
from stts_core.scoring import SCORER_KINDS, TokenScorer, heuristic_scores, random_scores
from stts_core.selection import (
    attention_bias,
    groups_to_patch_mask,
    kept_group_count,
    select_groups,
    validate_keep_ratio,
)

__all__ = [
    "AUX_LOSS_WEIGHT",
    "PackedLayout",
    "SCORER_KINDS",
    "TokenScorer",
    "attention_bias",
    "first_fit_decreasing",
    "group_patch_features",
    "groups_to_patch_mask",
    "heuristic_scores",
    "kept_group_count",
    "pack",
    "packed_attention",
    "random_scores",
    "select_groups",
    "temporal_aux_loss",
    "temporal_redundancy",
    "unpack",
    "validate_keep_ratio",
]
