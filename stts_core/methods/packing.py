"""Packing the surviving patches of all frames, and attention restricted to each original frame.

The canonical packed form is one concatenated sequence of kept tokens, frame after frame, with
cumulative lengths (`cu_seqlens`): linear layers and MLPs run on it with no padding at all. Only
attention needs to know where frames begin and end, and it has interchangeable back ends:

- ``flash``: flash-attention's variable-length kernel (CUDA, when the package is installed);
- ``flex``: PyTorch FlexAttention with a document mask (CUDA);
- ``frames``: frames grouped by their token count into a few padded batches, one SDPA call per
  batch (any device; the CPU default): attention costs what each frame's own tokens cost (the sum of
  n_t^2), not a full row of N slots per frame, and needs no dense mask; a backend whose whole suffix
  runs on the CPU can keep its tokens in that batch order throughout (`PaddedFrames`), so no block
  gathers or scatters;
- ``rows``: first-fit-decreasing packing into rows of N slots with a block-diagonal mask, run by
  PyTorch SDPA (any device; the reference implementation's layout);
- ``loop``: one SDPA call per frame (the plain reference that the others are tested against).

All give the same numbers as running every frame on its own. `packed_query_attention` is the same
per-frame attention for the block right after scoring, where only the tokens that later blocks keep
need outputs but every patch of the frame is a key (with the scorer's key bias).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ATTENTION_BACKENDS = ("auto", "flash", "varlen", "flex", "frames", "rows", "loop")
# A batched attention call's fixed cost (launch, gathers, scatter) in (query, key) pairs: the frame
# batching below pads a frame to a longer batch only while the padding costs less than another call.
# On the 2-core CPU a call (about ten ops) costs as much as ~65k pairs of 4 heads x 24: the built-in
# model's packed suffix at 16 frames took 7.3 ms instead of 9.0 on an example clip and 8.3-8.7 instead of
# 9.8-10.4 on Big Buck Bunny (2 batches instead of 4-6), 1-4% longer on the synthetic clip (docs/benchmarks.md).
FRAME_CALL_PAIRS = 1 << 16


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bin-pack frames (by surviving-token count) into rows of `capacity` slots.

    Frames are taken longest first (ties by frame index) and each goes to the first row with room.
    Empty frames take no row. Returns, per row, the frame indices in placement order.
    """
    if capacity < 1:
        raise ValueError(f"Row capacity must be positive, got {capacity}.")
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: (-int(lengths[i]), i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = int(lengths[i])
        if n > capacity:
            raise ValueError(f"Frame {i} keeps {n} tokens, more than a row holds ({capacity}).")
        for r, free in enumerate(room):
            if free >= n:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(capacity - n)
    return rows


def refill_lonely_frames(keep: torch.Tensor) -> torch.Tensor:
    """The patches the packed ViT blocks run on: `keep`, except that a frame which first-fit-decreasing
    packing leaves alone in a row runs whole.

    Such a row has room for all of the frame's patches, and no other frame shares it, so the
    reference implementation fills the frame back in: its kept patches then see the frame's full
    context, exactly as if the frame had not been pruned. The filled-in patches are not kept for
    the connector or the LLM. Frames with nothing kept take no row and stay empty.
    """
    if keep.dim() != 2 or keep.dtype != torch.bool:
        raise ValueError("The patch keep mask must be a (frames, patches) boolean tensor.")
    rows = first_fit_decreasing(keep.sum(1).tolist(), keep.shape[1])
    lonely = [row[0] for row in rows if len(row) == 1]
    if not lonely:
        return keep
    run = keep.clone()
    run[lonely] = True
    return run


def plan_frame_batches(lengths: Sequence[int], keys: int | None = None,
                       call_pairs: int = FRAME_CALL_PAIRS, slot_pairs: int = 0) -> list[list[int]]:
    """Frames (by token count) grouped into padded attention batches, the cheapest grouping in
    (query, key) pairs plus `call_pairs` per batch.

    Frames are sorted longest first and cut into consecutive runs; a run pads every frame to its
    longest. `keys` None: each frame's keys are its own tokens (self-attention, cost B * L * L);
    an integer: every frame has that many keys (cost B * L * keys). Empty frames take no batch.
    `slot_pairs`: what every padded slot costs besides its attention, for layouts whose linear layers
    run on the padding too (`PaddedFrames`). An exact search over the distinct lengths (at most one
    per kept-group count).
    """
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: (-int(lengths[i]), i))
    if not order:
        return []
    distinct = sorted({int(lengths[i]) for i in order}, reverse=True)
    count = {n: 0 for n in distinct}
    for i in order:
        count[int(lengths[i])] += 1
    cum = [0]
    for n in distinct:
        cum.append(cum[-1] + count[n])
    best, cut = [0] + [None] * len(distinct), [0] * (len(distinct) + 1)
    for j in range(1, len(distinct) + 1):
        for i in range(j):
            width = distinct[i]
            cost = best[i] + (cum[j] - cum[i]) * width * ((width if keys is None else keys) + slot_pairs) + call_pairs
            if best[j] is None or cost < best[j]:
                best[j], cut[j] = cost, i
    bounds, j = [], len(distinct)
    while j > 0:
        bounds.append((distinct[cut[j]], distinct[j - 1]))
        j = cut[j]
    batches = []
    for longest, shortest in reversed(bounds):
        batches.append([i for i in order if shortest <= int(lengths[i]) <= longest])
    return batches


