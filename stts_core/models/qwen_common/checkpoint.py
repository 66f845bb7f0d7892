"""Loading a Qwen-VL checkpoint (hub id or folder) for STTS, for any Qwen family."""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import AutoProcessor

from stts_core.models.base import ModelLoadError
from stts_core.models.qwen_common.modeling import SCORER_PREFIX


def _processor(source: str, trust_remote_code: bool, local: bool) -> Any:
    processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code, local_files_only=local)
    if not hasattr(processor, "video_processor"):
        raise ValueError("its processor has no video processor")
    return processor


def load_qwen(model_cls: type, backend_cls: type, source: str, device: str | torch.device | None = None,
              dtype: torch.dtype | None = None, trust_remote_code: bool = False, local_files_only: bool | None = None,
              attention_impl: str = "auto") -> Any:
    """The family's model class (stock model + scorer) and its processor, ready for STTS.

    bf16 on CUDA and float32 on the CPU by default; SDPA attention. A checkpoint without scorer weights
    (every published Qwen checkpoint) loads with `has_learned_scorer` False, so the pipeline scores with
    the heuristic and says so."""
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    local = os.path.isdir(source) if local_files_only is None else local_files_only
    try:
        model, info = model_cls.from_pretrained(source, dtype=dtype, attn_implementation="sdpa",
                                                output_loading_info=True, trust_remote_code=trust_remote_code,
                                                local_files_only=local)
        processor = _processor(source, trust_remote_code, local)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"Could not load the model {source!r}: {str(err).splitlines()[0]}") from err
    model.to(dev).eval()
    missing = [k for k in info.get("missing_keys", []) if k.startswith(SCORER_PREFIX)]
    return backend_cls(model, processor, source=source, has_learned_scorer=not missing, attention_impl=attention_impl)
