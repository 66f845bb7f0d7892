"""Where a model name becomes a backend: a checkpoint or hub id (`load_backend`), or a preset's
architecture with random weights (`backend_from_preset`, for training from scratch and timing)."""

from __future__ import annotations

from pathlib import Path

import torch

from stts_core.models.base import ModelLoadError, VideoBackend

DEFAULT_MODEL = str(Path(__file__).resolve().parents[2] / "assets" / "stts-tiny")

__all__ = ["DEFAULT_MODEL", "ModelLoadError", "backend_from_preset", "load_backend"]


def load_backend(model: str = DEFAULT_MODEL, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, trust_remote_code: bool = False) -> VideoBackend:
    """The one place a model id or path becomes a backend (Molmo2 is the family supported today).

    Raises ModelLoadError with one readable sentence when the model cannot be loaded."""
    from stts_core.models.molmo2.backend import load_molmo2

    return load_molmo2(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


def backend_from_preset(preset: str, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
                        seed: int = 0) -> VideoBackend:
    """A preset's architecture with random weights and a tokenizer over the synthetic world's words.

    Timing does not depend on weight values, so the bench times full-size architectures this way;
    training from scratch starts here too."""
    from stts_core.data.synthetic import VOCABULARY
    from stts_core.models.molmo2.backend import Molmo2Backend
    from stts_core.models.molmo2.build import PRESETS, build_model, build_processor, build_tokenizer

    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}.")
    tokenizer = build_tokenizer(VOCABULARY)
    net = build_model(preset, tokenizer, seed=seed, dtype=dtype, device=device or "cpu")
    processor = build_processor(tokenizer, PRESETS[preset]["image_size"])
    return Molmo2Backend(net, processor, source=f"preset:{preset}")
