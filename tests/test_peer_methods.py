"""The peer methods (EVS, VidCom2, DivPrune, FastV): each rule on a small case worked out by hand, against an
independent loop re-implementation of the rule written here, and through every family's micro preset."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from stts_core import kept_group_count, list_families, list_methods, load_backend, select_tokens
from stts_core.data.synthetic import VOCABULARY, make_clip
from stts_core.data.video import frames_from_array
from stts_core.methods.peers import divprune, evs, fastv, vidcom2
from stts_core.models.base import LLMPrune, VideoBackend
from stts_core.pipeline import RunSettings, run, visual_pass

BUILTIN = Path(__file__).resolve().parent.parent / "assets" / "stts-tiny"
SHAPES = [(6, 9, 16), (4, 16, 8), (10, 4, 12), (1, 9, 8)]
KEEPS = [0.5, 0.3, 0.2, 0.1]


def _features(shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return dot / max(na * nb, 1e-8)


def _rows(features: torch.Tensor) -> list[list[list[float]]]:
    return features.double().tolist()


# ---------------------------------------------------------------------------------------------------- EVS


def _evs_loop(features: torch.Tensor, keep: float) -> np.ndarray:
    """vLLM's rule spelled out: first frame 255, else 1 - cosine to the previous frame's same token; the
    budget's highest scores over the whole video, ties to the lower flat index."""
    x = _rows(features)
    t, g = len(x), len(x[0])
    scored = []
    for i in range(t):
        for j in range(g):
            score = 255.0 if i == 0 else 1.0 - _cos(x[i][j], x[i - 1][j])
            scored.append((-score, i * g + j))
    kept = {index for _, index in sorted(scored)[:kept_group_count(t, g, keep)]}
    return np.array([[i * g + j in kept for j in range(g)] for i in range(t)])


def test_evs_by_hand() -> None:
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    # frame 1: token 0 unchanged (0), token 1 turned a right angle (1); frame 2: token 0 reversed (2), token 1 same (0)
    features = torch.tensor([[e1, e1], [e1, e2], [[-1.0, 0.0], e2]])
    assert torch.allclose(evs.evs_scores(features)[1:], torch.tensor([[0.0, 1.0], [2.0, 0.0]]), atol=1e-6)
    mask = select_tokens("evs", features, 0.67)  # round(0.67 * 6) = 4 tokens
    assert mask.tolist() == [[True, True], [False, True], [True, False]]
    # A still video: every later score is 0, so the tie order decides: earliest tokens first.
    still = torch.ones(4, 3, 5)
    assert select_tokens("evs", still, 0.5).tolist() == [[True] * 3, [True] * 3, [False] * 3, [False] * 3]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("keep", KEEPS)
def test_evs_equals_the_loop(shape: tuple[int, int, int], keep: float) -> None:
    features = _features(shape, 7)
    assert np.array_equal(select_tokens("evs", features, keep).numpy(), _evs_loop(features, keep))


def test_evs_count_against_vllms() -> None:
    # vLLM floors int(T * G * (1 - q)); every method here rounds (kept_group_count): 76.8 -> 76 there, 77 here.
    assert evs.vllm_retained_count(16, 16, 0.3) == 76 and kept_group_count(16, 16, 0.3) == 77
    assert evs.vllm_retained_count(3, 4, 0.01) == kept_group_count(3, 4, 0.01) == 4  # one frame at least
    for t, g, keep in [(8, 81, 0.5), (32, 81, 0.2), (16, 16, 0.3), (12, 7, 0.35)]:
        assert 0 <= kept_group_count(t, g, keep) - evs.vllm_retained_count(t, g, keep) <= 1


# ---------------------------------------------------------------------------------------------------- VidCom2


