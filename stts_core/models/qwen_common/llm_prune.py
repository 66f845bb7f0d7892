"""The Qwen-VL families' "llm_prune" capability: their text stack and prompt for the family-independent
LLM-stage pruning (`stts_core.models.llm_prune`, which holds the algorithm).

What is Qwen-VL's own: the visual features *replace* the video placeholder embeddings (as the stock model's
`masked_scatter`); positions are the prompt's 3-D M-RoPE columns (`llm_inputs`' ``position_ids``), decoding
goes on from ``next_position`` on all three axes; one rotary table for every layer, applied by the family's
own `apply_rotary_pos_emb`; the query is q_proj, then (Qwen3-VL) the per-head q norm. Qwen3-VL's DeepStack
features are added after the first LLM layers at the visual tokens, as the stock text model does; after the
pruning layer only the kept tokens' features are added. A model with sliding-window LLM layers is refused.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
from transformers.masking_utils import create_causal_mask

from stts_core.models import llm_prune as pruning
from stts_core.models.base import Generation, LLMPrune
from stts_core.models.qwen_common.positions import decode_positions
from stts_core.timing import synchronize


def _text(backend: Any) -> Any:
    text = backend.model.model.language_model
    if getattr(text, "has_sliding_layers", False):
        raise ValueError(f"The {backend.name} LLM has sliding-window layers; pruning inside it is not supported.")
    return text


def text_stack(backend: Any, deepstack: list[torch.Tensor]) -> pruning.TextStack:
    """The stock text model's parts; `deepstack`: (N, width) features added after layers 0, 1, ..."""
    model = backend.model
    text = _text(backend)
    rotate = sys.modules[type(text.layers[0].self_attn).__module__].apply_rotary_pos_emb

    def rope(x: torch.Tensor, positions: torch.Tensor) -> list[pruning.Rope]:
        return [text.rotary_emb(x, positions)] * len(text.layers)

    def query(index: int, hidden: torch.Tensor, cos_sin: pruning.Rope) -> torch.Tensor:
        layer = text.layers[index]
        attn = layer.self_attn
        q = attn.q_proj(layer.input_layernorm(hidden)).view(1, 1, -1, attn.head_dim)
        if hasattr(attn, "q_norm"):
            q = attn.q_norm(q)
        q = q.transpose(1, 2)
        return rotate(q, q, *cos_sin)[0]  # (1, heads, 1, head dim)

    def after_layer(index: int, x: torch.Tensor, image_at: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        if index >= len(deepstack):
            return x
        x = x.clone()
        x[0, image_at] = x[0, image_at] + deepstack[index][kept].to(x.dtype)
        return x

    return pruning.TextStack(
        layers=text.layers, config=text.config, embed=text.embed_tokens, rope=rope, query=query,
        logits=lambda h: model.lm_head(text.norm(h))[:, -1],
        decode_positions=lambda p: decode_positions(p, 1, backend.device),
        after_layer=after_layer if deepstack else None)


def prompt(backend: Any, visual: torch.Tensor, llm: dict[str, torch.Tensor]) -> tuple[pruning.Prompt, list[torch.Tensor]]:
    """The whole prompt (visual features in place of their placeholders) and the DeepStack features."""
    text = _text(backend)
    ids = llm["input_ids"]
    image = (ids[0] == backend.video_token_id).nonzero().squeeze(1)
    video = backend.encoder_outputs(visual)["video"]
    main = video.pooler_output[0]
    deepstack = [d[0] for d in (getattr(video, "deepstack_features", None) or [])]
    if image.numel() != main.shape[0]:
        raise ValueError(f"Pruning inside the LLM needs every visual token: the prompt has {image.numel()} "
                         f"placeholders for {main.shape[0]} visual tokens.")
    embeds = text.embed_tokens(ids)
    embeds[0, image] = main.to(embeds.dtype)
    mask = create_causal_mask(config=text.config, inputs_embeds=embeds, attention_mask=llm.get("attention_mask"),
                              cache=None, position_ids=None)
    if mask is not None and not isinstance(mask, torch.Tensor):
        raise ValueError(f"Pruning inside the {backend.name} LLM needs SDPA or eager attention (a dense mask).")
    return pruning.Prompt(embeds=embeds, image=image, mask=mask, positions=llm["position_ids"],
                          next_position=int(llm["next_position"])), deepstack


@torch.no_grad()
def generate_pruned(backend: Any, inputs: Any, visual: torch.Tensor, prune: LLMPrune, max_new_tokens: int,
                    stop_at_eos: bool, llm: dict[str, torch.Tensor] | None = None) -> Generation:
    """`QwenBackend.generate` with an llm-stage method: the prompt is built inside the prefill clock."""
    llm = llm if llm is not None else backend.llm_inputs(inputs, None)
    synchronize(backend.device)
    start = time.perf_counter()
    whole, deepstack = prompt(backend, visual, llm)
    return pruning.generate_pruned(backend, text_stack(backend, deepstack), whole, prune, max_new_tokens, stop_at_eos,
                                   int(llm["input_ids"].shape[1]), inputs.num_frames, int(inputs.groups.shape[0]),
                                   start=start)
