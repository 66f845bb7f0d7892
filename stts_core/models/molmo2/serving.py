"""Serving fast paths for the Molmo2 backend's language model, opt-in and off by default.

- Decoding with a static KV cache (transformers' `StaticCache`, one per bucketed length, reused
  across requests) and, on CUDA, the one-token decode step compiled with
  `torch.compile(mode="reduce-overhead")` so each step replays one CUDA graph instead of launching
  hundreds of kernels from Python. The cache length is the prompt plus the new tokens rounded up
  to a bucket (four per power of two), so any prompt length works with a handful of compiled graphs.
- LLM prefill without a dense 4-D mask: Molmo2's mask is causal except that all image tokens see
  each other (`mm_token_type_ids`). `span_block_mask` builds FlexAttention's block mask straight
  from the image-token spans (no evaluation over all query/key pairs), and the LLM's attention is
  routed through `span_attention`, registered with transformers' `AttentionInterface`: a
  `BlockMask` goes to FlexAttention, anything else (decode steps) to the stock SDPA function.

`enable(backend, decode=..., prefill=...)` installs a `Molmo2Serving` as `backend.serving`, which
`Molmo2Backend.generate` hands the work to; `disable(backend)` restores the stock behaviour.
On the CPU the static path runs uncompiled and FlexAttention runs eagerly, so both are testable
against the stock path there. `python -m stts_core.models.molmo2.serving` runs the bench with them.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StaticCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

from stts_core.methods.packing import PackedLayout
from stts_core.models.base import Generation, PreparedInputs, VideoBackend
from stts_core.models.molmo2 import PREFILL_MODES, SERVING_CHOICES
from stts_core.timing import synchronize

SPAN_ATTENTION = "stts_span_flex"
DECODE_MODES = ("dynamic", "static", "compiled")
FLEX_BLOCK = 128
_compiled_flex: Callable[..., Any] | None = None


def bucket_length(n: int, minimum: int = 256, per_octave: int = 4) -> int:
    """`n` rounded up to a cache bucket: a multiple of 2^floor(log2 n) / per_octave, at least `minimum`.

    Decode attention reads the whole static cache, so a bucket wastes at most 1/per_octave of the
    KV reads; each bucket is one compiled graph (per_octave of them per doubling of the prompt)."""
    if n <= minimum:
        return minimum
    step = max(1, (1 << (n.bit_length() - 1)) // per_octave)
    return -(-n // step) * step


# ------------------------------------------------------------------------- prefill: the block mask
def _span_blocks(image: torch.Tensor, q_len: int, kv_len: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(q blocks, kv blocks) bool: which blocks need the element mask (partial) and which are full.

    A pair is allowed when kv <= q or both are image tokens. A block is full when every pair is
    allowed (all keys before the first query, or both blocks entirely image tokens) and lies
    wholly inside the sequences; it is touched when any pair is allowed."""
    nq, nk = -(-q_len // block), -(-kv_len // block)
    padded = torch.zeros(nk * block, dtype=torch.bool, device=image.device)
    padded[: image.numel()] = image
    per_kv = padded.view(nk, block)
    per_q = per_kv[:nq] if nq <= nk else torch.cat([per_kv, per_kv.new_zeros(nq - nk, block)])
    q_size = (q_len - torch.arange(nq, device=image.device) * block).clamp(max=block)
    k_size = (kv_len - torch.arange(nk, device=image.device) * block).clamp(max=block)
    q_count, k_count = per_q.sum(1), per_kv.sum(1)
    qi, kj = torch.arange(nq, device=image.device)[:, None], torch.arange(nk, device=image.device)[None]
    q_whole, k_whole = (q_size == block)[:, None], (k_size == block)[None]
    both_image = ((q_count == q_size) & (q_count > 0))[:, None] & ((k_count == k_size) & (k_count > 0))[None]
    full = q_whole & k_whole & ((kj < qi) | both_image)
    touched = (kj <= qi) | ((q_count > 0)[:, None] & (k_count > 0)[None])
    return touched & ~full, full


def _compact(chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Block counts and indices in BlockMask's layout: chosen indices first, ascending, then padding."""
    nk = chosen.shape[1]
    cols = torch.arange(nk, device=chosen.device).expand_as(chosen)
    order = torch.where(chosen, cols, cols.new_full((), nk)).sort(dim=1).values.clamp(max=nk - 1)
    return chosen.sum(1).to(torch.int32)[None, None], order.to(torch.int32)[None, None].contiguous()


def span_block_mask(mm_token_type_ids: torch.Tensor, kv_len: int | None = None, block: int = FLEX_BLOCK) -> Any:
    """FlexAttention's BlockMask for Molmo2's prefill: causal, and bidirectional over the image tokens.

    `mm_token_type_ids` is (1, q_len); keys run over `kv_len` (>= q_len, a static cache's length:
    keys past the prompt are never allowed). Built from per-block image-token counts in
    O(blocks^2), where `create_block_mask` would evaluate the mask on every query/key pair."""
    from torch.nn.attention.flex_attention import BlockMask

    if mm_token_type_ids.dim() != 2 or mm_token_type_ids.shape[0] != 1:
        raise ValueError("span_block_mask takes the (1, length) mm_token_type_ids of one prompt.")
    image = mm_token_type_ids[0] == 1
    q_len = int(image.numel())
    kv_len = q_len if kv_len is None else int(kv_len)
    if kv_len < q_len:
        raise ValueError(f"The keys ({kv_len}) must cover the prompt ({q_len}).")
    partial, full = _span_blocks(image, q_len, kv_len, block)
    lookup = torch.zeros(-(-max(q_len, kv_len) // block) * block, dtype=torch.bool, device=image.device)
    lookup[:q_len] = image

    def causal_or_image(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        return (kv_idx <= q_idx) | (lookup[q_idx] & lookup[kv_idx])

    num, idx = _compact(partial)
    full_num, full_idx = _compact(full)
    return BlockMask.from_kv_blocks(num, idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=causal_or_image,
                                    seq_lengths=(q_len, kv_len))


def _flex(device: torch.device) -> Callable[..., Any]:
    """FlexAttention compiled once on CUDA (dynamic shapes: prompts vary); eager elsewhere."""
    from torch.nn.attention.flex_attention import flex_attention

    global _compiled_flex
    if device.type != "cuda":
        return flex_attention
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=True)
    return _compiled_flex


def span_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: Any, scaling: float | None = None, dropout: float = 0.0,
                   **kwargs: Any) -> tuple[torch.Tensor, None]:
    """The LLM's attention: FlexAttention for a BlockMask (the prefill), the stock SDPA otherwise."""
    from torch.nn.attention.flex_attention import BlockMask

    if not isinstance(attention_mask, BlockMask):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if dropout:
        raise ValueError("The FlexAttention prefill is for inference; attention dropout is not supported.")
    gqa = key.shape[1] != query.shape[1]
    out = _flex(query.device)(query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous(), None


def register_span_attention() -> None:
    """Make SPAN_ATTENTION a transformers attention implementation (its masks are SDPA's)."""
    AttentionInterface.register(SPAN_ATTENTION, span_attention)
    AttentionMaskInterface.register(SPAN_ATTENTION, sdpa_mask)


# ------------------------------------------------------------------------------------ decoding
@dataclass
class Molmo2Serving:
    """How `Molmo2Backend.generate` runs the LLM: decode mode, prefill mode, and reused static caches."""

    decode: str = "static"
    prefill: str = "sdpa"
    max_caches: int = 4  # one per bucket; a bench cell alternates two, a frame sweep revisits them
    llm_attention: str = "sdpa"  # the LLM's attention implementation before `enable`, restored by `disable`
    notes: list[str] = field(default_factory=list)  # fast paths switched off after a failure, and why
    compile_backend: Any = "inductor"  # torch.compile backend of the compiled decode step
    _caches: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _step: Callable[..., torch.Tensor] | None = field(default=None, repr=False)
    _compiled: bool = field(default=False, repr=False)
    _stage: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise ValueError(f"Unknown decode mode {self.decode!r}; choose one of {DECODE_MODES}.")
        if self.prefill not in PREFILL_MODES:
            raise ValueError(f"Unknown prefill mode {self.prefill!r}; choose one of {PREFILL_MODES}.")

    def cache_for(self, model: torch.nn.Module, length: int) -> StaticCache:
        """A reset static cache of `bucket_length(length)` slots, reused per bucket (the most recent
        `max_caches` kept): the compiled step's CUDA graph reads the cache at fixed addresses."""
        size = bucket_length(length)
        cache = self._caches.pop(size, None)
        if cache is None:
            while len(self._caches) >= self.max_caches:
                self._caches.popitem(last=False)
            cache = StaticCache(config=model.config, max_cache_len=size)
        else:
            cache.reset()
        self._caches[size] = cache
        return cache

    @property
    def compiled(self) -> bool:
        """Whether decode steps replay a compiled CUDA graph (compiled mode on a CUDA model)."""
        return self._compiled

    def step_fn(self, model: torch.nn.Module) -> Callable[[torch.Tensor, StaticCache], torch.Tensor]:
        """One decode step on the static cache -> the next token (1, 1). Compiled mode compiles it
        on CUDA (inductor, CUDA graphs), or anywhere with another `compile_backend` (tests trace it
        on the CPU); one graph per cache bucket, since the cache's shape is part of the graph."""
        if self._step is None:
            def step(token: torch.Tensor, cache: StaticCache) -> torch.Tensor:
                return model(input_ids=token, cache=cache, use_cache=True).logits[:, -1].argmax(-1, keepdim=True)

            inductor = self.compile_backend == "inductor"
            self._compiled = self.decode == "compiled" and (model.device.type == "cuda" or not inductor)
            if not self._compiled:
                self._step = step
            elif inductor:
                self._step = torch.compile(step, mode="reduce-overhead", dynamic=False)
            else:
                self._step = torch.compile(step, backend=self.compile_backend, dynamic=False)
        return self._step

    def prefill_inputs(self, llm: dict[str, torch.Tensor], kv_len: int) -> dict[str, torch.Tensor]:
        """The prefill's text inputs; with flex prefill the 2-D mask becomes the span BlockMask."""
        if self.prefill != "flex" or "mm_token_type_ids" not in llm or not bool(llm["attention_mask"].all()):
            return llm
        return {**llm, "attention_mask": span_block_mask(llm["mm_token_type_ids"], kv_len)}

    @torch.no_grad()
    def generate(self, backend: VideoBackend, inputs: PreparedInputs, visual: torch.Tensor,
                 keep_mask: torch.Tensor | None, max_new_tokens: int = 16, stop_at_eos: bool = True,
                 llm: dict[str, torch.Tensor] | None = None) -> Generation:
        """Greedy decoding like `Molmo2Backend.generate` (same tokens), timing prefill and decoding apart.

        Should a compiled kernel fail on this device (a compiler or driver limit, not memory), that
        fast path is switched off with a note in `notes` and the request runs again without it."""
        llm = llm if llm is not None else backend.llm_inputs(inputs, keep_mask)
        try:
            return self._generate(backend, visual, llm, max_new_tokens, stop_at_eos)
        except torch.OutOfMemoryError:
            raise
        except Exception as err:
            if not self._fall_back(backend, err):
                raise
        return self.generate(backend, inputs, visual, keep_mask, max_new_tokens, stop_at_eos, llm)

    def _fall_back(self, backend: VideoBackend, err: Exception) -> bool:
        """Drop the fast path of the stage that failed (compiled decode step, then flex prefill)."""
        reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"
        if self._stage == "decode" and self._compiled:
            self.decode, self._step, self._compiled = "static", None, False
            self.notes.append(f"compiled decode step failed ({reason}); decoding ran on the static cache eagerly")
        elif self._stage == "prefill" and self.prefill == "flex":
            self.prefill = "sdpa"
            backend.model.set_attn_implementation({"text_config": self.llm_attention})
            self.notes.append(f"FlexAttention prefill failed ({reason}); the prefill ran with SDPA's dense mask")
        else:
            return False
        warnings.warn(self.notes[-1], RuntimeWarning, stacklevel=3)
        return True

    def _generate(self, backend: VideoBackend, visual: torch.Tensor, llm: dict[str, torch.Tensor],
                  max_new_tokens: int, stop_at_eos: bool) -> Generation:
        model = backend.model
        eos = backend.eos_token_ids if stop_at_eos else set()
        prompt = int(llm["input_ids"].shape[1])
        cache = None if self.decode == "dynamic" else self.cache_for(model, prompt + max_new_tokens)
        kv_len = prompt if cache is None else int(cache.layers[0].max_cache_len)
        self._stage = "prefill"
        synchronize(backend.device)
        start = time.perf_counter()
        out = model(**self.prefill_inputs(llm, kv_len), mm_encoder_outputs=backend.encoder_outputs(visual),
                    cache=cache, use_cache=True, logits_to_keep=1)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        synchronize(backend.device)
        prefill_s = time.perf_counter() - start
        self._stage = "decode"
        start = time.perf_counter()
        if cache is None:
            tokens = _dynamic_loop(model, out.cache, token, llm["attention_mask"], max_new_tokens, eos)
        else:
            tokens = self._static_loop(model, cache, token, max_new_tokens, eos)
        synchronize(backend.device)
        decode_s = time.perf_counter() - start
        text = backend.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return Generation(token_ids=tokens, text=text, prefill_s=prefill_s, decode_s=decode_s, prompt_tokens=prompt)

    def _static_loop(self, model: torch.nn.Module, cache: StaticCache, token: torch.Tensor, max_new_tokens: int,
                     eos: set[int]) -> list[int]:
        """Steps on the static cache; without end-of-sequence checks no step waits for the device."""
        step = self.step_fn(model)
        produced: list[torch.Tensor] = []
        for i in range(max_new_tokens):
            if eos and int(token) in eos:
                break
            produced.append(token)
            if i == max_new_tokens - 1:
                break
            if self._compiled:
                torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs were cloned
            token = step(token, cache).clone()
        return torch.cat(produced, 1)[0].tolist() if produced else []


def _dynamic_loop(model: torch.nn.Module, cache: Any, token: torch.Tensor, attention_mask: torch.Tensor,
                  max_new_tokens: int, eos: set[int]) -> list[int]:
    """The stock loop (dynamic cache, growing 2-D mask), for flex prefill without a static cache."""
    tokens: list[int] = []
    for i in range(max_new_tokens):
        value = int(token)
        if value in eos:
            break
        tokens.append(value)
        if i == max_new_tokens - 1:
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(1, 1)], dim=1)
        out = model(input_ids=token, attention_mask=attention_mask, cache=cache, use_cache=True)
        cache, token = out.cache, out.logits[:, -1].argmax(-1, keepdim=True)
    return tokens


# ---------------------------------------------------------------------------------- installing
def _text_attention(model: torch.nn.Module) -> str:
    return str(model.config.get_text_config()._attn_implementation)


def enable(backend: VideoBackend, decode: str = "static", prefill: str = "sdpa") -> Molmo2Serving:
    """Install the serving paths on a Molmo2 backend (`backend.serving`); the ViT keeps its attention.

    With prefill "flex" the LLM's attention implementation becomes SPAN_ATTENTION, which is SDPA
    for every call but a prefill given a BlockMask, so training and scoring paths are unchanged."""
    model = backend.model
    previous = getattr(backend, "serving", None)
    base = previous.llm_attention if previous is not None else _text_attention(model)
    serving = Molmo2Serving(decode=decode, prefill=prefill, llm_attention=base)
    if prefill == "flex":
        register_span_attention()
        model.set_attn_implementation({"text_config": SPAN_ATTENTION})
    elif _text_attention(model) != base:
        model.set_attn_implementation({"text_config": base})
    if serving.decode == "compiled":
        _allow_bucket_recompiles()
    backend.serving = serving
    return serving


def disable(backend: VideoBackend) -> None:
    """Back to the stock decoding loop and the LLM's original attention implementation."""
    serving = getattr(backend, "serving", None)
    if serving is not None and _text_attention(backend.model) != serving.llm_attention:
        backend.model.set_attn_implementation({"text_config": serving.llm_attention})
    backend.serving = None


def _allow_bucket_recompiles(limit: int = 64) -> None:
    """One compiled graph per cache bucket: let dynamo keep more than its default 8 of them."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(int(getattr(config, name)), limit))


def install(backend: VideoBackend, serving: str = "eager", prefill: str = "sdpa") -> Molmo2Serving | None:
    """The bench vocabulary (`--serving eager|static|compiled`, `--prefill sdpa|flex`) onto a backend:
    eager with sdpa is the stock path (nothing installed)."""
    if serving not in SERVING_CHOICES:
        raise ValueError(f"Unknown serving mode {serving!r}; choose one of {SERVING_CHOICES}.")
    if serving == "eager" and prefill == "sdpa":
        disable(backend)
        return None
    return enable(backend, decode="dynamic" if serving == "eager" else serving, prefill=prefill)


# ------------------------------------------------------------------------------ ViT suffix probe
def probe_lengths(frames: int, patches: int, keep: float, seed: int = 0) -> list[int]:
    """Kept patches per frame as STTS leaves them: the first frame whole, the others near keep * N."""
    rng = torch.Generator().manual_seed(seed)
    jitter = (torch.rand(max(frames - 1, 0), generator=rng) - 0.5) * 0.2 * patches
    rest = (keep * patches + jitter).round().clamp(0, patches).long().tolist()
    return [patches, *rest][:frames]


def _time_ms(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    for _ in range(2):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats * 1e3


def _packed_layer(layer: torch.nn.Module, tokens: torch.Tensor, attend: Callable[..., torch.Tensor]) -> torch.Tensor:
    """`Molmo2Backend._packed_block`'s computation with a chosen packed attention."""
    attn = layer.self_attn
    h = layer.layer_norm1(tokens)
    shape = (tokens.shape[0], -1, attn.head_dim)
    o = attend(attn.q_proj(h).view(shape), attn.k_proj(h).view(shape), attn.v_proj(h).view(shape))
    tokens = tokens + attn.o_proj(o.reshape(tokens.shape[0], -1))
    return tokens + layer.mlp(layer.layer_norm2(tokens))


def _probe_layer(preset: str, device: torch.device, dtype: torch.dtype) -> tuple[torch.nn.Module, int]:
    from transformers.models.molmo2.modeling_molmo2 import Molmo2VisionEncoderLayer

    from stts_core.models.molmo2.build import build_config

    config = build_config(preset).vision_config
    config._attn_implementation = "sdpa"
    layer = Molmo2VisionEncoderLayer(config).to(device=device, dtype=dtype).eval()
    rows, cols = (int(x) // config.patch_size for x in config.image_size)
    return layer, rows * cols


@torch.no_grad()
def suffix_probe(preset: str = "molmo2-4b", frames: int = 128, keep: float = 0.5, device: str | None = None,
                 dtype: torch.dtype | None = None, impls: Sequence[str] = ("flex", "varlen", "rows"),
                 repeats: int = 10) -> dict[str, Any]:
    """One ViT block of `preset` on this device: the stock block on every patch (without and with
    the key bias of block k+1) against the packed block on STTS-like kept tokens, per packed
    attention back end; per-token cost ratios (1.0 = the packed block scales with its tokens) and
    each back end's largest difference from the per-frame reference."""
    from stts_core.methods.packing import PackedLayout, pack, packed_attention

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    layer, patches = _probe_layer(preset, dev, dtype)
    lengths = probe_lengths(frames, patches, keep)
    keep_mask = torch.arange(patches)[None] < torch.tensor(lengths)[:, None]
    layout = PackedLayout.from_mask(keep_mask.to(dev))
    x = torch.randn(frames, patches, layer.embed_dim, device=dev, dtype=dtype)
    bias = torch.randn(frames, 1, 1, patches, device=dev, dtype=dtype)
    tokens = pack(x, layout)
    out: dict[str, Any] = {"preset": preset, "device": str(dev), "dtype": str(dtype), "frames": frames, "keep": keep,
                           "tokens_full": frames * patches, "tokens_packed": layout.total,
                           "stock_block_ms": _time_ms(lambda: layer(x, None), dev, repeats),
                           "stock_bias_block_ms": _time_ms(lambda: layer(x, bias), dev, repeats),
                           "layout_ms": _time_ms(lambda: pack(x, PackedLayout.from_mask(keep_mask.to(dev))), dev,
                                                 repeats)}
    attn = layer.self_attn
    h = layer.layer_norm1(tokens)
    shape = (tokens.shape[0], -1, attn.head_dim)
    q, k, v = attn.q_proj(h).view(shape), attn.k_proj(h).view(shape), attn.v_proj(h).view(shape)
    reference = packed_attention(q, k, v, layout, scale=attn.scaling, backend="loop")
    per_token_stock = out["stock_block_ms"] / out["tokens_full"]
    for impl in impls:
        out[impl] = _probe_impl(impl, layer, tokens, (q, k, v), layout, reference, dev, repeats, per_token_stock)
    return out


def _probe_impl(impl: str, layer: torch.nn.Module, tokens: torch.Tensor, qkv: tuple[torch.Tensor, ...],
                layout: PackedLayout, reference: torch.Tensor, dev: torch.device, repeats: int,
                per_token_stock: float) -> dict[str, Any]:
    """One packed attention back end in the probe: attention and block times, error, per-token ratio."""
    from stts_core.methods.packing import packed_attention

    scale = layer.self_attn.scaling

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return packed_attention(q, k, v, layout, scale=scale, backend=impl)

    try:
        error = float((attend(*qkv).float() - reference.float()).abs().max())
        attention_ms = _time_ms(lambda: attend(*qkv), dev, repeats)
        block_ms = _time_ms(lambda: _packed_layer(layer, tokens, attend), dev, repeats)
    except Exception as err:  # a back end this device or torch lacks is a result, not a failure
        return {"error": f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"}
    return {"attention_ms": attention_ms, "block_ms": block_ms, "max_abs_error": error,
            "per_token_vs_stock": block_ms / layout.total / per_token_stock}


# ------------------------------------------------------------------------- the bench with serving
