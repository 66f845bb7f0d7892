"""Qwen3.5 (transformers' native `Qwen3_5ForConditionalGeneration`, no remote code): Qwen3-VL's ViT without DeepStack, a hybrid linear / full-attention LLM.

Modules: `modeling` (the stock model plus the scorer), `backend` (stage-by-stage STTS, Qwen3-VL's stages),
`build` (presets, processors, tiny checkpoints). What the Qwen families share is in
`stts_core.models.qwen_common`. A mask row is a temporal patch (two frames fused by the patch embedding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stts_core.models.registry import ModelFamily, register_family

PRESETS = ("qwen3.5-micro", "qwen3.5-tiny")
SCORER_PREFIX = "temporal_token_scorer."
VISION_PREFIXES = ("model.visual.", SCORER_PREFIX)


def _load(source: str, device: Any = None, dtype: torch.dtype | None = None, trust_remote_code: bool = False,
          **kwargs: Any) -> Any:
    from stts_core.models.qwen3_5.backend import Qwen3_5Backend
    from stts_core.models.qwen3_5.modeling import Qwen3_5ForSTTS
    from stts_core.models.qwen_common.checkpoint import load_qwen

    return load_qwen(Qwen3_5ForSTTS, Qwen3_5Backend, source, device=device, dtype=dtype,
                     trust_remote_code=trust_remote_code, **kwargs)


def _from_preset(preset: str, device: Any = None, dtype: torch.dtype = torch.float32, seed: int = 0) -> Any:
    from stts_core.data.synthetic import VOCABULARY
    from stts_core.models.qwen3_5.backend import Qwen3_5Backend
    from stts_core.models.qwen3_5.build import build_model, build_processor
    from stts_core.models.qwen_common.build import build_tokenizer

    tokenizer = build_tokenizer(VOCABULARY)
    net = build_model(preset, tokenizer, seed=seed, dtype=dtype, device=device or "cpu")
    return Qwen3_5Backend(net, build_processor(tokenizer, preset), source=f"preset:{preset}")


def _tiny_checkpoint(out_dir: str | Path, preset: str = "qwen3.5-micro", words: tuple[str, ...] | list[str] = (),
                     seed: int = 0) -> Path:
    from stts_core.models.qwen3_5.build import build_random_checkpoint

    return build_random_checkpoint(out_dir, preset, words, seed)


FAMILY = register_family(ModelFamily(
    name="qwen3_5", label="Qwen3.5", model_types=("qwen3_5",), load=_load, from_preset=_from_preset,
    tiny_checkpoint=_tiny_checkpoint, presets=PRESETS, scorer_prefix=SCORER_PREFIX, vision_prefixes=VISION_PREFIXES,
    constant_prefixes=("model.visual.",), test_preset="qwen3.5-micro", frame_unit="temporal patch",
    frames_per_unit=2, gpu_base_s=20.0, gpu_per_frame_s=0.6,  # estimates: not measured on ZeroGPU yet
))
