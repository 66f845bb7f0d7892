"""Packing kept tokens and frame-restricted attention: every back end equals running each frame alone."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from stts_core.methods.packing import (
    ATTENTION_BACKENDS,
    PackedLayout,
    first_fit_decreasing,
    frame_block_mask,
    pack,
    packed_attention,
    refill_lonely_frames,
    resolve_backend,
    unpack,
)

HYPOTHESIS = settings(max_examples=60, deadline=None, derandomize=True)


def reference_ffd(lengths: list[int], capacity: int) -> list[list[int]]:
    frames = [i for i in range(len(lengths)) if lengths[i] > 0]
    frames.sort(key=lambda i: lengths[i], reverse=True)
    rows: list[list[int]] = []
    for i in frames:
        for row in rows:
            if sum(lengths[j] for j in row) + lengths[i] <= capacity:
                row.append(i)
                break
        else:
            rows.append([i])
    return rows


def mask_with_lengths(lengths: list[int], capacity: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    keep = torch.zeros(len(lengths), capacity, dtype=torch.bool)
    for t, n in enumerate(lengths):
        keep[t, torch.randperm(capacity, generator=gen)[:n]] = True
    return keep


# ---------------------------------------------------------------- first fit decreasing


def test_ffd_known_example():
    # order 0 (5), 2 (4), 1 (3), 3 (2); 3 fits beside 2, not beside 0 or 1; frame 4 is empty.
    assert first_fit_decreasing([5, 3, 4, 2, 0], 6) == [[0], [2, 3], [1]]


@pytest.mark.parametrize(
    ("lengths", "capacity", "rows"),
    [
        ([2, 2, 2], 4, [[0, 1], [2]]),
        ([3, 3, 3, 3], 6, [[0, 1], [2, 3]]),
        ([1, 4, 1, 4], 5, [[1, 0], [3, 2]]),
        ([6, 6], 6, [[0], [1]]),
        ([0, 0, 0], 4, []),
        ([], 4, []),
        ([1, 2, 3, 4, 5], 5, [[4], [3, 0], [2, 1]]),
    ],
)
def test_ffd_small_cases(lengths, capacity, rows):
    assert first_fit_decreasing(lengths, capacity) == rows


def test_ffd_errors():
    with pytest.raises(ValueError):
        first_fit_decreasing([3, 7, 2], 6)
    with pytest.raises(ValueError):
        first_fit_decreasing([1], 0)


@HYPOTHESIS
@given(
    capacity=st.integers(1, 16),
    data=st.data(),
)
def test_ffd_invariants_and_reference(capacity, data):
    lengths = data.draw(st.lists(st.integers(0, capacity), max_size=20))
    rows = first_fit_decreasing(lengths, capacity)
    placed = [t for row in rows for t in row]
    assert sorted(placed) == [t for t, n in enumerate(lengths) if n > 0]
    assert all(row for row in rows)
    assert all(sum(lengths[t] for t in row) <= capacity for row in rows)
    assert rows == reference_ffd(lengths, capacity)
    layout = PackedLayout.from_mask(mask_with_lengths(lengths, capacity))
    assert len(layout.rows) == len(reference_ffd(lengths, capacity))


# ---------------------------------------------------------------- layout, pack, unpack


def random_mask(gen: torch.Generator, num_frames: int, capacity: int) -> torch.Tensor:
    """A keep mask mixing empty, full and partly kept frames."""
    keep = torch.zeros(num_frames, capacity, dtype=torch.bool)
    for t in range(num_frames):
        mode = int(torch.randint(4, (1,), generator=gen))
        if mode == 1:
            keep[t] = True
        elif mode >= 2:
            keep[t] = torch.rand(capacity, generator=gen) < float(torch.rand(1, generator=gen))
    return keep


@pytest.mark.parametrize("seed", range(8))
def test_layout_fields(seed):
    gen = torch.Generator().manual_seed(seed)
    keep = random_mask(gen, 7, 10)
    layout = PackedLayout.from_mask(keep)
    assert layout.total == int(keep.sum())
    assert layout.num_frames == 7 and layout.capacity == 10
    assert torch.equal(layout.lengths, keep.sum(1))
    assert layout.cu_seqlens.dtype == torch.int32
    assert layout.cu_seqlens.tolist() == [0, *torch.cumsum(keep.sum(1), 0).tolist()]
    flat = layout.flat_index
    assert flat.numel() == torch.unique(flat).numel()
    assert torch.equal(flat, torch.sort(flat).values)
    assert torch.equal(flat, keep.reshape(-1).nonzero().flatten())
    assert torch.equal(layout.frame_ids(), flat // 10)
    assert layout.max_seqlen == int(keep.sum(1).max())
    slot, mask = layout.row_slots()
    assert slot.numel() == layout.total == torch.unique(slot).numel()
    assert mask.shape == (len(layout.rows), 1, 10, 10)


def test_layout_rejects_non_boolean_mask():
    with pytest.raises(ValueError):
        PackedLayout.from_mask(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError):
        PackedLayout.from_mask(torch.ones(6, dtype=torch.bool))


@pytest.mark.parametrize("seed", range(8))
def test_pack_unpack_roundtrip(seed):
    gen = torch.Generator().manual_seed(seed)
    keep = random_mask(gen, 6, 9)
    x = torch.randn(6, 9, 5, generator=gen)
    layout = PackedLayout.from_mask(keep)
    packed = pack(x, layout)
    assert packed.shape == (int(keep.sum()), 5)
    assert torch.equal(packed, x[keep])
    back = unpack(packed, layout)
    assert back.shape == x.shape
    assert torch.equal(back[keep], x[keep])
    assert torch.equal(back[~keep], torch.zeros_like(x[~keep]))


# ---------------------------------------------------------------- the key property


class Block(nn.Module):
    """Pre-LN transformer block; attention runs either on packed tokens or on one frame's tokens."""

    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        with torch.no_grad():
            for ln in (self.ln1, self.ln2):
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.normal_(0, 0.1)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.ln1(x)
        return tuple(proj(h).view(-1, self.heads, self.hd) for proj in (self.q, self.k, self.v))

    def _finish(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        x = x + self.o(attn.reshape(x.shape[0], self.heads * self.hd))
        return x + self.mlp(self.ln2(x))

    def packed(self, tokens: torch.Tensor, layout: PackedLayout, backend: str, scale: float | None) -> torch.Tensor:
        q, k, v = self._qkv(tokens)
        return self._finish(tokens, packed_attention(q, k, v, layout, scale=scale, backend=backend))

    def one_frame(self, tokens: torch.Tensor, scale: float | None) -> torch.Tensor:
        q, k, v = self._qkv(tokens)
        s = self.hd**-0.5 if scale is None else scale
        weights = torch.softmax(torch.einsum("qhd,khd->hqk", q, k) * s, dim=-1)
        return self._finish(tokens, torch.einsum("hqk,khd->qhd", weights, v))


def key_cases() -> list[tuple[str, torch.Tensor]]:
    cases = [
        ("single_frame_partial", torch.tensor([[True, False, True, True, False, True]])),
        ("single_frame_full", torch.ones(1, 9, dtype=torch.bool)),
        ("all_full", torch.ones(5, 7, dtype=torch.bool)),
        ("with_empty", torch.tensor([[True, True, False], [False, False, False], [True, False, True], [False] * 3])),
        ("empty_first", torch.tensor([[False] * 4, [True] * 4, [False, True, False, True]])),
        ("one_token_each", torch.eye(6, dtype=torch.bool)),
        ("patch_zero_only", torch.zeros(4, 8, dtype=torch.bool).index_fill_(1, torch.tensor([0]), True)),
    ]
    gen = torch.Generator().manual_seed(1234)
    for i in range(30):
        num_frames = int(torch.randint(1, 9, (1,), generator=gen))
        capacity = int(torch.randint(1, 17, (1,), generator=gen))
        cases.append((f"random{i}", random_mask(gen, num_frames, capacity)))
    return cases


KEY_CASES = key_cases()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


@pytest.mark.parametrize(("name", "keep"), KEY_CASES, ids=[name for name, _ in KEY_CASES])
def test_packed_block_equals_each_frame_alone(name, keep):
    seed = sum(ord(c) for c in name)
    torch.manual_seed(seed)
    block = Block()
    scale = None if seed % 2 else 0.3
    x = torch.randn(*keep.shape, 16)
    layout = PackedLayout.from_mask(keep)
    tokens = pack(x, layout)
    with torch.no_grad():
        rows = block.packed(tokens, layout, "rows", scale)
        frames = block.packed(tokens, layout, "frames", scale)
        loop = block.packed(tokens, layout, "loop", scale)
        auto = block.packed(tokens, layout, "auto", scale)
        chosen = block.packed(tokens, layout, resolve_backend("auto", x.device), scale)
        expected = torch.zeros_like(tokens)
        starts = layout.cu_seqlens.tolist()
        for t in range(keep.shape[0]):
            if keep[t].any():
                expected[starts[t] : starts[t + 1]] = block.one_frame(x[t][keep[t]], scale)
    assert rows.shape == loop.shape == frames.shape == (int(keep.sum()), 16)
    assert max_diff(rows, expected) < 1e-5
    assert max_diff(frames, expected) < 1e-5
    assert max_diff(loop, expected) < 1e-5
    assert max_diff(rows, loop) < 1e-5
    assert torch.equal(auto, chosen)
    grid = unpack(rows, layout)
    assert torch.equal(grid[~keep], torch.zeros_like(grid[~keep]))


def test_packed_attention_with_no_tokens():
    layout = PackedLayout.from_mask(torch.zeros(3, 5, dtype=torch.bool))
    q = torch.zeros(0, 2, 4)
    for backend in ("frames", "rows", "loop"):
        out = packed_attention(q, q, q, layout, backend=backend)
        assert out.shape == (0, 2, 4)


def test_frames_do_not_see_each_other():
    keep = torch.tensor(
        [[True, True, False, False, False], [False, True, False, False, False], [True, False, True, False, False]]
    )
    layout = PackedLayout.from_mask(keep)
    assert len(layout.rows) == 1
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(layout.total, 2, 4, generator=gen) for _ in range(3))
    changed = v.clone()
    changed[2] += 10.0  # the single token of frame 1
    for backend in ("frames", "rows", "loop"):
        before = packed_attention(q, k, v, layout, backend=backend)
        after = packed_attention(q, k, changed, layout, backend=backend)
        assert torch.equal(before[[0, 1, 3, 4]], after[[0, 1, 3, 4]])
        torch.testing.assert_close(after[2], changed[2])


