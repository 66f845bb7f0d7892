"""stts_core: Spatio-Temporal Token Scoring (STTS) and the peer token-reduction methods for video VLMs.

Packages, one job each (data flows down the list): `data` (video decoding, question tables, the
synthetic world), `methods` (the method registry, budget and key bias, packing, scorers, losses; no
model code), `models` (the backend contract, the family registry, one folder per family), `pipeline`
(one request end to end, every stage timed), `train`, `analysis` (batch runs, metrics, report, bench,
OOD check) and `cli` (the `stts` command).

The front door::

    from stts_core import RunSettings, load_backend, run, select_tokens

    backend = load_backend()  # the built-in model; or a checkpoint folder / hub id of a listed family
    result = run(backend, "clip.mp4", "what moves ?", RunSettings(keep_ratio=0.5))
    print(result.stts.answer, result.baseline.answer, result.ttft_speedup)

    mask = select_tokens("heuristic", features, keep_ratio=0.3)  # features (T, G, D) -> (T, G) bool
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
from stts_core.methods.registry import Method, get_method, list_methods, method_names, register_method, select_tokens
from stts_core.methods.scorers import TokenScorer, heuristic_scores, random_scores
from stts_core.models.base import ModelLoadError, VideoBackend
from stts_core.models.loading import DEFAULT_MODEL, backend_from_preset, load_backend
from stts_core.models.registry import ModelFamily, get_family, list_families, register_family
from stts_core.pipeline import RunResult, RunSettings, run

__all__ = [
    "AUX_LOSS_WEIGHT",
    "DEFAULT_MODEL",
    "Method",
    "ModelFamily",
    "ModelLoadError",
    "PackedLayout",
    "RunResult",
    "RunSettings",
    "TokenScorer",
    "VideoBackend",
    "attention_bias",
    "backend_from_preset",
    "first_fit_decreasing",
    "get_family",
    "get_method",
    "group_patch_features",
    "groups_to_patch_mask",
    "heuristic_scores",
    "kept_group_count",
    "list_families",
    "list_methods",
    "load_backend",
    "method_names",
    "pack",
    "packed_attention",
    "random_scores",
    "register_family",
    "register_method",
    "run",
    "select_groups",
    "select_tokens",
    "temporal_aux_loss",
    "temporal_redundancy",
    "unpack",
    "validate_keep_ratio",
]