def _vidcom2_loop(features: torch.Tensor, keep: float) -> np.ndarray:
    """VidCom2 spelled out with loops: low-variance half of the channels, Gaussian similarities, frame
    budgets from uniqueness, per-frame lowest similarity, then trim or fill to the shared budget (trim
    never below one token per frame while the budget allows one)."""
    x = _rows(features)
    t, g, d = len(x), len(x[0]), len(x[0][0])
    flat = [x[i][j] for i in range(t) for j in range(g)]
    var = []
    for c in range(d):
        values = [tok[c] for tok in flat]
        mean = sum(values) / len(values)
        var.append(sum((v - mean) ** 2 for v in values) / len(values))
    channels = sorted(range(d), key=lambda c: (var[c], c))[:max(1, d // 2)]
    unit = []
    for tok in flat:
        sel = [tok[c] for c in channels]
        norm = max(math.sqrt(sum(v * v for v in sel)), 1e-12)
        unit.append([v / norm for v in sel])
    dim = len(channels)
    centre = [sum(u[c] for u in unit) / len(unit) for c in range(dim)]
    frame_centres = [[sum(unit[i * g + j][c] for j in range(g)) / g for c in range(dim)] for i in range(t)]

    def gauss(u: list[float], c: list[float]) -> float:
        dist = sum((a - b) ** 2 for a, b in zip(u, c, strict=True))
        return sum(math.exp(-dist / (2 * 2.0 ** k)) for k in range(-3, 2))

    video = [gauss(unit[n], centre) for n in range(t * g)]
    sim = [video[n] + gauss(unit[n], frame_centres[n // g]) for n in range(t * g)]
    unique = [-sum(video[i * g:(i + 1) * g]) / g for i in range(t)]
    top = max(unique)
    weights = [math.exp((u - top) / 0.01) for u in unique]
    p = [w / sum(weights) for w in weights]
    budgets = []
    for i in range(t):
        scale = min(1.0, keep * (1 + p[i] - sum(p) / t))
        budgets.append(min(g, max(1, round(scale * g))))  # Python's round is half to even, like torch's
    kept = set()
    for i in range(t):
        order = sorted(range(g), key=lambda j: (sim[i * g + j], j))
        kept |= {i * g + j for j in order[:budgets[i]]}
    target = kept_group_count(t, g, keep)
    if len(kept) < target:
        extra = sorted((n for n in range(t * g) if n not in kept), key=lambda n: (sim[n], n))
        kept |= set(extra[:target - len(kept)])
    per_frame = [sum(1 for n in kept if n // g == i) for i in range(t)]
    floor = 1 if target >= t else 0
    for n in sorted(kept, key=lambda n: (-sim[n], -n)):
        if len(kept) == target:
            break
        if per_frame[n // g] > floor:
            kept.remove(n)
            per_frame[n // g] -= 1
    return np.array([[i * g + j in kept for j in range(g)] for i in range(t)])


def test_vidcom2_by_hand() -> None:
    # Four frames of eight tokens; frame 2 differs from the rest, so it is the unique one and the softmax
    # at temperature 0.01 gives it (almost) all the weight: scale 0.25 x 1.75 vs 0.25 x 0.75.
    base = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    features = torch.stack([base, base, torch.randn(8, 6, generator=torch.Generator().manual_seed(1)) * 3, base])
    similarity, video = vidcom2.similarities(features)
    budgets = vidcom2.frame_budgets(video, 0.25)
    assert budgets.tolist() == [2, 2, 4, 2]  # round(1.5) = 2 and round(3.5) = 4 (half to even)
    assert vidcom2.authors_count(features, 0.25) == 10  # the authors keep the per-frame sum ...
    mask = select_tokens("vidcom2", features, 0.25)
    assert int(mask.sum()) == kept_group_count(4, 8, 0.25) == 8  # ... this version trims to the shared budget
    assert int(mask[2].sum()) >= 2 and all(int(row.sum()) >= 1 for row in mask)
    # Inside a frame the kept tokens are the least similar ones.
    row = similarity[2]
    kept, pruned = row[mask[2]], row[~mask[2]]
    assert float(kept.max()) <= float(pruned.min())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("keep", KEEPS)
def test_vidcom2_equals_the_loop(shape: tuple[int, int, int], keep: float) -> None:
    features = _features(shape, 11)
    assert np.array_equal(select_tokens("vidcom2", features, keep).numpy(), _vidcom2_loop(features, keep))


@pytest.mark.parametrize("keep", [0.1, 0.05])
def test_vidcom2_keeps_a_token_in_every_frame_when_the_budget_allows(keep: float) -> None:
    features = _features((8, 12, 8), 3)
    mask = select_tokens("vidcom2", features, keep)
    assert int(mask.sum()) == kept_group_count(8, 12, keep) >= 8
    assert all(int(row.sum()) >= 1 for row in mask)


# ---------------------------------------------------------------------------------------------------- DivPrune


def _divprune_loop(features: torch.Tensor, count: int) -> list[int]:
    x = [tok for frame in _rows(features) for tok in frame]
    n = len(x)
    dist = [[1.0 - _cos(x[i], x[j]) for j in range(n)] for i in range(n)]
    nearest = [min(dist[i][j] for j in range(n) if j != i) if n > 1 else 0.0 for i in range(n)]
    chosen = [max(range(n), key=lambda i: (nearest[i], -i))]
    while len(chosen) < min(count, n):
        rest = [i for i in range(n) if i not in chosen]
        chosen.append(max(rest, key=lambda i: (min(dist[i][c] for c in chosen), -i)))
    return sorted(chosen)


def test_divprune_by_hand() -> None:
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    # Tokens e1, e1, e2, -e1: nearest-neighbour distances 0, 0, 1, 1 -> the first pick is token 2 (the
    # lower of the tied two); every token is at distance 1 from it -> token 0; then token 1 is at 0 from
    # token 0 while token 3 is at 1 -> token 3.
    features = torch.tensor([[e1, e1], [e2, [-1.0, 0.0]]])
    assert divprune.greedy_max_min(features.reshape(4, 2), 2).tolist() == [True, False, True, False]
    assert select_tokens("divprune", features, 0.75).tolist() == [[True, False], [True, True]]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("keep", KEEPS)
def test_divprune_equals_the_loop(shape: tuple[int, int, int], keep: float) -> None:
    features = _features(shape, 5)
    t, g, _ = shape
    mask = select_tokens("divprune", features, keep)
    assert mask.reshape(-1).nonzero().squeeze(1).tolist() == _divprune_loop(features, kept_group_count(t, g, keep))


def test_divprune_blocks_give_the_same_first_pick(monkeypatch: pytest.MonkeyPatch) -> None:
    features = _features((5, 9, 8), 2)
    whole = select_tokens("divprune", features, 0.3)
    monkeypatch.setattr(divprune, "BLOCK", 7)
    assert torch.equal(select_tokens("divprune", features, 0.3), whole)


# ---------------------------------------------------------------------------------------------------- FastV rule


def test_fastv_rule_by_hand() -> None:
    attention = torch.tensor([[0.1, 0.4, 0.2, 0.2, 0.1], [0.3, 0.0, 0.2, 0.2, 0.3]])  # means .2 .2 .2 .2 .2
    assert fastv.keep_by_attention(attention, 2).tolist() == [True, True, False, False, False]  # ties: earliest
    attention = torch.tensor([[0.5, 0.1, 0.3, 0.1], [0.1, 0.1, 0.5, 0.3]])  # means .3 .1 .4 .2
    assert fastv.keep_by_attention(attention, 2).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="heads, image tokens"):
        fastv.keep_by_attention(torch.zeros(4), 2)


def test_fastv_layer_rule() -> None:
    assert fastv.pruning_layer(2, 28) == 2 and fastv.pruning_layer(2, 3) == 2
    assert fastv.pruning_layer(2, 2) == 1  # too few layers: the last one still runs on the kept tokens
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="whole number"):
            fastv.pruning_layer(bad, 8)
    with pytest.raises(ValueError, match="at least 2 layers"):
        fastv.pruning_layer(2, 1)


# ---------------------------------------------------------------------------------------------------- FastV in Molmo2


@pytest.fixture(scope="module")
def builtin() -> VideoBackend:
    return load_backend(str(BUILTIN), device="cpu")


@pytest.fixture(scope="module")
def prepared(builtin: VideoBackend) -> tuple:
    clip = make_clip(4_000_001, num_frames=6)
    inputs = builtin.prepare(clip.frames, clip.qas[0].question)
    with torch.no_grad():
        vp = visual_pass(builtin, inputs, 1.0, None)
    return inputs, vp.visual


def _stock_eager_attention(path: Path, inputs, layer: int) -> torch.Tensor:
    """Layer `layer`'s attention probabilities, (heads, S, S), from a stock forward with eager attention."""
    from transformers import Molmo2ForConditionalGeneration

    stock = Molmo2ForConditionalGeneration.from_pretrained(str(path), attn_implementation="eager").eval()
    with torch.no_grad():
        out = stock(**inputs.tensors, output_attentions=True)
    return out.attentions[layer][0]


@pytest.mark.parametrize("keep", [0.5, 0.3, 0.2])
def test_fastv_keeps_the_top_of_the_eager_attention_row(builtin: VideoBackend, prepared: tuple, keep: float) -> None:
    inputs, visual = prepared
    t, g = inputs.num_frames, int(inputs.groups.shape[0])
    budget = kept_group_count(t, g, keep)
    gen = builtin.generate(inputs, visual, None, 4, False, llm_prune=LLMPrune("fastv", budget, {"layer": 2}))
    attention = _stock_eager_attention(BUILTIN, inputs, layer=1)  # K - 1 for K = 2
    image = inputs.tensors["input_ids"][0] == builtin.image_token_id
    row = attention[:, -1, image].mean(0)  # (image tokens,): the last prompt token, averaged over heads
    expected = torch.zeros_like(row, dtype=torch.bool)
    expected[torch.topk(row, budget).indices] = True
    order = torch.sort(row, descending=True).values
    assert float(order[budget - 1] - order[budget]) > 1e-6, "a near tie at the cut would make this test fragile"
    assert torch.equal(gen.keep_mask.reshape(-1).cpu(), expected)
    assert gen.visual_tokens == budget and gen.keep_mask.shape == (t, g)


def test_fastv_generation_is_deterministic_and_keep_all_is_the_stock_model(builtin: VideoBackend,
                                                                         prepared: tuple) -> None:
    inputs, visual = prepared
    t, g = inputs.num_frames, int(inputs.groups.shape[0])
    prune = LLMPrune("fastv", kept_group_count(t, g, 0.3), {"layer": 2})
    first = builtin.generate(inputs, visual, None, 6, False, llm_prune=prune)
    second = builtin.generate(inputs, visual, None, 6, False, llm_prune=prune)
    assert first.token_ids == second.token_ids and torch.equal(first.keep_mask, second.keep_mask)
    assert len(first.token_ids) == 6
    every = builtin.generate(inputs, visual, None, 6, False, llm_prune=LLMPrune("fastv", t * g, {"layer": 2}))
    stock = builtin.generate(inputs, visual, None, 6, False)
    assert every.token_ids == stock.token_ids and bool(every.keep_mask.all())
    with torch.no_grad():
        logits = builtin.model(**inputs.tensors, logits_to_keep=1).logits[:, -1]
        from stts_core.models.molmo2.llm_prune import prefill

        ours, _, _, _ = prefill(builtin, inputs, visual, LLMPrune("fastv", t * g, {"layer": 2}),
                                builtin.llm_inputs(inputs, None))
    assert torch.allclose(ours, logits, atol=1e-4)


def test_fastv_pruned_decoding_matches_a_recomputation_without_the_cache(builtin: VideoBackend, prepared: tuple,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding on the pruned cache equals running the pruned prefill again over the prompt plus the
    tokens generated so far, with the same kept image tokens (so the cache holds the right keys)."""
    from stts_core.models import llm_prune as generic
    from stts_core.models.molmo2 import llm_prune

    inputs, visual = prepared
    t, g = inputs.num_frames, int(inputs.groups.shape[0])
    prune = LLMPrune("fastv", kept_group_count(t, g, 0.2), {"layer": 2})
    gen = builtin.generate(inputs, visual, None, 4, False, llm_prune=prune)
    llm = builtin.llm_inputs(inputs, None)
    kept = gen.keep_mask.reshape(-1)

    def fixed_rule(attention: torch.Tensor, keep_tokens: int) -> torch.Tensor:
        return kept.to(attention.device)

    class Fixed:
        select = staticmethod(fixed_rule)

    monkeypatch.setattr(generic, "get_method", lambda name: Fixed())
    for step in range(1, len(gen.token_ids)):
        extra = torch.tensor([gen.token_ids[:step]], device=llm["input_ids"].device)
        longer = {"input_ids": torch.cat([llm["input_ids"], extra], 1),
                  "attention_mask": torch.ones(1, llm["input_ids"].shape[1] + step, dtype=torch.long),
                  "mm_token_type_ids": torch.cat([llm["mm_token_type_ids"], torch.zeros_like(extra)], 1)}
        with torch.no_grad():
            logits, _, _, _ = llm_prune.prefill(builtin, inputs, visual, prune, longer)
        assert int(logits.argmax(-1)) == gen.token_ids[step]


# ---------------------------------------------------------------------------------------------------- every family


@pytest.fixture(scope="module", params=[f.name for f in list_families()])
def family_backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> VideoBackend:
    family = next(f for f in list_families() if f.name == request.param)
    folder = family.tiny_checkpoint(tmp_path_factory.mktemp(family.name) / "ckpt", preset=family.test_preset,
                                    words=VOCABULARY)
    return load_backend(str(folder), device="cpu")


def _prepared(backend: VideoBackend) -> tuple:
    clip = make_clip(4_000_005, num_frames=4, size=84)
    inputs = backend.prepare(clip.frames, clip.qas[0].question)
    with torch.no_grad():
        visual = visual_pass(backend, inputs, 1.0, None).visual
    return inputs, visual, inputs.num_frames, int(inputs.groups.shape[0])


def test_fastv_on_every_family_keeps_the_top_of_a_stock_eager_attention_row(family_backend: VideoBackend) -> None:
    """Every family with the capability: the kept set is the top-k of layer K-1's attention row of the last
    prompt token in a separate stock forward with eager attention; keep-all is the stock model; deterministic."""
    import copy

    if "llm_prune" not in family_backend.capabilities:
        pytest.skip(f"{family_backend.name} has no llm_prune capability")
    inputs, visual, t, g = _prepared(family_backend)
    budget = kept_group_count(t, g, 0.5)
    prune = LLMPrune("fastv", budget, {"layer": 2})
    gen = family_backend.generate(inputs, visual, None, 4, False, llm_prune=prune)
    assert family_backend.generate(inputs, visual, None, 4, False, llm_prune=prune).token_ids == gen.token_ids
    llm = family_backend.llm_inputs(inputs, None)
    stock = copy.deepcopy(family_backend.model)
    stock.set_attn_implementation("eager")
    extra = {"position_ids": llm["position_ids"]} if "position_ids" in llm else {}
    with torch.no_grad():
        out = stock(input_ids=llm["input_ids"], attention_mask=llm["attention_mask"], output_attentions=True,
                    mm_token_type_ids=llm.get("mm_token_type_ids"),
                    mm_encoder_outputs=family_backend.encoder_outputs(visual), **extra)
    layer = fastv.pruning_layer(2, len(out.attentions))
    image = llm["input_ids"][0] == getattr(family_backend, "image_token_id", getattr(family_backend, "video_token_id", -1))
    row = out.attentions[layer - 1][0, :, -1, image].mean(0)
    order = torch.sort(row, descending=True).values
    assert float(order[budget - 1] - order[budget]) > 1e-7, "a near tie at the cut would make this test fragile"
    expected = torch.zeros_like(row, dtype=torch.bool)
    expected[torch.topk(row, budget).indices] = True
    assert torch.equal(gen.keep_mask.reshape(-1).cpu(), expected)
    every = family_backend.generate(inputs, visual, None, 4, False, llm_prune=LLMPrune("fastv", t * g, {"layer": 2}))
    assert every.token_ids == family_backend.generate(inputs, visual, None, 4, False).token_ids


@pytest.mark.parametrize("method", [m.name for m in list_methods() if m.stage in ("visual", "llm")])
def test_every_peer_method_runs_on_every_family(family_backend: VideoBackend, method: str) -> None:
    """Same visual-token budget as STTS, the full ViT (no ViT saving: only vit-stage methods have one),
    or a clear refusal from a family that cannot prune inside its LLM."""
    clip = make_clip(4_000_003, num_frames=4, size=84)
    settings = RunSettings(keep_ratio=0.5, scorer=method, num_frames=4, max_new_tokens=2)
    stage = next(m.stage for m in list_methods() if m.name == method)
    if stage == "llm" and "llm_prune" not in family_backend.capabilities:
        with pytest.raises(ValueError, match="cannot prune inside its LLM"):
            run(family_backend, frames_from_array(clip.frames), "what moves ?", settings)
        return
    result = run(family_backend, frames_from_array(clip.frames), "what moves ?", settings)
    t, g = result.keep_mask.shape
    assert result.scorer_used == method
    assert result.stts.visual_tokens == int(result.keep_mask.sum()) == kept_group_count(t, g, 0.5)
    assert result.stts.vit_tokens == result.baseline.vit_tokens
    assert result.stts.vit_suffix_tokens == result.baseline.vit_suffix_tokens


# ---------------------------------------------------------------------------------------------------- analysis


def _examples(folder: Path) -> list:
    from stts_core.data.tables import Example
    from stts_core.data.video_encode import write_video

    out = []
    for i, seed in enumerate((4_000_010, 4_000_011)):
        clip = make_clip(seed, num_frames=4, size=84)
        path = folder / f"clip{i}.mp4"
        write_video(path, clip.frames, fps=4.0)
        for j, qa in enumerate(clip.qas[:2]):
            out.append(Example(id=f"e{i}{j}", index=len(out), video=path.name, path=path, question=qa.question,
                               answer=qa.answer, type=qa.qtype))
    return out


def test_analysis_runs_every_method_on_the_same_videos_with_a_method_view(micro_backend: VideoBackend,
                                                                          tmp_path: Path) -> None:
    from stts_core.analysis.records import AnalysisSettings
    from stts_core.analysis.runner import run_analysis

    scorers = ("learned", "evs", "vidcom2", "divprune", "fastv", "frames")
    settings = AnalysisSettings(keeps=(0.5, 0.25), scorers=scorers, num_frames=4, max_new_tokens=2)
    result = run_analysis(micro_backend, _examples(tmp_path), settings, out_dir=tmp_path / "out")
    assert not result.failed and len(result.rows) == 4 * (1 + 2 * len(scorers))
    base = {r["id"]: r for r in result.rows if r["setting"] == "baseline"}
    for r in result.rows:
        if r["scorer"] in ("evs", "vidcom2", "divprune", "fastv"):
            b = base[r["id"]]
            assert r["visual_tokens"] == r["kept_groups"] == kept_group_count(4, b["total_groups"] // 4, r["keep"])
            assert r["vit_tokens"] == b["vit_tokens"] and r["vit_suffix_tokens"] == b["vit_suffix_tokens"]
            assert "vit_prefix" in r["shared_stages"] and "vit_suffix" in r["shared_stages"]
        if r["scorer"] == "learned":
            assert r["vit_suffix_tokens"] < base[r["id"]]["vit_suffix_tokens"]
    report = (tmp_path / "out" / "report.html").read_text()
    assert "Methods side by side" in report and "Where the methods disagree with each other" in report
    assert "Same answer as each other, keep 0.25" in report


def _row(example: str, scorer: str, keep: float, answer: str, gold: str = "yes", **extra: object) -> dict:
    setting = "baseline" if scorer == "baseline" else f"{scorer}@{keep:g}"
    timings = {"vit_prefix": 0.01, "scoring": 0.0, "vit_suffix": 0.02, "connector": 0.001, "llm_prefill": 0.005,
               "decoding": 0.1, "decode_video": 1.0, "preprocess": 1.0}
    return {"id": example, "index": int(example[1:]), "setting": setting, "scorer": scorer, "keep": keep,
            "answer": answer, "gold": gold, "question": "q ?", "correct": answer == gold, "error": None,
            "visual_tokens": 8, "vit_tokens": 100, "vit_suffix_tokens": 50, "timings_s": timings, **extra}


def test_method_metrics_by_hand() -> None:
    from stts_core.analysis.metrics import method_costs, method_disagreements, pairwise_agreement

    rows = [_row("e0", "baseline", 1.0, "yes"), _row("e1", "baseline", 1.0, "no"),
            _row("e0", "evs", 0.5, "yes"), _row("e1", "evs", 0.5, "no"),
            _row("e0", "fastv", 0.5, "no"), _row("e1", "fastv", 0.5, "no"),
            _row("e0", "divprune", 0.5, "yes"), _row("e1", "divprune", 0.5, "maybe"),
            _row("e0", "evs", 0.2, "yes"), _row("e0", "fastv", 0.2, "Yes."), {**_row("e1", "evs", 0.2, ""), "error": "x"}]
    names, matrix = pairwise_agreement(rows, 0.5)
    assert names == ["evs", "fastv", "divprune"]
    assert matrix[0] == [1.0, 0.5, 0.5] and matrix[1][2] == 0.0 and matrix[2][1] == 0.0
    assert pairwise_agreement(rows, 0.2)[1] == [[1.0, 1.0], [1.0, 1.0]]  # "Yes." and "yes" agree; errors left out
    items = method_disagreements(rows)
    assert [(i["id"], i["keep"]) for i in items] == [("e0", 0.5), ("e1", 0.5)]
    assert items[0]["split"] and not items[1]["split"]  # e0: evs right, fastv wrong; e1: every answer wrong
    assert items[1]["answers"] == {"evs": "no", "fastv": "no", "divprune": "maybe"}
    costs = {c["setting"]: c for c in method_costs(rows)}
    assert costs["evs@0.5"]["n"] == 2 and costs["evs@0.2"]["n"] == 1
    assert costs["evs@0.5"]["ttft_s"] == pytest.approx(0.036) and costs["evs@0.5"]["vit_s"] == pytest.approx(0.031)
    assert costs["evs@0.5"]["prefill_s"] == pytest.approx(0.005)


# ---------------------------------------------------------------------------------------------------- bench


def test_bench_reports_every_method_against_the_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from stts_core.cli.bench import main

    out = tmp_path / "bench.json"
    assert main(["--preset", "micro", "--frames", "4", "--keep", "0.5", "--scorer", "learned", "evs", "fastv",
                 "--repeats", "1", "--new-tokens", "2", "--threads", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ViT tok blk0/after" in text and all(f" {m} " in text for m in ("learned", "evs", "fastv"))
    report = json.loads(out.read_text())
    assert report["settings"]["scorers_used"] == ["learned", "evs", "fastv"]
    cell = report["cells"][0]
    methods = {m["method"]: m for m in cell["methods"]}
    base_suffix = cell["vit_suffix_tokens"][0]
    assert [m["method"] for m in cell["methods"]] == ["learned", "evs", "fastv"]
    assert {m["visual_tokens"] for m in methods.values()} == {8} and cell["visual_tokens"] == [16, 8]
    assert methods["learned"]["vit_suffix_tokens"] < base_suffix  # only STTS saves inside the ViT
    assert methods["evs"]["vit_suffix_tokens"] == methods["fastv"]["vit_suffix_tokens"] == base_suffix
    assert methods["evs"]["stages_s"]["packing"] == 0 and methods["learned"]["stages_s"]["packing"] > 0
    for m in methods.values():
        assert m["ttft_speedup"] == pytest.approx(cell["stages_s"]["baseline"]["ttft"] / m["ttft_s"])
    assert methods["learned"]["ttft_s"] == cell["stts_ttft_s"]
    with pytest.raises(SystemExit) as info:
        main(["--preset", "micro", "--train", "--scorer", "learned", "evs"])
    assert info.value.code == 2


def test_a_family_without_the_capability_refuses_fastv_in_one_sentence(micro_backend: VideoBackend,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(micro_backend, "capabilities", frozenset())
    clip = make_clip(4_000_007, num_frames=4, size=84)
    with pytest.raises(ValueError, match=r"^The molmo2 model family cannot prune inside its LLM, so the method "
                                         r"'fastv' is not available for it\.$"):
        run(micro_backend, frames_from_array(clip.frames), "what moves ?",
            RunSettings(keep_ratio=0.5, scorer="fastv", num_frames=4, max_new_tokens=2))
