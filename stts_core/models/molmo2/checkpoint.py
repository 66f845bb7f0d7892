"""Loading a Molmo2 checkpoint for STTS: our own scorer weights, or reference-named ones converted."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoProcessor

from stts_core.methods.scorers import TokenScorer
from stts_core.models.base import ModelLoadError
from stts_core.models.molmo2 import SCORER_PREFIX
from stts_core.models.molmo2.backend import Molmo2Backend
from stts_core.models.molmo2.modeling import Molmo2ForSTTS

REFERENCE_SCORER_MARK = "temporal_token_scorer."


def convert_reference_scorer(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map scorer weights named like the reference implementation onto ours.

    Any key `<anything>.temporal_token_scorer.{patch_token_pooler.{wq,wk,wv,wo},mlp.{w1,w2,w3}}.{weight,bias}`
    becomes `temporal_token_scorer.<same tail>`; other keys are ignored.
    """
    allowed = {f"patch_token_pooler.{w}" for w in ("wq", "wk", "wv", "wo")} | {f"mlp.{w}" for w in ("w1", "w2", "w3")}
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if REFERENCE_SCORER_MARK not in key:
            continue
        tail = key.split(REFERENCE_SCORER_MARK, 1)[1]
        module, _, param = tail.rpartition(".")
        if module not in allowed or param not in ("weight", "bias"):
            raise ValueError(f"Unrecognised scorer weight {key!r} (expected pooler wq/wk/wv/wo or mlp w1/w2/w3).")
        out[SCORER_PREFIX + tail] = value
    return out


def _checkpoint_files(source: str, local_files_only: bool) -> list[Path]:
    if os.path.isdir(source):
        return sorted(Path(source).glob("*.safetensors"))
    from huggingface_hub import snapshot_download

    root = snapshot_download(source, allow_patterns=["*.safetensors"], local_files_only=local_files_only)
    return sorted(Path(root).glob("*.safetensors"))


def _reference_scorer_weights(source: str, local_files_only: bool) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    found: dict[str, torch.Tensor] = {}
    for file in _checkpoint_files(source, local_files_only):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open handles are not iterable
                if REFERENCE_SCORER_MARK in key:
                    found[key] = f.get_tensor(key)
    return convert_reference_scorer(found)


def _install_scorer(model: Molmo2ForSTTS, weights: dict[str, torch.Tensor]) -> None:
    """Load converted scorer weights, resizing the MLP's hidden width to the checkpoint's."""
    hidden = weights[SCORER_PREFIX + "mlp.w1.weight"].shape[0]
    vision = model.config.vision_config
    if hidden != model.temporal_token_scorer.mlp.w1.out_features:
        model.temporal_token_scorer = TokenScorer(vision.hidden_size, vision.num_attention_heads, hidden)
        model.config.stts["scorer_hidden"] = hidden
    scorer_state = {k[len(SCORER_PREFIX) :]: v for k, v in weights.items()}
    try:
        model.temporal_token_scorer.load_state_dict(scorer_state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"The checkpoint's scorer weights do not fit this model: {err}") from err
    model.temporal_token_scorer.to(device=model.device, dtype=model.dtype)


def _prepare_processor(processor: Any) -> Any:
    vp = processor.video_processor
    # Processors built from defaults leave these unset, which would feed raw 0-255 pixels to the ViT.
    if getattr(vp, "do_rescale", None) is None:
        vp.do_rescale = True
    if getattr(vp, "do_normalize", None) is None:
        vp.do_normalize = True
    return processor


def load_molmo2(
    source: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
    local_files_only: bool | None = None,
    attention_impl: str = "auto",
) -> Molmo2Backend:
    """Load a Molmo2 checkpoint (hub id or local directory) with its processor, ready for STTS.

    bf16 on CUDA and float32 on the CPU by default; SDPA attention. A checkpoint without scorer
    weights of ours is searched for reference-named ones; with none, `has_learned_scorer` is False
    and the pipeline falls back to the heuristic scorer.
    """
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    local = os.path.isdir(source) if local_files_only is None else local_files_only
    try:
        model, info = Molmo2ForSTTS.from_pretrained(
            source,
            dtype=dtype,
            attn_implementation="sdpa",
            output_loading_info=True,
            trust_remote_code=trust_remote_code,
            local_files_only=local,
        )
        processor = _prepare_processor(
            AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code, local_files_only=local)
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"Could not load the model {source!r}: {str(err).splitlines()[0]}") from err
    model.to(dev).eval()
    missing = [k for k in info.get("missing_keys", []) if k.startswith(SCORER_PREFIX)]
    has_scorer = not missing
    if not has_scorer:
        reference = _reference_scorer_weights(source, local)
        if reference:
            _install_scorer(model, reference)
            has_scorer = True
    return Molmo2Backend(model, processor, source=source, has_learned_scorer=has_scorer,
                         attention_impl=attention_impl)
