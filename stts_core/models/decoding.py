"""Greedy decoding after the prefill, the same loop for every family and for LLM-stage pruning: the
answer's tokens from the prefill's first one on, until end-of-sequence or the token limit, timed as the
"decoding" stage."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from stts_core.timing import synchronize


def greedy_continue(first: torch.Tensor, max_new_tokens: int, stop_at_eos: bool, eos_ids: set[int],
                    next_token: Callable[[torch.Tensor, int], torch.Tensor],
                    device: torch.device) -> tuple[list[int], float]:
    """(token ids, seconds). `first` is the prefill's argmax (shape (1,)); `next_token(token, step)` runs one
    decode step on the cache and returns the next argmax. The last token kept is never fed back."""
    tokens: list[int] = []
    token = first
    synchronize(device)
    start = time.perf_counter()
    for step in range(max_new_tokens):
        value = int(token)
        if stop_at_eos and value in eos_ids:
            break
        tokens.append(value)
        if step == max_new_tokens - 1:
            break
        token = next_token(token, step)
    synchronize(device)
    return tokens, time.perf_counter() - start
