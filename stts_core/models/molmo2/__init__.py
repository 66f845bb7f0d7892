"""Molmo2 (transformers' native `Molmo2ForConditionalGeneration`): the family the STTS paper built on.

Modules: `modeling` (the stock model plus the scorer), `backend` (stage-by-stage STTS), `checkpoint`
(loading, reference scorer weights), `build` (presets, tokenizers, tiny checkpoints), `serving`
(opt-in static-cache / compiled decoding and span-mask prefill).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stts_core.models.registry import ModelFamily, register_family

PRESETS = ("micro", "tiny", "tiny-168", "tiny-252", "cpu-mid", "molmo2-4b")
SCORER_PREFIX = "temporal_token_scorer."
VISION_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.", SCORER_PREFIX)
CONSTANT_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.")
SERVING_CHOICES = ("eager", "static", "compiled")  # the bench's --serving: eager = the stock loop
PREFILL_MODES = ("sdpa", "flex")


def _load(source: str, device: Any = None, dtype: torch.dtype | None = None, trust_remote_code: bool = False,
          **kwargs: Any) -> Any:
    from stts_core.models.molmo2.checkpoint import load_molmo2

    return load_molmo2(source, device=device, dtype=dtype, trust_remote_code=trust_remote_code, **kwargs)


def _from_preset(preset: str, device: Any = None, dtype: torch.dtype = torch.float32, seed: int = 0) -> Any:
    from stts_core.data.synthetic import VOCABULARY
    from stts_core.models.molmo2.backend import Molmo2Backend
    from stts_core.models.molmo2.build import PRESETS as SHAPES
    from stts_core.models.molmo2.build import build_model, build_processor, build_tokenizer

    tokenizer = build_tokenizer(VOCABULARY)
    net = build_model(preset, tokenizer, seed=seed, dtype=dtype, device=device or "cpu")
    processor = build_processor(tokenizer, SHAPES[preset]["image_size"])
    return Molmo2Backend(net, processor, source=f"preset:{preset}")


def _tiny_checkpoint(out_dir: str | Path, preset: str = "micro", words: tuple[str, ...] | list[str] = (),
                     seed: int = 0) -> Path:
    from stts_core.models.molmo2.build import build_random_checkpoint

    return build_random_checkpoint(out_dir, preset, words, seed)


def _serving(backend: Any, serving: str = "eager", prefill: str = "sdpa") -> Any:
    from stts_core.models.molmo2.serving import install

    return install(backend, serving, prefill)


FAMILY = register_family(ModelFamily(
    name="molmo2", label="Molmo2", model_types=("molmo2",), load=_load, from_preset=_from_preset,
    tiny_checkpoint=_tiny_checkpoint, presets=PRESETS, scorer_prefix=SCORER_PREFIX,
    vision_prefixes=VISION_PREFIXES, constant_prefixes=CONSTANT_PREFIXES,
    serving=_serving, serving_choices=SERVING_CHOICES, prefill_choices=PREFILL_MODES,
))
