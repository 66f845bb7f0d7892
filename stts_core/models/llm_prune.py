"""The "llm_prune" capability, family-independent: an llm-stage method (FastV) prunes visual tokens inside
the LLM, once, at prefill. A family hands over its text stack (`TextStack`: the stock embedding, decoder
layers, rotary tables, final norm and head, and how its attention forms a query) and its prompt
(`Prompt`); this module runs it (no fork of a modeling file):

1. the whole prompt (text plus every visual token) through layers 0..K-1, filling the KV cache;
2. the one attention row the method reads: layer K-1's query of the last prompt token against that
   layer's cached keys, softmax in float32, restricted to the image tokens -> (heads, image tokens);
3. the method's rule (`Method.select`, e.g. `peers.fastv.keep_by_attention`) keeps `LLMPrune.keep_tokens`
   image tokens; text is never pruned;
4. layers K.. on the kept tokens only, with their original positions and the prompt's own mask restricted
   to them (features a family adds after a layer, such as Qwen3-VL's DeepStack, follow the kept tokens);
5. greedy decoding on that cache: layers below K attend over the whole prompt, layers from K on over the
   kept tokens; each new token takes the next position of the unpruned prompt.

Every layer keeps the model's attention kernel (SDPA); only the one row is computed here. With every image
token kept the result equals the stock model's (the families' tests check it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicCache

from stts_core.methods.peers.fastv import pruning_layer
from stts_core.methods.registry import get_method
from stts_core.models.base import Generation, LLMPrune
from stts_core.models.decoding import greedy_continue
from stts_core.timing import synchronize

Rope = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Prompt:
    """One prompt ready for the decoder layers."""

    embeds: torch.Tensor  # (1, S, width): token embeddings with the visual features in place
    image: torch.Tensor  # (N,) positions of the visual tokens in the sequence, in visual-token order
    mask: torch.Tensor | None  # the prompt's attention mask for the layers, (1, 1, S, S) or None (causal)
    positions: torch.Tensor  # the prompt's position ids, sequence on the last axis
    next_position: int  # where decoding goes on


@dataclass
class TextStack:
    """A family's stock text model, as the pruned prefill and decoding drive it."""

    layers: Sequence[torch.nn.Module]
    config: Any  # the text config (for the KV cache)
    embed: Callable[[torch.Tensor], torch.Tensor]  # token ids (1, n) -> (1, n, width)
    rope: Callable[[torch.Tensor, torch.Tensor], list[Rope]]  # (x, positions) -> cos/sin per layer
    query: Callable[[int, torch.Tensor, Rope], torch.Tensor]  # (layer, its input at the last token, rope) -> q
    logits: Callable[[torch.Tensor], torch.Tensor]  # last hidden state (1, 1, width) -> (1, vocab)
    decode_positions: Callable[[int], torch.Tensor]  # absolute position -> position ids of one new token
    after_layer: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    # after_layer(layer, hidden, where the visual tokens are now, which of them are kept (N,) bool) -> hidden


