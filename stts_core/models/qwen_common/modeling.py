"""What a Qwen-VL checkpoint stores about STTS (`config.stts`) and the scorer every Qwen family owns.

The family's modeling class subclasses the stock transformers class only to own the scorer as the
submodule `temporal_token_scorer`, so `save_pretrained` / `from_pretrained` round-trip its weights
(safetensors) and the settings; stock transformers still loads such a checkpoint (it ignores the
scorer). No STTS weights exist for the published Qwen checkpoints: loaded from the hub, the scorer is
missing and the pipeline scores with the heuristic instead (and says so).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from stts_core.methods.scorers import TokenScorer

SCORER_PREFIX = "temporal_token_scorer."


def relative_scoring_layer(num_vit_layers: int) -> int:
    """Block k at the paper's relative depth (3 of 27), leaving at least two later blocks."""
    return max(0, min(round(num_vit_layers * 3 / 27), num_vit_layers - 3))


@dataclass
class QwenSTTSSettings:
    """`config.stts` of a Qwen-VL checkpoint."""

    layer: int  # k: scores after this ViT block; block k + 1 carries the key bias and must attend over temporal patches
    keep_ratio: float = 0.5
    scorer_hidden: int | None = None
    detach_scorer_input: bool = False  # stop-gradient between block k and the scorer
    aux_loss: str = "mse"  # the auxiliary loss's form the scorer was trained with (losses.AUX_LOSS_FORMS)
    frame_pixels: int | None = None  # pin every frame to about this many pixels (tiny checkpoints, timing presets)

    @classmethod
    def from_config(cls, config: Any, default_layer: Callable[[Any], int],
                    check_layer: Callable[[Any, int], None]) -> QwenSTTSSettings:
        raw = dict(getattr(config, "stts", None) or {})
        layer = int(raw.get("layer", default_layer(config)))
        check_layer(config, layer)
        pixels = raw.get("frame_pixels")
        return cls(layer=layer, keep_ratio=float(raw.get("keep_ratio", 0.5)), scorer_hidden=raw.get("scorer_hidden"),
                   detach_scorer_input=bool(raw.get("detach_scorer_input", False)),
                   aux_loss=str(raw.get("aux_loss", "mse")), frame_pixels=int(pixels) if pixels else None)


def attach_scorer(model: nn.Module, default_layer: Callable[[Any], int],
                  check_layer: Callable[[Any, int], None]) -> None:
    """Record the settings in `model.config.stts` and give the model its scorer (ViT width, ViT heads)."""
    settings = QwenSTTSSettings.from_config(model.config, default_layer, check_layer)
    model.config.stts = asdict(settings)
    vision = model.config.vision_config
    model.temporal_token_scorer = TokenScorer(vision.hidden_size, vision.num_heads, settings.scorer_hidden)
