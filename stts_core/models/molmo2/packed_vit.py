"""Molmo2's ViT blocks after scoring on packed tokens: the stock block's own modules, attention per frame.

- `scored_block`: block k+1. Every patch of a frame is a key (with the scorer's log-score bias), but
  only the tokens the later blocks run on need an output, so its queries, output projection and MLP
  run on those tokens alone: the same numbers as the stock block on every patch, read there.
- `packed_block`: blocks k+2..L on the packed tokens (`methods.packing`).
- `padded_scored_block` / `padded_block`: the same two in the padded batch order of `PaddedFrames`
  (the CPU path: attention batches read as views, no gather or scatter inside a block).
- `PackedViTState`: the suffix's features kept packed, so the connector pools the kept groups straight
  from them; the (T, N, D) grids of `ViTState.saved` are unpacked only when something reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from stts_core.methods.packing import PackedLayout, PaddedFrames, pack, packed_attention, packed_query_attention, unpack
from stts_core.models.base import ViTState


def scored_block(layer: nn.Module, x: torch.Tensor, layout: PackedLayout, bias: torch.Tensor | None) -> torch.Tensor:
    """Block k+1 (a `Molmo2VisionEncoderLayer`) on the (T, N, D) grid `x` with the key bias (T, N),
    evaluated at the layout's tokens only -> (total, D) packed."""
    attn = layer.self_attn
    h = layer.layer_norm1(x)  # (T, N, D): every patch is a key
    grid = (*x.shape[:2], -1, attn.head_dim)
    k, v = attn.k_proj(h).view(grid), attn.v_proj(h).view(grid)  # (T, N, kv heads, head_dim)
    q = attn.q_proj(pack(h, layout)).view(layout.total, -1, attn.head_dim)  # (total, heads, head_dim)
    o = packed_query_attention(q, k, v, layout, key_bias=bias, scale=attn.scaling)
    tokens = pack(x, layout) + attn.o_proj(o.reshape(layout.total, -1))
    return tokens + layer.mlp(layer.layer_norm2(tokens))


def packed_block(layer: nn.Module, tokens: torch.Tensor, layout: PackedLayout, backend: str) -> torch.Tensor:
    """One later block on packed tokens (total, D): the block's own modules, attention within each frame."""
    attn = layer.self_attn
    h = layer.layer_norm1(tokens)
    shape = (tokens.shape[0], -1, attn.head_dim)
    q, k, v = attn.q_proj(h).view(shape), attn.k_proj(h).view(shape), attn.v_proj(h).view(shape)
    o = packed_attention(q, k, v, layout, scale=attn.scaling, backend=backend)
    tokens = tokens + attn.o_proj(o.reshape(tokens.shape[0], -1))
    return tokens + layer.mlp(layer.layer_norm2(tokens))