@dataclass(frozen=True)
class FrameBatch:
    """Frames that attend in one padded SDPA call: their tokens' packed positions, (B, L)."""

    frames: torch.Tensor  # (B,) original frame indices
    index: torch.Tensor  # (B, L) packed position of every slot; padding repeats the frame's first token
    valid: torch.Tensor | None  # (B, L) real tokens; None when every frame of the batch has L tokens
    dest: torch.Tensor  # (real tokens,) packed positions of the real slots, in (B, L) order
    rows: torch.Tensor | None  # (real tokens,) flat slot of each real token in B * L; None when all are real
    span: tuple[int, int] | None = None  # (start, end) when the batch is one unpadded run of the packed sequence
    frame_span: tuple[int, int] | None = None  # (first, last + 1) when the frames are consecutive

    @classmethod
    def build(cls, frames: list[int], lengths: Sequence[int], starts: Sequence[int], device: torch.device
              ) -> FrameBatch:
        """The batch of `frames`, from the per-frame token counts and start offsets (host integers: the
        index arithmetic runs in numpy, then each index moves to `device` once)."""
        n = np.asarray([lengths[i] for i in frames], dtype=np.int64)
        first = np.asarray([starts[i] for i in frames], dtype=np.int64)
        width = int(n.max())
        slot = np.arange(width, dtype=np.int64)[None]
        valid = slot < n[:, None]
        index = np.where(valid, first[:, None] + slot, first[:, None])
        consecutive = frames == list(range(frames[0], frames[0] + len(frames)))

        def to(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        ids, frame_span = to(np.asarray(frames, dtype=np.int64)), (frames[0], frames[-1] + 1) if consecutive else None
        if bool(valid.all()):
            span = (int(index[0, 0]), int(index[0, 0]) + index.size) if consecutive else None
            flat = to(index.reshape(-1))
            return cls(frames=ids, index=flat.view(index.shape), valid=None, dest=flat, rows=None, span=span,
                       frame_span=frame_span)
        return cls(frames=ids, index=to(index), valid=to(valid), dest=to(index[valid]),
                   rows=to(np.flatnonzero(valid.reshape(-1))), frame_span=frame_span)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """(total, H, d) packed -> (B, H, L, d) padded batch (a view when the batch is one unpadded run)."""
        b, width = self.index.shape
        if self.span is not None:
            return x[self.span[0]:self.span[1]].view(b, width, *x.shape[1:]).transpose(1, 2)
        return x.index_select(0, self.index.reshape(-1)).view(b, width, *x.shape[1:]).transpose(1, 2)

    def frames_of(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of a per-frame tensor (T, ...) for the batch's frames (a view when they are consecutive)."""
        if self.frame_span is not None:
            return x[self.frame_span[0]:self.frame_span[1]]
        return x.index_select(0, self.frames)

    def scatter(self, out: torch.Tensor, batch: torch.Tensor) -> None:
        """Write a (B, H, L, d) batch's real slots into the packed (total, H, d) `out`."""
        flat = batch.transpose(1, 2).reshape(-1, *out.shape[1:])
        if self.span is not None:
            out[self.span[0]:self.span[1]] = flat
            return
        out.index_copy_(0, self.dest, flat if self.rows is None else flat.index_select(0, self.rows))


@dataclass
class PackedLayout:
    """Where every kept token of a (T, N) grid lives in the packed sequence.

    Built once per video and shared by every packed ViT block (and cached per-back-end state).
    """

    keep: torch.Tensor  # (T, N) bool
    lengths: torch.Tensor  # (T,) int64, on the CPU
    flat_index: torch.Tensor  # (total,) int64 index into the flattened T*N grid, frame-major
    cu_seqlens: torch.Tensor  # (T+1,) int32, on keep's device
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_mask(cls, keep: torch.Tensor) -> PackedLayout:
        if keep.dim() != 2 or keep.dtype != torch.bool:
            raise ValueError("The patch keep mask must be a (frames, patches) boolean tensor.")
        lengths = keep.sum(1).cpu()
        flat_index = keep.reshape(-1).nonzero().squeeze(1)
        cu = torch.zeros(keep.shape[0] + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(lengths, 0)
        return cls(keep=keep, lengths=lengths, flat_index=flat_index, cu_seqlens=cu.to(keep.device))

    @property
    def num_frames(self) -> int:
        return self.keep.shape[0]

    @property
    def capacity(self) -> int:
        return self.keep.shape[1]

    @property
    def total(self) -> int:
        return int(self.flat_index.numel())

    @property
    def max_seqlen(self) -> int:
        return int(self.lengths.max()) if self.lengths.numel() else 0

    @property
    def rows(self) -> list[list[int]]:
        if "rows" not in self._cache:
            self._cache["rows"] = first_fit_decreasing(self.lengths.tolist(), self.capacity)
        return self._cache["rows"]

    def frame_ids(self) -> torch.Tensor:
        """(total,) the original frame of every packed token."""
        if "frame_ids" not in self._cache:
            frames = torch.arange(self.num_frames, device=self.keep.device)
            self._cache["frame_ids"] = torch.repeat_interleave(frames, self.lengths.to(self.keep.device))
        return self._cache["frame_ids"]

    def frame_batches(self, keys: int | None = None, slot_pairs: int = 0) -> list[FrameBatch]:
        """The frames grouped for batched attention (`plan_frame_batches`), built once per layout.
        `keys` None: self-attention among each frame's packed tokens; an integer: every frame has that
        many keys (the block after scoring, whose keys are all of the frame's patches)."""
        name = ("frame_batches", keys, slot_pairs)
        if name not in self._cache:
            lengths = self.lengths.tolist()
            starts = [0, *np.cumsum(lengths).tolist()]
            self._cache[name] = [FrameBatch.build(frames, lengths, starts, self.keep.device)
                                 for frames in plan_frame_batches(lengths, keys, slot_pairs=slot_pairs)]
        return self._cache[name]

    def row_slots(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(total,) slot of every packed token in the flattened (rows, N) grid, and the (rows, 1, N, N)
        block-diagonal mask. Empty slots attend only to themselves so no row of softmax is empty."""
        if "row_slots" not in self._cache:
            cap, starts = self.capacity, self.cu_seqlens.cpu().tolist()
            slot = torch.empty(self.total, dtype=torch.long)
            segment = torch.full((len(self.rows) * cap,), -1, dtype=torch.long)
            for r, frames in enumerate(self.rows):
                offset = r * cap
                for t in frames:
                    n = int(self.lengths[t])
                    slot[starts[t] : starts[t] + n] = torch.arange(offset, offset + n)
                    segment[offset : offset + n] = t
                    offset += n
            device = self.keep.device
            seg = segment.view(len(self.rows), cap).to(device)
            same = (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] >= 0)
            same |= torch.eye(cap, dtype=torch.bool, device=device)[None] & (seg[:, :, None] < 0)
            self._cache["row_slots"] = (slot.to(device), same[:, None])
        return self._cache["row_slots"]


def pack(x: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
    """(T, N, D) grid -> (total, D) kept tokens, frame after frame."""
    return x.reshape(-1, x.shape[-1]).index_select(0, layout.flat_index)


def unpack(tokens: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
    """(total, D) -> (T, N, D) with every token back in its place and zeros where patches were pruned."""
    t, n = layout.keep.shape
    out = tokens.new_zeros(t * n, tokens.shape[-1])
    return out.index_copy(0, layout.flat_index, tokens).view(t, n, -1)


def _cuda_kernel_available(device: torch.device, module: str) -> bool:
    """A CUDA device and an importable kernel module (flash-attn, or torch's own varlen attention)."""
    if device.type != "cuda":
        return False
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _flash_available(device: torch.device) -> bool:
    return _cuda_kernel_available(device, "flash_attn")


def resolve_backend(backend: str, device: torch.device) -> str:
    """Pick the fastest back end this device supports for 'auto'; check explicit choices."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"Unknown attention back end {backend!r}; choose one of {ATTENTION_BACKENDS}.")
    if backend == "auto":
        if _flash_available(device):
            return "flash"
        return "flex" if device.type == "cuda" else "frames"
    if backend == "flash" and not _flash_available(device):
        raise ValueError("The flash back end needs CUDA and the flash-attn package.")
    if backend == "varlen" and not _varlen_available(device):
        raise ValueError("The varlen back end needs CUDA and torch.nn.attention.varlen (torch >= 2.10).")
    return backend


def _varlen_available(device: torch.device) -> bool:
    return _cuda_kernel_available(device, "torch.nn.attention.varlen")


def _attend_varlen(q, k, v, layout: PackedLayout, scale: float | None) -> torch.Tensor:
    """PyTorch's own flash variable-length kernel: per-frame attention from the cumulative frame
    lengths, no mask and no padding of the head dimension (docs/serving.md: why flex is slower here).
    Not chosen by "auto" until a GPU run has measured it."""
    from torch.nn.attention.varlen import varlen_attn

    default = q.shape[-1] ** -0.5
    if scale is not None and abs(scale - default) > 1e-6 * default:
        q = q * (scale / default)  # the kernel's own scale argument is newer than the function
    cu = layout.cu_seqlens.to(device=q.device, dtype=torch.int32)
    return varlen_attn(q, k, v, cu, cu, layout.max_seqlen, layout.max_seqlen)


def _attend_rows(q, k, v, layout: PackedLayout, scale: float | None) -> torch.Tensor:
    slot, mask = layout.row_slots()
    rows, cap = mask.shape[0], layout.capacity

    def to_rows(x: torch.Tensor) -> torch.Tensor:
        grid = x.new_zeros(rows * cap, *x.shape[1:]).index_copy(0, slot, x)
        return grid.view(rows, cap, *x.shape[1:]).transpose(1, 2)

    out = F.scaled_dot_product_attention(to_rows(q), to_rows(k), to_rows(v), attn_mask=mask, scale=scale)
    return out.transpose(1, 2).reshape(rows * cap, *q.shape[1:]).index_select(0, slot)


def batch_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                    scale: float | None) -> torch.Tensor:
    """Attention of (B, H, L, d) queries over (B, H, K, d) keys and values with an optional boolean
    (True = attend) or additive key mask broadcastable to (B, H, L, K), by SDPA on every device.

    On the 2-core CPU (torch 2.14) SDPA's fused kernel is as fast as or faster than matmul, softmax,
    matmul on the pruned suffix's batches too (2 x 144 tokens 0.27 against 0.40 ms, 2 x 72 queries over
    144 keys 0.11 against 0.18 ms, 14 x 72 equal), and the built-in model's packed suffix took 0.5 ms less
    at 16 frames and 1.3 ms less at 64 without the three-op path (docs/benchmarks.md)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def _attend_frames(q, k, v, layout: PackedLayout, scale: float | None) -> torch.Tensor:
    """Per-frame attention in a few padded batches (`PackedLayout.frame_batches`): the padded keys of
    a batch are masked out, padded queries are computed and dropped."""
    out = q.new_empty(q.shape)
    for batch in layout.frame_batches():
        mask = None if batch.valid is None else batch.valid[:, None, None, :]
        batch.scatter(out, batch_attention(batch.gather(q), batch.gather(k), batch.gather(v), mask, scale))
    return out


def _attend_loop(q, k, v, layout: PackedLayout, scale: float | None) -> torch.Tensor:
    out = torch.empty_like(q)
    starts = layout.cu_seqlens.cpu().tolist()
    for a, b in pairwise(starts):
        if b > a:
            seg = [x[a:b].transpose(0, 1)[None] for x in (q, k, v)]
            out[a:b] = F.scaled_dot_product_attention(*seg, scale=scale)[0].transpose(0, 1)
    return out


_compiled_flex = None
FLEX_BLOCK = 128


def frame_block_mask(layout: PackedLayout, device: torch.device, block: int = FLEX_BLOCK) -> Any:
    """FlexAttention's block mask for "same frame", built from the frame boundaries.

    `create_block_mask` would evaluate the mask on every (query, key) pair: for the 93k packed
    tokens of 256 Molmo2 frames at keep 0.5 that raised peak GPU memory from 15.5 to 92.4 GB. Frames are contiguous
    in the packed sequence, so each query block sees one contiguous run of key blocks (those
    touching its first to its last frame), and a key block is "full" (no masking inside) when it
    and the query block lie within one frame.
    """
    from torch.nn.attention.flex_attention import BlockMask

    total = layout.total
    doc = layout.frame_ids().to(device)
    cu = layout.cu_seqlens.to(device=device, dtype=torch.long)
    n = -(-total // block)
    starts = torch.arange(n, device=device) * block
    ends = (starts + block).clamp(max=total)
    first, last = doc[starts], doc[ends - 1]
    lo, hi = cu[first] // block, (cu[last + 1] - 1) // block
    kv = lo[:, None] + torch.arange(n, device=device)[None]
    touched = kv <= hi[:, None]
    inside = (first == last) & (ends - starts == block)
    full = touched & inside[:, None] & (kv * block >= cu[first][:, None]) & ((kv + 1) * block <= cu[first + 1][:, None])
    partial = touched & ~full

    def compact(chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The chosen block indices of every row first, in increasing order, then padding.
        key = torch.where(chosen, kv, kv.new_full((), n + 1))
        order = key.sort(dim=1).values.clamp(max=n - 1)
        return chosen.sum(1).to(torch.int32)[None, None], order.to(torch.int32)[None, None]

    def same_frame(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        return doc[q_idx] == doc[kv_idx]

    num, idx = compact(partial)
    full_num, full_idx = compact(full)
    return BlockMask.from_kv_blocks(num, idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=same_frame,
                                    seq_lengths=(total, total))


def _attend_flex(q, k, v, layout: PackedLayout, scale: float | None) -> torch.Tensor:
    from torch.nn.attention.flex_attention import flex_attention

    global _compiled_flex
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=True)
    if "flex_mask" not in layout._cache:
        layout._cache["flex_mask"] = frame_block_mask(layout, q.device)
    qh, kh, vh = (x.transpose(0, 1)[None] for x in (q, k, v))
    out = _compiled_flex(qh, kh, vh, block_mask=layout._cache["flex_mask"], scale=scale)
    return out[0].transpose(0, 1)


def _attend_flash(q, k, v, layout: PackedLayout, scale: float | None) -> torch.Tensor:
    from flash_attn import flash_attn_varlen_func

    m = layout.max_seqlen
    return flash_attn_varlen_func(q, k, v, layout.cu_seqlens, layout.cu_seqlens, m, m, softmax_scale=scale)


def packed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: PackedLayout,
    scale: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Attention over packed tokens (total, heads, head_dim), each token seeing only its own frame.

    Key/value heads fewer than query heads (grouped-query attention) are repeated to match.
    """
    if q.shape[0] != layout.total:
        raise ValueError(f"Got {q.shape[0]} packed tokens but the layout holds {layout.total}.")
    if k.shape[1] != q.shape[1]:
        reps = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(reps, dim=1), v.repeat_interleave(reps, dim=1)
    if layout.total == 0:
        return q.clone()
    impl = {"flash": _attend_flash, "varlen": _attend_varlen, "flex": _attend_flex, "frames": _attend_frames,
            "rows": _attend_rows, "loop": _attend_loop}
    return impl[resolve_backend(backend, q.device)](q, k, v, layout, scale)


def packed_query_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: PackedLayout,
    key_bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Packed queries (total, heads, head_dim) over every key of their own frame, k and v (T, N, kv
    heads, head_dim), with an optional additive key bias (T, N).

    The block right after scoring needs outputs only at the tokens the later blocks run on, but its
    keys are all of the frame's patches with the scorer's bias: the same numbers as the whole block
    on every patch, read at those tokens, for about the kept fraction of its attention. Frames are
    batched by query count (`PackedLayout.frame_batches(keys=N)`); keys are never padded.
    """
    if q.shape[0] != layout.total:
        raise ValueError(f"Got {q.shape[0]} packed queries but the layout holds {layout.total}.")
    if k.shape[:2] != layout.keep.shape or v.shape[:2] != layout.keep.shape:
        raise ValueError(f"Keys must cover the {tuple(layout.keep.shape)} grid, got {tuple(k.shape[:2])}.")
    if k.shape[2] != q.shape[1]:
        reps = q.shape[1] // k.shape[2]
        k, v = k.repeat_interleave(reps, dim=2), v.repeat_interleave(reps, dim=2)
    out = q.new_empty(q.shape)
    for batch in layout.frame_batches(keys=layout.capacity):
        mask = None
        if key_bias is not None:
            mask = batch.frames_of(key_bias)[:, None, None, :].to(q.dtype)
        kb, vb = (batch.frames_of(x).transpose(1, 2) for x in (k, v))
        batch.scatter(out, batch_attention(batch.gather(q), kb, vb, mask, scale))
    return out


def padded_slot_pairs(hidden: int, intermediate: int) -> int:
    """A padded slot's cost in a transformer block with these widths, in attention (query, key) pairs:
    its projections and MLP take 4 * hidden^2 + 2 * hidden * intermediate multiply-adds, a pair 2 * hidden."""
    return 2 * hidden + intermediate


@dataclass(frozen=True)
class PaddedFrames:
    """The packed tokens laid out batch after batch of `PackedLayout.frame_batches()`, every frame padded
    to its batch's width: the CPU suffix's working order.

    In this order each attention batch is a contiguous run of slots, so the later ViT blocks read their
    batches as views instead of gathering q, k and v and scattering the output in every block; the
    tokens are gathered once on entry and put back into packed order once on exit. Padding slots repeat
    a real token of their frame, are masked out as keys and are dropped on exit; linear layers and MLPs
    run on them too (a few percent of the tokens, where batching pads little).
    """

    slots: torch.Tensor  # (S,) packed position of every padded slot
    back: torch.Tensor  # (total,) padded slot of every packed token
    batches: tuple[tuple[int, FrameBatch], ...]  # (first slot, batch) in slot order
    grid: torch.Tensor  # (S,) index of every padded slot into the flattened (T * N) grid

    @classmethod
    def from_layout(cls, layout: PackedLayout, slot_pairs: int = 0) -> PaddedFrames:
        """Built once per layout and `slot_pairs` (cached on the layout). `slot_pairs`: what a padded slot
        costs in its linear layers and MLP, in attention (query, key) pairs, so the batching pads only
        where the saved calls pay for it; `padded_slot_pairs` estimates it from a block's widths."""
        name = ("padded", slot_pairs)
        if name in layout._cache:
            return layout._cache[name]
        device = layout.keep.device
        slots, back, batches, start = [], torch.empty(layout.total, dtype=torch.long, device=device), [], 0
        for batch in layout.frame_batches(slot_pairs=slot_pairs):
            b, width = batch.index.shape
            slots.append(batch.index.reshape(-1))
            rows = batch.rows if batch.rows is not None else torch.arange(b * width, device=device)
            back[batch.dest] = start + rows
            batches.append((start, batch))
            start += b * width
        empty = torch.zeros(0, dtype=torch.long, device=device)
        padded = cls(slots=torch.cat(slots) if slots else empty, back=back, batches=tuple(batches),
                     grid=layout.flat_index.index_select(0, torch.cat(slots)) if slots else empty)
        layout._cache[name] = padded
        return padded

    @property
    def size(self) -> int:
        return int(self.slots.numel())

    def from_grid(self, x: torch.Tensor) -> torch.Tensor:
        """(T, N, ...) grid -> (S, ...) padded slots."""
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.grid)

    def to_packed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(S, ...) padded slots -> (total, ...) packed tokens, frame after frame."""
        return tokens.index_select(0, self.back)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None) -> torch.Tensor:
        """Per-frame self-attention of padded (S, H, d) q, k, v -> (S, H, d); padded keys are masked out
        and padded queries give values that `to_packed` drops."""
        if k.shape[1] != q.shape[1]:
            reps = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(reps, dim=1), v.repeat_interleave(reps, dim=1)
        out = q.new_empty(q.shape)
        for start, batch in self.batches:
            (b, width), end = batch.index.shape, start + batch.index.numel()
            mask = None if batch.valid is None else batch.valid[:, None, None, :]
            qb, kb, vb = (x[start:end].view(b, width, *x.shape[1:]).transpose(1, 2) for x in (q, k, v))
            out[start:end].view(b, width, *q.shape[1:]).copy_(batch_attention(qb, kb, vb, mask, scale).transpose(1, 2))
        return out

    def query_attention(self, q: torch.Tensor, grid: torch.Tensor,
                        keys_values: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                        key_bias: torch.Tensor | None, scale: float | None) -> torch.Tensor:
        """Padded queries (S, H, d) over every key of their own frame, with an optional additive key bias
        (T, N): `packed_query_attention` in the padded order. Keys and values come from `keys_values` on
        each batch's frames of `grid` (T, N, D) -> (B, N, kv heads, d) each, so a batch of frames that
        are not consecutive gathers its input rows once rather than its keys and its values."""
        out = q.new_empty(q.shape)
        for start, batch in self.batches:
            (b, width), end = batch.index.shape, start + batch.index.numel()
            mask = None if key_bias is None else batch.frames_of(key_bias)[:, None, None, :].to(q.dtype)
            k, v = keys_values(batch.frames_of(grid))
            if k.shape[2] != q.shape[1]:
                reps = q.shape[1] // k.shape[2]
                k, v = k.repeat_interleave(reps, dim=2), v.repeat_interleave(reps, dim=2)
            qb = q[start:end].view(b, width, *q.shape[1:]).transpose(1, 2)
            attended = batch_attention(qb, k.transpose(1, 2), v.transpose(1, 2), mask, scale)
            out[start:end].view(b, width, *q.shape[1:]).copy_(attended.transpose(1, 2))
        return out
