"""Fitting the scorer alone to the auxiliary target (`python -m stts_core.scorer_fit`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from stts_core.cli.fit_scorer import main
from stts_core.data.synthetic import make_clip
from stts_core.models.molmo2 import SCORER_PREFIX
from stts_core.models.molmo2.checkpoint import load_molmo2
from stts_core.train.scorer_fit import clip_loss, freeze_all_but_scorer, rank_correlation, rebuild_scorer


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for file in sorted(directory.glob("*.safetensors")):
        out |= load_file(str(file))
    return out


def test_fit_changes_the_scorer_only_and_records_the_loss_form(micro_checkpoint, tmp_path):
    out = tmp_path / "fitted"
    assert main(["--model", str(micro_checkpoint), "--out", str(out), "--steps", "3", "--batch", "1",
                 "--frames", "4", "--eval-every", "2", "--threads", "1", "--lr", "1e-2"]) == 0
    before, after = _weights(micro_checkpoint), _weights(out)
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "the scorer did not move"
    assert all(k.startswith(SCORER_PREFIX) for k in changed), sorted(changed)[:3]
    config = json.loads((out / "config.json").read_text())
    assert config["stts"]["aux_loss"] == "bce"
    log = [json.loads(line) for line in (out / "scorer_fit_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert "val_rank_corr" in log[1] and "val_rank_corr" not in log[0]
    assert load_molmo2(str(out), device="cpu").model.config.stts["aux_loss"] == "bce"  # round trip


def test_scorer_hidden_fits_a_fresh_scorer_of_that_width_that_loads_back(micro_checkpoint, tmp_path):
    out = tmp_path / "narrow"
    before = load_molmo2(str(micro_checkpoint), device="cpu")
    width = before.scorer.mlp.w1.out_features
    narrow = max(1, width // 2)
    assert main(["--model", str(micro_checkpoint), "--out", str(out), "--steps", "2", "--batch", "1",
                 "--frames", "4", "--eval-every", "5", "--threads", "1", "--scorer-hidden", str(narrow)]) == 0
    weights = _weights(out)
    assert weights[SCORER_PREFIX + "mlp.w1.weight"].shape == (narrow, 2 * before.scorer.patch_token_pooler.wq.in_features)
    assert weights[SCORER_PREFIX + "mlp.w2.weight"].shape == (narrow, narrow)
    assert json.loads((out / "config.json").read_text())["stts"]["scorer_hidden"] == narrow
    loaded = load_molmo2(str(out), device="cpu")
    assert loaded.has_learned_scorer and loaded.scorer.mlp.w1.out_features == narrow
    # the body is the checkpoint's, unchanged
    body = {k: v for k, v in _weights(micro_checkpoint).items() if not k.startswith(SCORER_PREFIX)}
    assert all(torch.equal(v, weights[k]) for k, v in body.items())


def test_scorer_hidden_keeps_the_pooler_unless_reset(micro_checkpoint):
    pooler = SCORER_PREFIX + "patch_token_pooler."
    for reset, kept in ((False, True), (True, False)):
        backend = load_molmo2(str(micro_checkpoint), device="cpu")
        before = {k: v.clone() for k, v in backend.scorer.patch_token_pooler.state_dict().items()}
        narrow = max(1, backend.scorer.mlp.w1.out_features // 2)
        assert rebuild_scorer(backend, narrow, keep_pooler=not reset)
        after = backend.scorer.patch_token_pooler.state_dict()
        same = all(torch.equal(before[k], after[k]) for k in before)
        assert same is kept, (reset, pooler)
        assert backend.scorer.mlp.w2.weight.shape == (narrow, narrow)
        assert not rebuild_scorer(backend, narrow, keep_pooler=True)  # already that wide


def test_fit_lowers_the_auxiliary_loss_on_a_clip(micro_checkpoint):
    backend = load_molmo2(str(micro_checkpoint), device="cpu")
    params = freeze_all_but_scorer(backend)
    assert all(n.startswith(SCORER_PREFIX) for n, p in backend.model.named_parameters() if p.requires_grad)
    frames = make_clip(5, num_frames=6, world="rich").frames
    optimizer = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss = clip_loss(backend, frames, "bce")
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.9 * losses[0], losses


def test_rank_correlation_against_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)
    ra, rb = a.argsort().argsort(), b.argsort().argsort()
    expected = float(np.corrcoef(ra, rb)[0, 1])
    assert math.isclose(rank_correlation(torch.from_numpy(a), torch.from_numpy(b)), expected, rel_tol=1e-9)
    assert rank_correlation(torch.from_numpy(a), torch.from_numpy(a ** 3)) == pytest.approx(1.0)
    assert math.isnan(rank_correlation(torch.zeros(5), torch.arange(5.0)))


def test_bad_data_path_exits_with_one_line(micro_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--model", str(micro_checkpoint), "--out", str(tmp_path / "x"), "--data", str(tmp_path / "none.jsonl")])
    assert exc.value.code == 2
    assert "no such file" in capsys.readouterr().err
