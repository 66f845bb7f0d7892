"""The stock Molmo2 plus the STTS scorer (`Molmo2ForSTTS`) and the STTS settings a checkpoint stores.

`save_pretrained` / `from_pretrained` round-trip the scorer's weights (safetensors) and `config.stts`;
stock transformers still loads such a checkpoint (it ignores the scorer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from transformers import Molmo2ForConditionalGeneration

from stts_core.methods.scorers import TokenScorer


def default_scoring_layer(num_vit_layers: int) -> int:
    """Block k after which to score: 3 in Molmo2's 25-27-layer ViT, the same relative depth in
    smaller ones, and always early enough that at least one later block runs packed."""
    k = round(num_vit_layers * 3 / 27)
    return max(0, min(k, num_vit_layers - 3))


@dataclass
class STTSSettings:
    """What a checkpoint stores about STTS (in `config.stts`)."""

    layer: int
    keep_ratio: float = 0.5
    scorer_hidden: int | None = None
    refill_lonely_frames: bool = True  # packing.refill_lonely_frames in the packed blocks (the reference's rule)
    detach_scorer_input: bool = False  # stop-gradient between block k and the scorer (the reference has none)
    aux_loss: str = "mse"  # the auxiliary loss's form the scorer was trained with (losses.AUX_LOSS_FORMS)

    @classmethod
    def from_config(cls, config: Any) -> STTSSettings:
        raw = dict(getattr(config, "stts", None) or {})
        num_layers = config.vision_config.num_hidden_layers
        layer = int(raw.get("layer", default_scoring_layer(num_layers)))
        if not 0 <= layer <= num_layers - 2:
            raise ValueError(f"STTS scoring layer {layer} must leave at least one ViT block after it.")
        return cls(layer=layer, keep_ratio=float(raw.get("keep_ratio", 0.5)), scorer_hidden=raw.get("scorer_hidden"),
                   refill_lonely_frames=bool(raw.get("refill_lonely_frames", True)),
                   detach_scorer_input=bool(raw.get("detach_scorer_input", False)),
                   aux_loss=str(raw.get("aux_loss", "mse")))


class Molmo2ForSTTS(Molmo2ForConditionalGeneration):
    """The stock Molmo2 plus the STTS scorer as a named submodule (`temporal_token_scorer`)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        settings = STTSSettings.from_config(config)
        config.stts = asdict(settings)
        vision = config.vision_config
        self.temporal_token_scorer = TokenScorer(vision.hidden_size, vision.num_attention_heads, settings.scorer_hidden)