def test_token_count_mismatch_raises():
    layout = PackedLayout.from_mask(torch.ones(2, 3, dtype=torch.bool))
    q = torch.randn(5, 2, 4)
    with pytest.raises(ValueError):
        packed_attention(q, q, q, layout, backend="loop")


# ---------------------------------------------------------------- grouped-query attention


@pytest.mark.parametrize("backend", ["frames", "rows", "loop"])
def test_grouped_query_attention(backend):
    gen = torch.Generator().manual_seed(3)
    keep = random_mask(gen, 5, 8)
    keep[0] = True
    layout = PackedLayout.from_mask(keep)
    q = torch.randn(layout.total, 6, 4, generator=gen)
    k = torch.randn(layout.total, 2, 4, generator=gen)
    v = torch.randn(layout.total, 2, 4, generator=gen)
    out = packed_attention(q, k, v, layout, backend=backend)
    manual = packed_attention(q, k.repeat_interleave(3, dim=1), v.repeat_interleave(3, dim=1), layout, backend=backend)
    torch.testing.assert_close(out, manual, atol=0, rtol=0)
    starts = layout.cu_seqlens.tolist()
    for t in range(5):
        a, b = starts[t], starts[t + 1]
        for h in range(6):
            kv = h // 3
            weights = torch.softmax(q[a:b, h] @ k[a:b, kv].T / 2.0, dim=-1)
            torch.testing.assert_close(out[a:b, h], weights @ v[a:b, kv], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- back ends


def test_resolve_backend_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu) == "frames"
    assert resolve_backend("frames", cpu) == "frames"
    assert resolve_backend("rows", cpu) == "rows"
    assert resolve_backend("loop", cpu) == "loop"
    with pytest.raises(ValueError, match="back end"):
        resolve_backend("sdpa", cpu)
    with pytest.raises(ValueError):
        resolve_backend("flash", cpu)
    with pytest.raises(ValueError, match="varlen back end needs CUDA"):
        resolve_backend("varlen", cpu)
    assert set(ATTENTION_BACKENDS) == {"auto", "flash", "varlen", "flex", "frames", "rows", "loop"}


