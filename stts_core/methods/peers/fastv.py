"""FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024): prune image tokens inside
the LLM by the attention the last prompt token pays them.

Source: pkunlp-icler/FastV, ``src/FastV/lmms-eval-with-kvcache/fastv_kvcache.py`` (``FastVLlamaModel.forward``,
the KV-cache version, at 49dfad77). The rule: run LLM layers 0..K-1 on the whole prompt; take layer
K-1's attention probabilities from the last prompt token to every image token, averaged over the heads;
keep the top-k image tokens (and every text token), in their original order and with their original
positions; run layers K.. on the shortened sequence. The selection is made once, at prefill, and
decoding continues on the KV cache (layers below K keep every token, layers from K on keep the pruned
sequence). The paper's default is K = 2.

This module holds the rule over one attention row (`keep_by_attention`); a model family carries it out
inside its LLM when it has the "llm_prune" capability (Molmo2: ``models/molmo2/llm_prune.py``), and a
family without it refuses the method with a sentence.

What this version changes, and why:

- the count: FastV keeps ``int(image_tokens * R)`` (floor); here every method keeps
  ``budget.kept_group_count(T, G, keep)`` tokens after layer K, the same number as the other methods
  give the LLM;
- ties go to the earlier image token (a stable sort) instead of `torch.topk`'s unspecified order;
- the one attention row is computed from layer K-1's own query of the last token and its cached keys
  (softmax in float32), so the rest of the model keeps its fast attention kernel rather than switching
  every layer to eager attention to return attention maps;
- a model with K or fewer LLM layers prunes after layer L - 1 instead (`pruning_layer`), so the method
  still leaves at least one layer to run on the kept tokens;
- the first frame has no special rule, so ``keeps_first_frame`` is False.
"""

from __future__ import annotations

import torch

from stts_core.methods.registry import Method, register_method

SOURCE = "FastV, ECCV 2024: pkunlp-icler/FastV src/FastV/lmms-eval-with-kvcache/fastv_kvcache.py"
DEFAULT_LAYER = 2  # K: the attention of layer K-1 decides, layers K.. run on the kept tokens


def pruning_layer(layer: int, num_layers: int) -> int:
    """The layer K the pruned tokens start at: the asked one, or L - 1 for a model with too few layers."""
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
        raise ValueError(f"FastV's layer must be a whole number of at least 1, got {layer!r}.")
    if num_layers < 2:
        raise ValueError(f"FastV needs an LLM of at least 2 layers to prune between them; this one has {num_layers}.")
    return min(layer, num_layers - 1)


def keep_by_attention(attention: torch.Tensor, keep_tokens: int) -> torch.Tensor:
    """(N,) bool over the N image tokens: the `keep_tokens` with the highest head-averaged attention.

    ``attention``: (heads, N) attention probabilities from the last prompt token to each image token at
    layer K-1. Among equal means the earlier token is kept first."""
    if attention.dim() != 2:
        raise ValueError(f"FastV needs one attention row per head, shape (heads, image tokens), got "
                         f"{tuple(attention.shape)}.")
    mean = attention.detach().float().mean(dim=0)
    keep = torch.zeros(mean.shape[0], dtype=torch.bool, device=attention.device)
    keep[torch.sort(mean, descending=True, stable=True).indices[:max(0, int(keep_tokens))]] = True
    return keep


FASTV = register_method(Method(
    name="fastv", stage="llm", select=keep_by_attention, keeps_first_frame=False, color="#d81b60",
    source=SOURCE, options={"layer": DEFAULT_LAYER},
    summary="after LLM layer K (2), the image tokens the last prompt token attends to most at layer K-1, "
            "averaged over heads; text never pruned (FastV, needs an LLM-pruning backend)"))
