"""The "llm_prune" capability of the Molmo2 family: an llm-stage method (FastV) prunes visual tokens
inside the LLM, once, at prefill.

The stock modules run layer by layer (the model's own embedding, decoder layers, rotary tables, final
norm and head; no fork of the modeling file):

1. the whole prompt (text plus every visual token) through layers 0..K-1, filling the KV cache;
2. the one attention row the method reads: layer K-1's query of the last prompt token against that
   layer's cached keys, softmax in float32, restricted to the image tokens -> (heads, image tokens);
3. the method's rule (`Method.select`, e.g. `peers.fastv.keep_by_attention`) keeps `LLMPrune.keep_tokens`
   image tokens; text is never pruned;
4. layers K.. on the kept tokens only, with their original positions and the prompt's own mask (the
   bidirectional image block included) restricted to them;
5. greedy decoding on that cache: layers below K attend over the whole prompt, layers from K on over the
   kept tokens; each new token takes the next position of the unpruned prompt.

Every other layer keeps the model's attention kernel (SDPA); only the one row is computed here. With
every image token kept the result equals the stock model's (a test checks it).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.models.molmo2.modeling_molmo2 import apply_rotary_pos_emb, repeat_kv

from stts_core.methods.peers.fastv import pruning_layer
from stts_core.methods.registry import get_method
from stts_core.models.base import Generation, LLMPrune, PreparedInputs
from stts_core.timing import synchronize

Rope = dict[str, tuple[torch.Tensor, torch.Tensor]]


def _rope(text: Any, x: torch.Tensor, positions: torch.Tensor) -> Rope:
    """Both rotary tables the layers choose from (`text.rope_types`), at `positions`."""
    return {"scaled": text.rotary_emb(x, position_ids=positions),
            "unscaled": text.rotary_emb_unscaled(x, position_ids=positions)}


def _run_layers(text: Any, x: torch.Tensor, layers: range, mask: Any, positions: torch.Tensor,
                cache: DynamicCache) -> torch.Tensor:
    rope = _rope(text, x, positions)
    for i in layers:
        x = text.layers[i](x, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                           position_embeddings=rope[text.rope_types[i]])
    return x


def last_token_attention(layer: Any, hidden: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                         keys: torch.Tensor) -> torch.Tensor:
    """(heads, S) attention probabilities of the last prompt token at `layer`.

    ``hidden``: the layer's input at the last position (1, 1, width); ``rope``: cos/sin at that position;
    ``keys``: the layer's cached keys (1, kv heads, S, head dim), already normed and rotated. The last
    token is text and last, so its causal row sees every position and needs no mask."""
    attn = layer.self_attn
    h = hidden if layer.norm_after else layer.input_layernorm(hidden)
    q = attn.q_proj(h)
    if attn.qk_norm_type == "olmo":
        q = attn.q_norm(q)
    q = q.view(1, 1, -1, attn.head_dim)
    if attn.qk_norm_type == "qwen3":
        q = attn.q_norm(q)
    q = q.transpose(1, 2)  # (1, heads, 1, head dim)
    q, _ = apply_rotary_pos_emb(q, q, *rope)
    k = repeat_kv(keys, attn.num_key_value_groups)  # (1, heads, S, head dim)
    scores = (q.float() @ k.float().transpose(-1, -2)) * attn.scaling  # (1, heads, 1, S)
    return torch.softmax(scores, dim=-1)[0, :, 0]


def _prompt(backend: Any, inputs: PreparedInputs, visual: torch.Tensor, llm: dict[str, torch.Tensor]
            ) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Embeddings (visual features added onto their placeholders, as the stock model does), the
    placeholder positions and the prompt's attention mask (causal, image tokens one bidirectional block)."""
    model = backend.model
    ids = llm["input_ids"]
    placeholders = (ids[0] == backend.image_token_id).nonzero().squeeze(1)
    if placeholders.numel() != visual.shape[0] or placeholders.numel() != inputs.num_frames * inputs.groups.shape[0]:
        raise ValueError(f"Pruning inside the LLM needs every visual token: the prompt has {placeholders.numel()} "
                         f"placeholders for {visual.shape[0]} visual tokens.")
    embeds = model.model.language_model.embed_tokens(ids)
    embeds[0, placeholders] = embeds[0, placeholders] + visual.to(embeds.dtype)
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
    return embeds, placeholders, mask