def test_unknown_backend_raises_in_packed_attention():
    layout = PackedLayout.from_mask(torch.ones(2, 3, dtype=torch.bool))
    q = torch.randn(6, 2, 4)
    with pytest.raises(ValueError):
        packed_attention(q, q, q, layout, backend="dense")


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
HAS_FLASH = importlib.util.find_spec("flash_attn") is not None


def cuda_case(seed: int, dtype: torch.dtype):
    gen = torch.Generator().manual_seed(seed)
    keep = random_mask(gen, 9, 200)
    keep[0] = True
    keep[1] = False
    layout = PackedLayout.from_mask(keep.cuda())
    q, k, v = (torch.randn(layout.total, 4, 32, generator=gen).to("cuda", dtype) for _ in range(3))
    return layout, q, k, v


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("seed", range(3))
def test_flex_matches_loop_on_cuda(seed):
    layout, q, k, v = cuda_case(seed, torch.float32)
    expected = packed_attention(q, k, v, layout, backend="loop")
    torch.testing.assert_close(packed_attention(q, k, v, layout, backend="flex"), expected, atol=2e-4, rtol=2e-4)
    torch.testing.assert_close(packed_attention(q, k, v, layout, backend="rows"), expected, atol=2e-4, rtol=2e-4)
    assert resolve_backend("auto", q.device) in ("flash", "flex")


