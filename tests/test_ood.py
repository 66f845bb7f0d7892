"""The out-of-distribution check: clips with ground-truth motion masks, the AUC and the recall at a keep ratio."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stts_core.analysis import ood
from stts_core.cli import ood as ood_cli
from stts_core.methods.budget import select_groups


@pytest.mark.parametrize("kind", ood.KINDS)
def test_clips_are_pure_functions_with_motion_only_where_things_change(kind: str) -> None:
    a, b = ood.make_ood_clip(3, kind, num_frames=6, size=96), ood.make_ood_clip(3, kind, num_frames=6, size=96)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.motion, b.motion)
    assert a.frames.shape == (6, 96, 96, 3) and a.motion.shape == (6, 96, 96)
    assert not a.motion[0].any()
    assert all(a.motion[t].any() for t in range(1, 6))  # something moves (or cuts) in every later frame
    frames = a.frames.astype(np.float32)
    still = ~a.motion[1:]
    # Where the mask says nothing moved, only sensor noise changed the pixels ...
    assert np.abs(frames[1:] - frames[:-1])[still].mean() < 4 * ood.NOISE_SIGMA
    # ... and where it says something moved, the pixels changed far more.
    assert np.abs(frames[1:] - frames[:-1])[~still].mean() > 5 * ood.NOISE_SIGMA


def test_a_hard_cut_moves_the_whole_frame_once() -> None:
    clip = ood.make_ood_clip(0, "hard_cut")
    whole = [t for t in range(1, len(clip.motion)) if clip.motion[t].all()]
    assert len(whole) == 1


def test_group_motion_thresholds_each_cell() -> None:
    motion = np.zeros((2, 6, 6), dtype=bool)
    motion[1, 0, 0] = True  # 1 of 9 pixels of cell (0, 0)
    motion[1, 3:6, 3:6] = True  # all of cell (1, 1)
    cells = ood.group_motion(motion, 2, 2, fraction=0.2)
    assert cells.tolist() == [[False] * 4, [False, False, False, True]]
    assert ood.group_motion(motion, 2, 2, fraction=0.1)[1].tolist() == [True, False, False, True]


def test_auc_matches_pairwise_counting() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 5, size=30).astype(float)  # many ties
        labels = rng.random(30) < 0.3
        pos, neg = scores[labels], scores[~labels]
        pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
        assert ood.auc(scores, labels) == pytest.approx(float(np.mean(pairs)))
    assert ood.auc(np.array([1.0, 2.0]), np.array([True, True])) is None


def test_tally_of_an_oracle_and_of_its_reverse() -> None:
    labels = np.zeros((4, 9), dtype=bool)
    labels[1:, :2] = True  # 6 moving groups among 27 prunable
    oracle, reverse = ood.ScorerTally([]), ood.ScorerTally([])
    for tally, scores in ((oracle, labels.astype(float)), (reverse, 1.0 - labels)):
        tally.add(scores, select_groups(torch.tensor(scores), 0.5).numpy(), labels)
    best, worst = oracle.summary(), reverse.summary()
    assert best["auc"] == 1.0 and worst["auc"] == 0.0
    assert best["recall"] == 1.0 and worst["recall"] == 0.0
    # keep 0.5 of 36 groups = 18: 9 in frame 0, 9 of the 27 prunable ones.
    assert best["chance"] == pytest.approx(9 / 27)
    assert best["recall_over_chance"] == pytest.approx(3.0)


@pytest.mark.slow
def test_cli_on_a_micro_checkpoint(micro_checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ood.json"
    assert ood_cli.main(["--model", str(micro_checkpoint), "--clips", "5", "--frames", "4", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["result"]
    assert set(result) == {"learned", "heuristic", "random", "by_kind"}
    assert set(result["by_kind"]) == set(ood.KINDS)
    # Even through a random ViT, 1 - cos to the previous frame sees where pixels changed; random scores do not.
    assert result["heuristic"]["auc"] > 0.8 > result["random"]["auc"]
    assert result["heuristic"]["recall_over_heuristic"] == 1.0
    assert "x chance" in capsys.readouterr().out