def _run(stack: TextStack, x: torch.Tensor, layers: range, mask: torch.Tensor | None, positions: torch.Tensor,
         cache: DynamicCache, image_at: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    rope = stack.rope(x, positions)
    for i in layers:
        x = stack.layers[i](x, attention_mask=mask, position_ids=None, cache=cache, use_cache=True,
                            position_embeddings=rope[i])
        if stack.after_layer is not None:
            x = stack.after_layer(i, x, image_at, kept)
    return x


def attention_row(query: torch.Tensor, keys: torch.Tensor, scaling: float) -> torch.Tensor:
    """(heads, S) softmax of one query (1, heads, 1, head dim) against cached keys (1, kv heads, S, head
    dim), in float32; key heads are shared by query groups as in grouped-query attention."""
    groups = query.shape[1] // keys.shape[1]
    k = keys.repeat_interleave(groups, dim=1) if groups > 1 else keys
    scores = (query.float() @ k.float().transpose(-1, -2)) * scaling  # (1, heads, 1, S)
    return torch.softmax(scores, dim=-1)[0, :, 0]


def prefill(stack: TextStack, prompt: Prompt, prune: LLMPrune) -> tuple[torch.Tensor, DynamicCache, torch.Tensor]:
    """Prefill with the selection: (logits of the last prompt token, the cache, the (N,) image-token keep mask)."""
    layer = pruning_layer(int(prune.options.get("layer", 2)), len(stack.layers))
    rule = get_method(prune.method).select
    if rule is None:
        raise ValueError(f"The method {prune.method!r} has no selection rule to prune inside the LLM with.")
    x, positions, image = prompt.embeds, prompt.positions, prompt.image
    every = torch.ones(image.numel(), dtype=torch.bool, device=x.device)
    cache = DynamicCache(config=stack.config)
    x = _run(stack, x, range(layer - 1), prompt.mask, positions, cache, image, every)
    last_in = x[:, -1:]
    x = _run(stack, x, range(layer - 1, layer), prompt.mask, positions, cache, image, every)
    attn = stack.layers[layer - 1].self_attn
    rope = stack.rope(last_in, positions[..., -1:])[layer - 1]
    row = attention_row(stack.query(layer - 1, last_in, rope), cache.layers[layer - 1].keys, attn.scaling)
    keep_image = rule(row[:, image], prune.keep_tokens).to(x.device)
    stay = torch.ones(x.shape[1], dtype=torch.bool, device=x.device)
    stay[image[~keep_image]] = False
    kept = stay.nonzero().squeeze(1)
    mask = prompt.mask
    if mask is not None:
        mask = mask[:, :, kept][:, :, :, kept]
    image_now = torch.cumsum(stay, 0)[image[keep_image]] - 1  # the kept visual tokens' new places
    x = _run(stack, x[:, kept], range(layer, len(stack.layers)), mask, positions[..., kept], cache, image_now,
             keep_image)
    return stack.logits(x[:, -1:]), cache, keep_image


def decode_step(stack: TextStack, token: torch.Tensor, position: int, cache: DynamicCache) -> torch.Tensor:
    """One decoding step on the pruned cache (every layer attends over all it has cached): next-token logits."""
    x = stack.embed(token[:, None])
    positions = stack.decode_positions(position)
    rope = stack.rope(x, positions)
    for i, layer in enumerate(stack.layers):
        x = layer(x, attention_mask=None, position_ids=None, cache=cache, use_cache=True, position_embeddings=rope[i])
    return stack.logits(x)


@torch.no_grad()
def generate_pruned(backend: Any, stack: TextStack, prompt: Prompt, prune: LLMPrune, max_new_tokens: int,
                    stop_at_eos: bool, prompt_tokens: int, frames: int, groups: int,
                    start: float | None = None) -> Generation:
    """Greedy decoding with the selection made at prefill; prefill (selection included) and decoding timed
    apart, as the families' `generate` times them. `start`: when the prefill clock started (the family
    built its prompt inside it)."""
    if prompt.image.numel() != frames * groups:
        raise ValueError(f"Pruning inside the LLM needs every visual token: the prompt has {prompt.image.numel()} "
                         f"for {frames} x {groups} groups.")
    if start is None:
        synchronize(backend.device)
        start = time.perf_counter()
    logits, cache, keep_image = prefill(stack, prompt, prune)
    token = logits.argmax(-1)
    synchronize(backend.device)
    prefill_s = time.perf_counter() - start
    tokens, decode_s = greedy_continue(
        token, max_new_tokens, stop_at_eos, backend.eos_token_ids,
        lambda tok, step: decode_step(stack, tok, prompt.next_position + step, cache).argmax(-1), backend.device)
    text = backend.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    return Generation(token_ids=tokens, text=text, prefill_s=prefill_s, decode_s=decode_s, prompt_tokens=prompt_tokens,
                      keep_mask=keep_image.view(frames, groups), visual_tokens=int(keep_image.sum()))