def prefill(backend: Any, inputs: PreparedInputs, visual: torch.Tensor, prune: LLMPrune,
            llm: dict[str, torch.Tensor]) -> tuple[torch.Tensor, DynamicCache, torch.Tensor, int]:
    """Prefill with the selection: (logits of the last prompt token, the cache, the (N,) image-token keep
    mask, the prompt length)."""
    text = backend.model.model.language_model
    layer = pruning_layer(int(prune.options.get("layer", 2)), len(text.layers))
    rule = get_method(prune.method).select
    if rule is None:
        raise ValueError(f"The method {prune.method!r} has no selection rule to prune inside the LLM with.")
    x, placeholders, mask = _prompt(backend, inputs, visual, llm)
    length = x.shape[1]
    positions = torch.arange(length, device=x.device)[None]
    cache = DynamicCache(config=text.config)
    x = _run_layers(text, x, range(layer - 1), mask, positions, cache)
    last_in = x[:, -1:]
    x = _run_layers(text, x, range(layer - 1, layer), mask, positions, cache)
    rope = _rope(text, last_in, positions[:, -1:])[text.rope_types[layer - 1]]
    attention = last_token_attention(text.layers[layer - 1], last_in, rope, cache.layers[layer - 1].keys)
    keep_image = rule(attention[:, placeholders], prune.keep_tokens).to(x.device)
    stay = torch.ones(length, dtype=torch.bool, device=x.device)
    stay[placeholders[~keep_image]] = False
    kept = stay.nonzero().squeeze(1)
    if mask is not None:
        mask = mask[:, :, kept][:, :, :, kept]
    x = _run_layers(text, x[:, kept], range(layer, len(text.layers)), mask, positions[:, kept], cache)
    logits = backend.model.lm_head(text.norm(x[:, -1:]))
    return logits[:, -1], cache, keep_image, length


def _step(backend: Any, token: torch.Tensor, position: int, cache: DynamicCache) -> torch.Tensor:
    """One decoding step on the pruned cache: logits of the next token."""
    text = backend.model.model.language_model
    x = text.embed_tokens(token[:, None])
    positions = torch.full((1, 1), position, dtype=torch.long, device=x.device)
    x = _run_layers(text, x, range(len(text.layers)), None, positions, cache)
    return backend.model.lm_head(text.norm(x))[:, -1]


@torch.no_grad()
def generate_pruned(backend: Any, inputs: PreparedInputs, visual: torch.Tensor, prune: LLMPrune,
                    max_new_tokens: int, stop_at_eos: bool, llm: dict[str, torch.Tensor] | None = None) -> Generation:
    """Greedy decoding with the LLM-stage selection made at prefill; prefill (selection included) and
    decoding timed apart, as `Molmo2Backend.generate` times them."""
    llm = llm if llm is not None else backend.llm_inputs(inputs, None)
    synchronize(backend.device)
    start = time.perf_counter()
    logits, cache, keep_image, length = prefill(backend, inputs, visual, prune, llm)
    token = logits.argmax(-1)
    synchronize(backend.device)
    prefill_s = time.perf_counter() - start
    tokens: list[int] = []
    start = time.perf_counter()
    for step in range(max_new_tokens):
        value = int(token)
        if stop_at_eos and value in backend.eos_token_ids:
            break
        tokens.append(value)
        if step == max_new_tokens - 1:
            break
        token = _step(backend, token, length + step, cache).argmax(-1)
    synchronize(backend.device)
    decode_s = time.perf_counter() - start
    text = backend.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    keep_mask = keep_image.view(inputs.num_frames, int(inputs.groups.shape[0]))
    return Generation(token_ids=tokens, text=text, prefill_s=prefill_s, decode_s=decode_s,
                      prompt_tokens=int(llm["input_ids"].shape[1]), keep_mask=keep_mask,
                      visual_tokens=int(keep_image.sum()))