@pytest.mark.gpu
@CUDA
@pytest.mark.skipif(not HAS_FLASH, reason="needs flash-attn")
@pytest.mark.parametrize("seed", range(3))
def test_flash_matches_loop_on_cuda(seed):
    layout, q, k, v = cuda_case(seed, torch.bfloat16)
    expected = packed_attention(q, k, v, layout, backend="loop").float()
    torch.testing.assert_close(
        packed_attention(q, k, v, layout, backend="flash").float(), expected, atol=2e-2, rtol=2e-2
    )


def _block_sets(num: torch.Tensor, idx: torch.Tensor) -> list[set[int]]:
    return [set(idx[0, 0, i, : int(num[0, 0, i])].tolist()) for i in range(num.shape[-1])]


@pytest.mark.parametrize("seed", range(6))
def test_frame_block_mask_matches_the_dense_construction(seed):
    """The block mask built from frame boundaries lists the same partial and full key blocks per
    query block as create_block_mask, which evaluates the mask on every (query, key) pair."""
    from torch.nn.attention.flex_attention import create_block_mask

    gen = torch.Generator().manual_seed(seed)
    frames, n = int(torch.randint(2, 30, (1,), generator=gen)), int(torch.randint(60, 300, (1,), generator=gen))
    keep = torch.rand(frames, n, generator=gen) < float(torch.rand(1, generator=gen)) * 0.9 + 0.05
    keep[0] = True
    layout = PackedLayout.from_mask(keep)
    doc = layout.frame_ids()
    dense = create_block_mask(lambda b, h, q, k: doc[q] == doc[k], None, None, layout.total, layout.total,
                              device="cpu", BLOCK_SIZE=64)
    mine = frame_block_mask(layout, torch.device("cpu"), block=64)
    assert _block_sets(mine.kv_num_blocks, mine.kv_indices) == _block_sets(dense.kv_num_blocks, dense.kv_indices)
    assert _block_sets(mine.full_kv_num_blocks, mine.full_kv_indices) == _block_sets(
        dense.full_kv_num_blocks, dense.full_kv_indices)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_with_the_frame_block_mask_matches_loop_on_cpu():
    from torch.nn.attention.flex_attention import flex_attention

    gen = torch.Generator().manual_seed(5)
    keep = random_mask(gen, 7, 150)
    keep[0] = True
    layout = PackedLayout.from_mask(keep)
    q, k, v = (torch.randn(layout.total, 2, 16, generator=gen) for _ in range(3))
    out = flex_attention(*(x.transpose(0, 1)[None] for x in (q, k, v)),
                         block_mask=frame_block_mask(layout, torch.device("cpu")))[0].transpose(0, 1)
    torch.testing.assert_close(out, packed_attention(q, k, v, layout, backend="loop"), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- refilling frames alone in a row


def test_refill_makes_exactly_the_lonely_frames_whole():
    # FFD on capacity 6: rows [0], [2, 3], [1]: frames 0 (5 of 6 kept) and 1 (3 of 6) are alone.
    keep = mask_with_lengths([5, 3, 4, 2, 0], 6)
    run = refill_lonely_frames(keep)
    assert run[[0, 1]].all()
    assert torch.equal(run[[2, 3, 4]], keep[[2, 3, 4]])
    assert not run[4].any()  # an empty frame takes no row and stays empty
    assert bool((run | ~keep).all())  # nothing kept is dropped


def test_refill_leaves_a_shared_packing_alone():
    keep = mask_with_lengths([3, 3, 2, 4], 6)  # rows [3, 2], [0, 1]: nobody alone
    assert refill_lonely_frames(keep) is keep


@HYPOTHESIS
@given(capacity=st.integers(1, 12), data=st.data())
def test_refill_keeps_the_number_of_rows(capacity, data):
    lengths = data.draw(st.lists(st.integers(0, capacity), min_size=1, max_size=10))
    keep = mask_with_lengths(lengths, capacity)
    run = refill_lonely_frames(keep)
    before = first_fit_decreasing(lengths, capacity)
    after = first_fit_decreasing(run.sum(1).tolist(), capacity)
    assert len(after) == len(before)  # refilled tokens only use room that row had anyway
    alone = {row[0] for row in before if len(row) == 1}
    assert {t for t in range(len(lengths)) if not torch.equal(run[t], keep[t])} <= alone


def test_refill_rejects_a_non_boolean_mask():
    with pytest.raises(ValueError, match="boolean"):
        refill_lonely_frames(torch.ones(2, 3, dtype=torch.int64))


def _lonely_keep() -> torch.Tensor:
    """(4 frames, 4 groups): frame 0 whole, frame 1 three groups, frame 2 two, frame 3 one. With 36
    patches per frame FFD gives rows [0], [1, 3], [2]: frame 2 is alone with 18 of 36 patches."""
    keep = torch.zeros(4, 4, dtype=torch.bool)
    keep[0] = True
    keep[1, [0, 1, 3]] = True
    keep[2, [1, 2]] = True
    keep[3, [2]] = True
    return keep


def test_refilled_frame_equals_the_unpruned_frame(micro_backend, monkeypatch):
    """The lonely frame's kept tokens are what the whole frame would give (no pruning at all) at
    every feature layer; the frames that share a row still see only their kept tokens."""
    from stts_core.data.synthetic import make_clip
    from stts_core.methods.budget import attention_bias, groups_to_patch_mask

    frames = make_clip(3, num_frames=4).frames
    inputs = micro_backend.prepare(frames, "what color is the moving object ?")
    assert inputs.groups.shape[0] == 4 and inputs.patches_per_frame == 36
    keep = _lonely_keep()
    kept = groups_to_patch_mask(keep, inputs.groups, 36)
    assert first_fit_decreasing(kept.sum(1).tolist(), 36) == [[0], [1, 3], [2]]
    gen = torch.Generator().manual_seed(0)
    bias = attention_bias(torch.rand(4, 4, generator=gen), inputs.groups, 36)
    monkeypatch.setitem(micro_backend.model.config.stts, "refill_lonely_frames", True)
    with torch.no_grad():
        prefix = micro_backend.vit_prefix(inputs)
        full = micro_backend.vit_suffix(prefix, inputs, None, bias)
        counter: list[int] = []
        refilled = micro_backend.vit_suffix(prefix, inputs, keep, bias, counter=counter)
        monkeypatch.setitem(micro_backend.model.config.stts, "refill_lonely_frames", False)
        plain = micro_backend.vit_suffix(prefix, inputs, keep, bias)
    assert counter and set(counter) == {int(kept.sum()) + 18}
    last = micro_backend.last_layer
    packed_layers = [i for i in micro_backend.feature_layers if i > micro_backend.scoring_layer + 1]
    assert last in packed_layers
    for i in packed_layers:
        got, want = refilled.saved[i][2][kept[2]], full.saved[i][2][kept[2]]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        # Refilled patches were context only: pruned places hold zeros.
        assert not refilled.saved[i][~kept].any()
        torch.testing.assert_close(refilled.saved[i][[0, 1, 3]], plain.saved[i][[0, 1, 3]], atol=1e-6, rtol=1e-6)
    # Without the refill the lonely frame's kept tokens see only each other, and differ.
    assert (plain.saved[last][2][kept[2]] - full.saved[last][2][kept[2]]).abs().max() > 1e-3


# ---------------------------------------------------------------- frame batches and the block after scoring


def brute_force_batches(lengths: list[int], keys: int | None, call: int) -> int:
    """The cheapest cost over every cut of the longest-first order into consecutive runs."""
    order = sorted((n for n in lengths if n > 0), reverse=True)
    if not order:
        return 0
    best = None
    for mask in range(1 << (len(order) - 1)):
        cost, start = 0, 0
        for i in range(len(order)):
            if i == len(order) - 1 or mask >> i & 1:
                run = order[start:i + 1]
                cost += len(run) * run[0] * (run[0] if keys is None else keys) + call
                start = i + 1
        best = cost if best is None else min(best, cost)
    return best


def plan_cost(batches: list[list[int]], lengths: list[int], keys: int | None, call: int) -> int:
    return sum(len(b) * max(lengths[i] for i in b) * (max(lengths[i] for i in b) if keys is None else keys) + call
               for b in batches)


@HYPOTHESIS
@given(st.lists(st.integers(0, 40), min_size=0, max_size=9), st.sampled_from([None, 40]), st.sampled_from([0, 50, 800]))
def test_frame_batches_are_the_cheapest_consecutive_cut(lengths, keys, call):
    from stts_core.methods.packing import plan_frame_batches

    batches = plan_frame_batches(lengths, keys, call_pairs=call)
    covered = sorted(i for b in batches for i in b)
    assert covered == [i for i, n in enumerate(lengths) if n > 0]
    assert plan_cost(batches, lengths, keys, call) == brute_force_batches(lengths, keys, call)


def test_equal_lengths_make_one_unpadded_batch():
    layout = PackedLayout.from_mask(mask_with_lengths([4, 4, 0, 4], 6))
    (batch,) = layout.frame_batches()
    assert batch.valid is None and batch.frames.tolist() == [0, 1, 3]
    assert torch.equal(batch.index.reshape(-1), batch.dest)


def query_attention_reference(q, k, v, layout, bias, scale):
    """Per frame: the packed queries against every key of the frame (k, v on the grid), plus the bias."""
    out = torch.zeros_like(q)
    starts = layout.cu_seqlens.tolist()
    for t in range(layout.num_frames):
        a, b = starts[t], starts[t + 1]
        if b == a:
            continue
        logits = torch.einsum("qhd,khd->hqk", q[a:b], k[t]) * scale
        if bias is not None:
            logits = logits + bias[t][None, None]
        out[a:b] = torch.einsum("hqk,khd->qhd", torch.softmax(logits, -1), v[t])
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_bias", [False, True])
def test_packed_query_attention_equals_each_frame_over_all_its_keys(seed, with_bias):
    from stts_core.methods.packing import packed_query_attention

    gen = torch.Generator().manual_seed(seed)
    frames, n = int(torch.randint(1, 9, (1,), generator=gen)), int(torch.randint(2, 20, (1,), generator=gen))
    keep = random_mask(gen, frames, n)
    layout = PackedLayout.from_mask(keep)
    q = torch.randn(layout.total, 4, 8, generator=gen)
    k, v = (torch.randn(frames, n, 2, 8, generator=gen) for _ in range(2))  # two KV heads: grouped queries
    bias = torch.randn(frames, n, generator=gen) if with_bias else None
    got = packed_query_attention(q, k, v, layout, key_bias=bias, scale=0.3)
    kr, vr = k.repeat_interleave(2, dim=2), v.repeat_interleave(2, dim=2)
    torch.testing.assert_close(got, query_attention_reference(q, kr, vr, layout, bias, 0.3), atol=1e-5, rtol=1e-5)


def test_packed_query_attention_checks_its_shapes():
    from stts_core.methods.packing import packed_query_attention

    layout = PackedLayout.from_mask(torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="queries"):
        packed_query_attention(torch.zeros(5, 2, 4), torch.zeros(2, 3, 2, 4), torch.zeros(2, 3, 2, 4), layout)
    with pytest.raises(ValueError, match="grid"):
        packed_query_attention(torch.zeros(6, 2, 4), torch.zeros(2, 4, 2, 4), torch.zeros(2, 4, 2, 4), layout)


# ---------------------------------------------------------------- padded batch order (the CPU suffix)
@pytest.mark.parametrize(("name", "keep"), KEY_CASES, ids=[name for name, _ in KEY_CASES])
def test_padded_frames_round_trip_and_attention_equal_the_packed_form(name, keep):
    from stts_core.methods.packing import PaddedFrames

    gen = torch.Generator().manual_seed(sum(ord(c) for c in name))
    layout = PackedLayout.from_mask(keep)
    padded = PaddedFrames.from_layout(layout)
    assert PaddedFrames.from_layout(layout) is padded  # built once per layout
    assert padded.size >= layout.total
    assert sorted(padded.back.tolist()) == sorted(set(padded.back.tolist()))  # every token has its own slot
    x = torch.randn(*keep.shape, 3, 8, generator=gen)
    slots = padded.from_grid(x)
    assert torch.equal(padded.to_packed(slots), pack(x.reshape(*keep.shape, -1), layout).view(-1, 3, 8))
    q, k, v = (padded.from_grid(torch.randn(*keep.shape, 4, 8, generator=gen)) for _ in range(3))
    k, v = k[:, :2], v[:, :2]  # two KV heads: grouped queries
    got = padded.to_packed(padded.attention(q, k, v, scale=0.3))
    expected = packed_attention(*(padded.to_packed(t) for t in (q, k, v)), layout, scale=0.3, backend="loop")
    assert max_diff(got, expected) < 1e-5


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_bias", [False, True])
def test_padded_query_attention_equals_each_frame_over_all_its_keys(seed, with_bias):
    from stts_core.methods.packing import PaddedFrames

    gen = torch.Generator().manual_seed(seed)
    frames, n = int(torch.randint(1, 9, (1,), generator=gen)), int(torch.randint(2, 20, (1,), generator=gen))
    layout = PackedLayout.from_mask(random_mask(gen, frames, n))
    padded = PaddedFrames.from_layout(layout)
    q = torch.randn(layout.total, 4, 8, generator=gen)
    k, v = (torch.randn(frames, n, 2, 8, generator=gen) for _ in range(2))
    grid = torch.cat([k, v], dim=-1)  # what the callable projects: here, split back into keys and values
    bias = torch.randn(frames, n, generator=gen) if with_bias else None
    q_padded = q.index_select(0, padded.slots)
    got = padded.to_packed(padded.query_attention(q_padded, grid, lambda g: (g[..., :8], g[..., 8:]), bias, 0.3))
    kr, vr = k.repeat_interleave(2, dim=2), v.repeat_interleave(2, dim=2)
    torch.testing.assert_close(got, query_attention_reference(q, kr, vr, layout, bias, 0.3), atol=1e-5, rtol=1e-5)
