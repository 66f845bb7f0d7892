"""Where a model name becomes a backend: a checkpoint or hub id (`load_backend`, dispatched by the
checkpoint's ``config.model_type`` through the family registry), or a preset's architecture with
random weights (`backend_from_preset`, for training from scratch and timing)."""

from __future__ import annotations

from pathlib import Path

import torch

from stts_core.models.base import ModelLoadError, VideoBackend
from stts_core.models.registry import family_for_model_type, family_for_preset, read_model_type

DEFAULT_MODEL = str(Path(__file__).resolve().parents[2] / "assets" / "stts-tiny")

__all__ = ["DEFAULT_MODEL", "ModelLoadError", "backend_from_preset", "dtype_for", "load_backend", "resolve_device"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device asked for, or cuda when available, else cpu."""
    if device is not None and str(device).strip():
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dtype_for(name: str | None, device: str | torch.device | None) -> torch.dtype:
    """The one precision rule: the named dtype (bf16 / fp16 / fp32), else bf16 on CUDA and fp32 elsewhere."""
    if name is not None:
        return DTYPES[name]
    return torch.bfloat16 if resolve_device(device).type == "cuda" else torch.float32


def load_backend(model: str = DEFAULT_MODEL, device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None, trust_remote_code: bool = False) -> VideoBackend:
    """The one place a model id or path becomes a backend: the family claiming its ``model_type``
    loads it. Raises ModelLoadError with one readable sentence when the model cannot be loaded,
    including a checkpoint of a family STTS Studio does not support."""
    if not isinstance(model, (str, Path)) or not str(model).strip():
        raise ModelLoadError("Give a model: a checkpoint folder or a Hugging Face hub id.")
    source = str(model).strip()
    family = family_for_model_type(read_model_type(source, trust_remote_code))
    return family.load(source, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


def backend_from_preset(preset: str, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
                        seed: int = 0) -> VideoBackend:
    """A preset's architecture with random weights and a tokenizer over the synthetic world's words.

    Timing does not depend on weight values, so the bench times full-size architectures this way;
    training from scratch starts here too. The preset's name picks its family."""
    return family_for_preset(preset).from_preset(preset, device=device, dtype=dtype, seed=seed)
