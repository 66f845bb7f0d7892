"""The registry of model families. A family is detected from a checkpoint's ``config.model_type`` and
hands over one bundle (`ModelFamily`): how to load it, its presets, where its scorer and parameter
groups live, its optional serving paths, what a "frame" is. Loading, training, scorer fitting and the
bench reach a family only through its bundle.

Family packages register on import and keep that import cheap: what needs transformers' modeling
code is imported inside the bundle's functions.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stts_core.models.base import ModelLoadError, VideoBackend

# The family packages shipped with stts_core, imported (and so registered) on first use.
BUILTIN_FAMILIES = ("stts_core.models.molmo2", "stts_core.models.qwen3_vl", "stts_core.models.qwen2_5_vl",
                    "stts_core.models.qwen3_5")


@dataclass(frozen=True)
class ModelFamily:
    """One family's bundle."""

    name: str  # "molmo2"
    label: str  # "Molmo2", for people
    model_types: tuple[str, ...]  # config.model_type values it claims
    load: Callable[..., VideoBackend]  # (source, device=, dtype=, trust_remote_code=) -> backend
    from_preset: Callable[..., VideoBackend]  # (preset, device=, dtype=, seed=) -> backend with random weights
    tiny_checkpoint: Callable[..., Path]  # (out_dir, preset=test_preset, words=(), seed=0) -> saved checkpoint
    presets: tuple[str, ...]  # architecture presets from_preset builds
    scorer_prefix: str  # parameter-name prefix of the STTS scorer (scorer fitting trains only these)
    vision_prefixes: tuple[str, ...]  # the vision side's parameters (ViT, connector, scorer)
    constant_prefixes: tuple[str, ...] = ()  # vision parameters whose 1-D entries may stay frozen from scratch
    test_preset: str = "micro"  # the smallest preset: the contract tests run it
    frame_unit: str = "frame"  # what one row of a keep mask is ("temporal patch" for Qwen-VL)
    frames_per_unit: int = 1
    serving: Callable[..., Any] | None = None  # install(backend, serving="eager", prefill="sdpa")
    serving_choices: tuple[str, ...] = ("eager",)
    prefill_choices: tuple[str, ...] = ("sdpa",)
    capabilities: frozenset[str] = field(default_factory=frozenset)
    gpu_base_s: float = 20.0  # ZeroGPU slot for one run (both models): a fixed part ...
    gpu_per_frame_s: float = 0.75  # ... plus a part per sampled frame
    # Multiple-choice prompt style (stts_core.data.benchmarks.prompts); None: the style registered under the
    # family's name if there is one (molmo2, qwen3_vl), else lmms-eval's default prompts.
    mc_prompt: str | None = None

    def gpu_seconds(self, num_frames: int, runs: int = 1) -> float:
        return runs * (self.gpu_base_s + self.gpu_per_frame_s * num_frames)


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add a family; its preset names and model types must not collide with another family's."""
    for other in _FAMILIES.values():
        if other.name == family.name:
            if other == family:
                return family
            raise ValueError(f"A model family named {family.name!r} is already registered.")
        clash = set(other.model_types) & set(family.model_types) or set(other.presets) & set(family.presets)
        if clash:
            raise ValueError(f"{family.name!r} claims {sorted(clash)}, already {other.name!r}'s.")
    if family.test_preset not in family.presets:
        raise ValueError(f"{family.name!r}: its test preset {family.test_preset!r} is not one of its presets.")
    _FAMILIES[family.name] = family
    return family


def _load_builtin() -> None:
    for module in BUILTIN_FAMILIES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def list_families() -> list[ModelFamily]:
    _load_builtin()
    return list(_FAMILIES.values())


def get_family(name: str) -> ModelFamily:
    _load_builtin()
    if name not in _FAMILIES:
        raise ValueError(f"Unknown model family {name!r}; choose one of {', '.join(_FAMILIES)}.")
    return _FAMILIES[name]


def family_of(backend: VideoBackend) -> ModelFamily:
    """The bundle of the family a backend belongs to (its ``name``)."""
    return get_family(backend.name)


def family_for_model_type(model_type: str | None) -> ModelFamily:
    """The family that claims ``model_type``, or a ModelLoadError naming the supported ones."""
    for family in list_families():
        if model_type in family.model_types:
            return family
    supported = ", ".join(f"{t} ({f.label})" for f in _FAMILIES.values() for t in f.model_types)
    raise ModelLoadError(f"This checkpoint's model type is {model_type!r}, which STTS Studio does not support; "
                         f"supported: {supported}.")


def family_for_preset(preset: str) -> ModelFamily:
    for family in list_families():
        if preset in family.presets:
            return family
    names = ", ".join(sorted(p for f in _FAMILIES.values() for p in f.presets))
    raise ValueError(f"Unknown preset {preset!r}; choose one of {names}.")


def read_model_type(source: str, trust_remote_code: bool = False, local_files_only: bool | None = None) -> str | None:
    """``model_type`` from a checkpoint folder's config.json or a hub id's (no model code runs)."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        config = folder / "config.json"
        if not config.is_file():
            raise ModelLoadError(f"Could not load the model {source!r}: the folder has no config.json.")
        try:
            return json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (ValueError, UnicodeDecodeError, AttributeError) as err:
            raise ModelLoadError(f"Could not load the model {source!r}: its config.json is not valid JSON "
                                 f"({str(err).splitlines()[0]}).") from None
    from transformers import PretrainedConfig

    local = os.path.isdir(source) if local_files_only is None else local_files_only
    try:
        config, _ = PretrainedConfig.get_config_dict(source, local_files_only=local, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"Could not load the model {source!r}: {str(err).splitlines()[0]}") from err
    return config.get("model_type")
