"""One Qwen family's registry bundle from the names of its modules: each Qwen family (Qwen3-VL,
Qwen2.5-VL, Qwen3.5) differs only in its modeling, backend and build modules, its presets and its
ZeroGPU estimate. The modules are imported when a loader first runs, so registering stays cheap."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from stts_core.models.registry import ModelFamily

SCORER_PREFIX = "temporal_token_scorer."
VISION_PREFIXES = ("model.visual.", SCORER_PREFIX)


def _part(package: str, module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"{package}.{module}"), name)


def qwen_family(name: str, label: str, package: str, model_class: str, backend_class: str,
                presets: tuple[str, ...], gpu_per_frame_s: float) -> ModelFamily:
    """The bundle of the Qwen family in `package` (e.g. "stts_core.models.qwen3_vl"), whose modeling module
    defines `model_class` and whose backend module defines `backend_class`; its first preset is the test one."""

    def load(source: str, device: Any = None, dtype: torch.dtype | None = None, trust_remote_code: bool = False,
             **kwargs: Any) -> Any:
        from stts_core.models.qwen_common.checkpoint import load_qwen

        return load_qwen(_part(package, "modeling", model_class), _part(package, "backend", backend_class), source,
                         device=device, dtype=dtype, trust_remote_code=trust_remote_code, **kwargs)

    def from_preset(preset: str, device: Any = None, dtype: torch.dtype = torch.float32, seed: int = 0) -> Any:
        from stts_core.data.synthetic import VOCABULARY
        from stts_core.models.qwen_common.build import build_tokenizer

        tokenizer = build_tokenizer(VOCABULARY)
        net = _part(package, "build", "build_model")(preset, tokenizer, seed=seed, dtype=dtype, device=device or "cpu")
        processor = _part(package, "build", "build_processor")(tokenizer, preset)
        return _part(package, "backend", backend_class)(net, processor, source=f"preset:{preset}")

    def tiny_checkpoint(out_dir: str | Path, preset: str = presets[0], words: tuple[str, ...] | list[str] = (),
                        seed: int = 0) -> Path:
        return _part(package, "build", "build_random_checkpoint")(out_dir, preset, words, seed)

    return ModelFamily(
        name=name, label=label, model_types=(name,), load=load, from_preset=from_preset,
        tiny_checkpoint=tiny_checkpoint, presets=presets, scorer_prefix=SCORER_PREFIX,
        vision_prefixes=VISION_PREFIXES, constant_prefixes=("model.visual.",), test_preset=presets[0],
        frame_unit="temporal patch", frames_per_unit=2, gpu_base_s=20.0,
        gpu_per_frame_s=gpu_per_frame_s,  # estimates: not measured on ZeroGPU yet
    )
