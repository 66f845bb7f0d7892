"""Molmo2's "llm_prune" capability: its text stack and prompt for the family-independent LLM-stage pruning
(`stts_core.models.llm_prune`, which holds the algorithm).

What is Molmo2's own: the visual features are *added* onto their `<im_patch>` placeholder embeddings (as
the stock model does); the prompt's mask is causal with every image token in one bidirectional block
(`mm_token_type_ids`); positions are 1-D; each layer takes the scaled or the unscaled rotary table
(`rope_types`); the q/k norm runs over the whole projection (`olmo`) or per head (`qwen3`).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers.masking_utils import create_causal_mask
from transformers.models.molmo2.modeling_molmo2 import apply_rotary_pos_emb

from stts_core.models import llm_prune as pruning
from stts_core.models.base import Generation, LLMPrune, PreparedInputs
from stts_core.timing import synchronize


def text_stack(backend: Any) -> pruning.TextStack:
    model = backend.model
    text = model.model.language_model

    def rope(x: torch.Tensor, positions: torch.Tensor) -> list[pruning.Rope]:
        tables = {"scaled": text.rotary_emb(x, position_ids=positions),
                  "unscaled": text.rotary_emb_unscaled(x, position_ids=positions)}
        return [tables[kind] for kind in text.rope_types]

    def query(index: int, hidden: torch.Tensor, cos_sin: pruning.Rope) -> torch.Tensor:
        layer = text.layers[index]
        attn = layer.self_attn
        q = attn.q_proj(hidden if layer.norm_after else layer.input_layernorm(hidden))
        if attn.qk_norm_type == "olmo":
            q = attn.q_norm(q)
        q = q.view(1, 1, -1, attn.head_dim)
        if attn.qk_norm_type == "qwen3":
            q = attn.q_norm(q)
        return apply_rotary_pos_emb(q.transpose(1, 2), q.transpose(1, 2), *cos_sin)[0]  # (1, heads, 1, head dim)

    return pruning.TextStack(
        layers=text.layers, config=text.config, embed=text.embed_tokens, rope=rope, query=query,
        logits=lambda h: model.lm_head(text.norm(h))[:, -1],
        decode_positions=lambda p: torch.full((1, 1), p, dtype=torch.long, device=backend.device))


def prompt(backend: Any, visual: torch.Tensor, llm: dict[str, torch.Tensor]) -> pruning.Prompt:
    """The whole prompt: visual features added onto their placeholders, the causal mask with the image block."""
    model = backend.model
    ids = llm["input_ids"]
    image = (ids[0] == backend.image_token_id).nonzero().squeeze(1)
    if image.numel() != visual.shape[0]:
        raise ValueError(f"Pruning inside the LLM needs every visual token: the prompt has {image.numel()} "
                         f"placeholders for {visual.shape[0]} visual tokens.")
    embeds = model.model.language_model.embed_tokens(ids)
    embeds[0, image] = embeds[0, image] + visual.to(embeds.dtype)
    positions = torch.arange(ids.shape[1], device=ids.device)[None]
    blocks = None
    if "mm_token_type_ids" in llm:
        blocks = torch.where(llm["mm_token_type_ids"].to(ids.device) == 1, 0, -1)
    mask = create_causal_mask(config=model.config.get_text_config(), inputs_embeds=embeds,
                              attention_mask=llm.get("attention_mask"), cache=None, position_ids=positions,
                              block_sequence_ids=blocks)
    if mask is not None and not isinstance(mask, torch.Tensor):
        raise ValueError("Pruning inside the Molmo2 LLM needs SDPA or eager attention (a dense mask), "
                         f"not {model.config.get_text_config()._attn_implementation}.")
    return pruning.Prompt(embeds=embeds, image=image, mask=mask, positions=positions, next_position=int(ids.shape[1]))


def prefill(backend: Any, inputs: PreparedInputs, visual: torch.Tensor, prune: LLMPrune,
            llm: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any, torch.Tensor, int]:
    """(logits of the last prompt token, the cache, the (N,) image-token keep mask, the prompt length)."""
    logits, cache, keep = pruning.prefill(text_stack(backend), prompt(backend, visual, llm), prune)
    return logits, cache, keep, int(llm["input_ids"].shape[1])


@torch.no_grad()
def generate_pruned(backend: Any, inputs: PreparedInputs, visual: torch.Tensor, prune: LLMPrune,
                    max_new_tokens: int, stop_at_eos: bool, llm: dict[str, torch.Tensor] | None = None) -> Generation:
    """`Molmo2Backend.generate` with an llm-stage method: the prompt is built inside the prefill clock."""
    llm = llm if llm is not None else backend.llm_inputs(inputs, None)
    synchronize(backend.device)
    start = time.perf_counter()
    return pruning.generate_pruned(backend, text_stack(backend), prompt(backend, visual, llm), prune, max_new_tokens,
                                   stop_at_eos, int(llm["input_ids"].shape[1]), inputs.num_frames,
                                   int(inputs.groups.shape[0]), start=start)