def padded_scored_block(layer: nn.Module, x: torch.Tensor, padded: PaddedFrames, bias: torch.Tensor | None
                        ) -> torch.Tensor:
    """`scored_block` with its outputs in the padded order -> (S, D)."""
    attn = layer.self_attn
    h = layer.layer_norm1(x)

    def keys_values(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (*frames.shape[:2], -1, attn.head_dim)
        return attn.k_proj(frames).view(shape), attn.v_proj(frames).view(shape)

    q = attn.q_proj(padded.from_grid(h)).view(padded.size, -1, attn.head_dim)
    o = padded.query_attention(q, h, keys_values, bias, scale=attn.scaling)
    tokens = padded.from_grid(x) + attn.o_proj(o.reshape(padded.size, -1))
    return tokens + layer.mlp(layer.layer_norm2(tokens))


def padded_block(layer: nn.Module, tokens: torch.Tensor, padded: PaddedFrames) -> torch.Tensor:
    """`packed_block` on (S, D) tokens in the padded order."""
    attn = layer.self_attn
    h = layer.layer_norm1(tokens)
    shape = (tokens.shape[0], -1, attn.head_dim)
    q, k, v = attn.q_proj(h).view(shape), attn.k_proj(h).view(shape), attn.v_proj(h).view(shape)
    o = padded.attention(q, k, v, scale=attn.scaling)
    tokens = tokens + attn.o_proj(o.reshape(tokens.shape[0], -1))
    return tokens + layer.mlp(layer.layer_norm2(tokens))


class UnpackedGrids(Mapping):
    """Layer -> (T, N, D) grid with pruned places zero, unpacked from the packed features on first read
    (patches that ran only as a refilled frame's context are zeroed too). `packed(layer)` gives a later
    layer's tokens in packed order."""

    def __init__(self, earlier: Mapping[int, torch.Tensor], later: set[int],
                 packed: Callable[[int], torch.Tensor], layout: PackedLayout, kept: torch.Tensor) -> None:
        self._grids = dict(earlier)
        self._later = later
        self._packed = packed
        self._layout = layout
        self._kept = kept

    def __getitem__(self, layer: int) -> torch.Tensor:
        if layer not in self._grids:
            if layer not in self._later:
                raise KeyError(layer)
            grid = unpack(self._packed(layer), self._layout)
            if not torch.equal(self._kept, self._layout.keep):
                grid = grid * self._kept[..., None].to(grid.dtype)
            self._grids[layer] = grid
        return self._grids[layer]

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(set(self._grids) | self._later))

    def __len__(self) -> int:
        return len(set(self._grids) | self._later)


class PackedViTState(ViTState):
    """The pruned suffix's output: `packed[i]` the tokens of `layout` after block i (in packed order, or
    in the padded order of `padded` when the suffix ran in it), `kept` the (T, N) patches the connector
    may read. `hidden` and `saved` are the `ViTState` grids, unpacked on demand."""

    def __init__(self, earlier: Mapping[int, torch.Tensor], packed: dict[int, torch.Tensor], layout: PackedLayout,
                 kept: torch.Tensor, last: int, padded: PaddedFrames | None = None) -> None:
        self.saved = UnpackedGrids(earlier, set(packed), self.packed_order, layout, kept)  # type: ignore[assignment]
        self.packed = packed
        self.layout = layout
        self.kept = kept
        self.last = last
        self.padded = padded

    @property  # type: ignore[override]
    def hidden(self) -> torch.Tensor:
        return self.saved[self.last]

    def packed_order(self, layer: int) -> torch.Tensor:
        """A later layer's (total, D) tokens, frame after frame."""
        tokens = self.packed[layer]
        return tokens if self.padded is None else self.padded.to_packed(tokens)

    def pooled_inputs(self, layers: list[int], pooling: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The connector's inputs without unpacking or reordering: features (1, rows, D * layers) of the
        stored tokens (layers concatenated as `connect` does) and `pooling` (kept groups, P) re-pointed
        from grid patches to those rows (-1 stays padding). Every pooled patch must have run."""
        features = torch.cat([self._stored_or_grid(i) for i in layers], dim=-1)[None]
        where = torch.full((self.layout.keep.numel(),), -1, dtype=torch.long, device=pooling.device)
        rows = (torch.arange(self.layout.total, device=pooling.device) if self.padded is None
                else self.padded.back.to(pooling.device))
        where[self.layout.flat_index.to(pooling.device)] = rows
        moved = torch.where(pooling >= 0, where[pooling.clamp(min=0)], pooling)
        if bool(((moved < 0) & (pooling >= 0)).any()):
            raise ValueError("A kept group pools a patch that the packed ViT blocks did not run.")
        return features, moved

    def _stored_or_grid(self, layer: int) -> torch.Tensor:
        if layer in self.packed:
            return self.packed[layer]
        grid = self.saved[layer]  # a feature layer before the pruning
        return pack(grid, self.layout) if self.padded is None else self.padded.from_grid(grid)
