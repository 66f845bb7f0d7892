"""End-to-end training: a short run on the micro architecture learns, saves and resumes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from stts_core.cli.train import main
from stts_core.data.synthetic import make_clip
from stts_core.models.base import VideoBackend
from stts_core.models.molmo2 import FAMILY as MOLMO2
from stts_core.models.molmo2 import VISION_PREFIXES
from stts_core.models.molmo2.checkpoint import load_molmo2
from stts_core.pipeline import visual_pass
from stts_core.train.from_scratch import DenseTargets, GroupProbe, clip_gradients, stage_at
from stts_core.train.loop import lr_at, validation_keep, warn_if_saturated
from stts_core.train.objective import score_logits, stts_loss
from stts_core.train.samples import Sample


def _clip_loss(backend: VideoBackend, sample: Sample, keep: float, **kwargs) -> dict[str, torch.Tensor]:
    """The objective on one clip, preprocessing done first as the training loop does it."""
    prepared = backend.prepare_questions(sample.frames, [q for q, _ in sample.qas], sample.metadata)
    return stts_loss(backend, prepared, [a for _, a in sample.qas], keep, **kwargs)


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    args = ["--preset", "micro", "--out", str(out), "--steps", "20", "--batch", "2", "--lr", "3e-3", "--warmup", "2",
            "--frames", "4", "--eval-every", "1000", "--save-every", "10", "--keep", "0.5", "--seed", "0"]
    assert main(args) == 0
    return out


def test_short_run_lowers_task_and_aux_loss(trained: Path) -> None:
    log = _log(trained)
    assert [r["step"] for r in log] == list(range(1, 21))
    first = sum(r["task_loss"] for r in log[:3]) / 3
    last = sum(r["task_loss"] for r in log[-3:]) / 3
    assert last < 0.8 * first
    assert all(r["aux_loss"] > 0 for r in log)
    assert sum(r["aux_loss"] for r in log[-3:]) < sum(r["aux_loss"] for r in log[:3])


def test_checkpoint_is_safetensors_and_loads_through_the_normal_loader(trained: Path) -> None:
    names = {p.name for p in trained.iterdir()}
    assert {"model.safetensors", "optimizer.safetensors", "config.json", "trainer_state.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    backend = load_molmo2(str(trained), device="cpu")
    assert backend.has_learned_scorer
    assert json.loads((trained / "trainer_state.json").read_text())["step"] == 20
    assert backend.model.config.stts["aux_loss"] == "mse"  # the paper's form unless --aux-loss says otherwise
    clip = make_clip(7, num_frames=4)
    loss = _clip_loss(backend, Sample(clip.frames, clip.qas[0].question, clip.qas[0].answer), 0.5)
    assert math.isfinite(float(loss["loss"].detach()))


def test_resume_continues_from_the_saved_step(trained: Path) -> None:
    args = ["--preset", "micro", "--out", str(trained), "--steps", "22", "--batch", "1", "--frames", "4",
            "--eval-every", "1000", "--save-every", "1", "--resume", "--aux-loss", "bce", "--world", "mixed"]
    assert main(args) == 0
    steps = [r["step"] for r in _log(trained)]
    assert steps[-2:] == [21, 22]
    assert json.loads((trained / "trainer_state.json").read_text())["step"] == 22
    assert json.loads((trained / "config.json").read_text())["stts"]["aux_loss"] == "bce"
    assert all(math.isfinite(r["aux_loss"]) and r["aux_loss"] > 0 for r in _log(trained)[-2:])


def test_loss_reaches_every_part_of_the_model(trained: Path) -> None:
    backend = load_molmo2(str(trained), device="cpu")
    backend.model.train()
    clip = make_clip(3, num_frames=4)
    sample = Sample(clip.frames, clip.qas[0].question, clip.qas[0].answer,
                    more=[(q.question, q.answer) for q in clip.qas[1:]])
    _clip_loss(backend, sample, 0.5)["loss"].backward()
    named = dict(backend.model.named_parameters())
    for name in ("temporal_token_scorer.mlp.w1.weight", "temporal_token_scorer.patch_token_pooler.wq.weight",
                 "model.vision_tower.layers.0.mlp.fc1.weight", "lm_head.weight"):
        grad = named[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


def _one_question_loss(backend, prompt: dict, answer: str, visual: torch.Tensor) -> torch.Tensor:
    """The plain way: one question, labels on the answer, the model's own loss."""
    target = torch.tensor([backend.answer_ids(answer)])
    n = prompt["input_ids"].shape[1]
    llm = {"input_ids": torch.cat([prompt["input_ids"], target], 1),
           "attention_mask": torch.cat([prompt["attention_mask"], torch.ones_like(target)], 1),
           "mm_token_type_ids": torch.cat([prompt["mm_token_type_ids"], torch.zeros_like(target)], 1)}
    labels = llm["input_ids"].clone()
    labels[:, :n] = -100
    return backend.model(**llm, mm_encoder_outputs=backend.encoder_outputs(visual), labels=labels).loss


@pytest.mark.parametrize("keep", [1.0, 0.5])
def test_batched_answer_loss_equals_one_question_at_a_time(trained: Path, keep: float) -> None:
    backend = load_molmo2(str(trained), device="cpu")
    clip = make_clip(11, num_frames=4)
    qas = [("what color is the moving object ?", "red"), ("how many objects are there at the end ?", "two"),
           ("does the blue circle move ?", "no")]  # prompts of different lengths: rows get padded
    prepared = [backend.prepare(clip.frames, q) for q, _ in qas]
    assert len({p.tensors["input_ids"].shape[1] for p in prepared}) > 1
    with torch.no_grad():
        vp = visual_pass(backend, prepared[0], keep, "learned" if keep < 1 else None)
        prompts = [backend.llm_inputs(p, vp.prune) for p in prepared]
        batched = backend.answer_pass(prompts, [a for _, a in qas], vp.visual)[0]
        singles = [_one_question_loss(backend, p, a, vp.visual) for p, (_, a) in zip(prompts, qas, strict=True)]
    torch.testing.assert_close(batched, torch.stack(singles).mean(), atol=1e-5, rtol=1e-5)
    # Layer 0 is the LLM's input: its visual positions hold the visual tokens, in order, each added
    # to the placeholder's embedding.
    with torch.no_grad():
        loss, hidden = backend.answer_pass(prompts, [a for _, a in qas], vp.visual, hidden_layer=0)
        placeholder = backend.model.get_input_embeddings().weight[backend.image_token_id]
    torch.testing.assert_close(loss, batched)
    torch.testing.assert_close(hidden, vp.visual.to(hidden.dtype) + placeholder)
    with pytest.raises(ValueError, match="hidden_layer"):
        backend.answer_pass(prompts, [a for _, a in qas], vp.visual, hidden_layer=99)
    # The video prefix runs once and the questions on its cache: the same as all rows in full.
    with torch.no_grad():
        shared = backend.answer_pass(prompts, [a for _, a in qas], vp.visual, hidden_layer=2)
        padded = backend._padded_answer_pass(prompts, [a for _, a in qas], vp.visual, hidden_layer=2)
        alone = backend.answer_pass(prompts[:1], [qas[0][1]], vp.visual)[0]
    torch.testing.assert_close(shared[0], padded[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared[1], padded[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, singles[0], atol=1e-5, rtol=1e-5)
    # Training with gradient checkpointing (no KV cache) takes the padded pass and gets the same loss.
    backend.model.train()
    backend.set_gradient_checkpointing(True)
    checkpointed = backend.answer_pass(prompts, [a for _, a in qas], vp.visual, hidden_layer=2)
    assert checkpointed[0].requires_grad
    torch.testing.assert_close(checkpointed[0].detach(), shared[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(checkpointed[1].detach(), shared[1], atol=1e-5, rtol=1e-5)


def test_from_scratch_aids_run_and_save_the_probe(tmp_path: Path) -> None:
    """--grounding and --dense-weight (each with its step limit) and --curriculum in one short run."""
    out = tmp_path / "run"
    args = ["--preset", "micro", "--out", str(out), "--steps", "3", "--batch", "2", "--frames", "6",
            "--eval-every", "1", "--save-every", "100", "--grounding", "2", "--grounding-steps", "1",
            "--dense-weight", "1.0", "--dense-steps", "2", "--curriculum", "1:4:1", "2:5:1"]
    assert main(args) == 0
    log = _log(out)
    assert all("val_acc_grounding" in r and 0.0 <= r["val_acc_grounding"] <= 1.0 for r in log)
    assert log[0]["dense_loss"] > 0 and log[1]["dense_loss"] > 0 and log[2]["dense_loss"] == 0
    assert (out / "probe.safetensors").exists()
    assert load_molmo2(str(out), device="cpu").has_learned_scorer


def test_curriculum_stages_follow_each_other_then_give_the_real_data(tmp_path: Path) -> None:
    stages = [(1, 4, 10), (2, 8, 5)]
    assert [stage_at(stages, s, 16) for s in (0, 9, 10, 14, 15, 1000)] == [
        (1, 4), (1, 4), (2, 8), (2, 8), (3, 16), (3, 16)]
    assert stage_at([], 0, 16) == (3, 16)
    with pytest.raises(SystemExit):
        main(["--preset", "micro", "--out", "/nonexistent/x", "--curriculum", "4:4:10"])
    with pytest.raises(SystemExit):  # the micro LLM has 2 layers
        main(["--preset", "micro", "--out", str(tmp_path / "x"), "--dense-weight", "1", "--dense-llm-layer", "3"])
    with pytest.raises(SystemExit):  # the aids need scene labels, which a JSONL dataset does not have
        main(["--preset", "micro", "--out", "/nonexistent/x", "--data", "data.jsonl", "--dense-weight", "1"])


def test_group_probe_loss_is_the_mean_cross_entropy_of_its_heads() -> None:
    """Colour and shape from the visual tokens, motion from the LLM states; ignored motion labels drop out."""
    torch.manual_seed(0)
    probe = GroupProbe(8)
    visual, context = torch.randn(5, 8), torch.randn(5, 8)
    labels = torch.stack([torch.randint(0, n, (5,)) for n in probe.sizes], dim=1)
    labels[:2, -1] = -100

    def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        used = target >= 0
        return -(logits[used].log_softmax(-1).gather(1, target[used, None])).mean()

    logits = visual @ probe.head.weight.T + probe.head.bias
    expected, start = [], 0
    for i, n in enumerate(probe.sizes[:-1]):
        expected.append(cross_entropy(logits[:, start:start + n], labels[:, i]))
        start += n
    torch.testing.assert_close(probe.loss(visual, labels), torch.stack(expected).mean())
    expected.append(cross_entropy(context @ probe.motion.weight.T + probe.motion.bias, labels[:, -1]))
    torch.testing.assert_close(probe.loss(visual, labels, context), torch.stack(expected).mean())
    labels[:, -1] = -100  # no motion label at all: the head is left out rather than giving NaN
    torch.testing.assert_close(probe.loss(visual, labels, context), torch.stack(expected[:-1]).mean())


def test_dense_loss_follows_the_kept_groups_and_reaches_the_vit(trained: Path) -> None:
    from stts_core.data.synthetic import group_labels

    backend = load_molmo2(str(trained), device="cpu")
    clip = make_clip(5, num_frames=4)
    prepared = backend.prepare(clip.frames, clip.qas[0].question)
    labels = group_labels(clip.scene, *prepared.grid)
    probe = GroupProbe(backend.llm_hidden_size)
    dense = DenseTargets(probe, labels, 2.0, prepared)
    parts = stts_loss(backend, [prepared], [clip.qas[0].answer], 0.5, dense=dense)
    assert float(parts["dense"]) > 0
    torch.testing.assert_close(parts["loss"].detach(), parts["task"] + 0.5 * parts["aux"] + 2.0 * parts["dense"])
    parts["loss"].backward()
    params = dict(backend.model.named_parameters())
    assert float(params["model.vision_tower.layers.0.mlp.fc1.weight"].grad.abs().sum()) > 0
    assert float(probe.motion.weight.grad.abs().sum()) > 0  # the motion head reads the LLM states
    with pytest.raises(ValueError, match="do not match"):
        DenseTargets(probe, labels[:, :3], 1.0, prepared)


def test_answer_ids_end_with_eos(trained: Path) -> None:
    backend = load_molmo2(str(trained), device="cpu")
    ids = backend.answer_ids("red")
    assert ids[-1] == backend.tokenizer.eos_token_id
    assert backend.tokenizer.decode(ids[:-1]).strip() == "red"


def test_lr_schedule_warms_up_decays_and_respects_the_time_budget() -> None:
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(20, 100, 1.0, 10, time_fraction=1.0) == pytest.approx(0.1)
    assert lr_at(20, 100, 1.0, 10) > lr_at(60, 100, 1.0, 10)


BAD_ARGS = [
    ["--keep", "0"], ["--keep", "1.5"], ["--keep", "nan"], ["--keep-choices", "0.5", "2"], ["--frames", "4.5"],
    ["--frames", "0"], ["--steps", "0"], ["--batch", "-1"], ["--lr", "-1e-3"], ["--lr", "inf"],
    ["--aux-weight", "-0.5"], ["--dense-weight", "-1"], ["--grounding", "-2"], ["--weight-decay", "nan"],
    ["--curriculum", "4:4:10"], ["--curriculum", "1:4"], ["--scorer", "learned", "random"], ["--scorer", "best"],
    ["--preset", "huge"], ["--model", "x"],  # --model and --preset together
    ["--data", "/nonexistent/data.jsonl"], ["--aux-loss", "l1"], ["--world", "moon"],
]


@pytest.mark.parametrize("bad", BAD_ARGS, ids=" ".join)
def test_bad_values_are_one_line_argparse_errors(tmp_path: Path, capsys: pytest.CaptureFixture, bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--preset", "micro", "--out", str(tmp_path / "x"), "--steps", "1", *bad])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, err
    assert not (tmp_path / "x").exists()


def test_neither_model_nor_preset_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "--preset" in capsys.readouterr().err


def test_objective_is_task_plus_half_aux_assembled_independently(micro_backend: VideoBackend) -> None:
    """The objective against the same pieces put together by hand: the learned scorer's scores, the aux loss
    on block k's features, the answer loss through the pruned path; None is the plain model, no aux."""
    from stts_core.methods.losses import temporal_aux_loss

    clip = make_clip(4, num_frames=4)
    qas = [(q.question, q.answer) for q in clip.qas[:2]]
    prepared = micro_backend.prepare_questions(clip.frames, [q for q, _ in qas])
    answers = [a for _, a in qas]
    with torch.no_grad():
        parts = stts_loss(micro_backend, prepared, answers, 0.5)
        prefix = micro_backend.vit_prefix(prepared[0])
        scores = micro_backend.learned_scores(prefix, prepared[0])
        aux = temporal_aux_loss(scores, prefix.hidden, prepared[0].groups)
        vp = visual_pass(micro_backend, prepared[0], 0.5, "learned")
        task = micro_backend.answer_pass([micro_backend.llm_inputs(p, vp.prune) for p in prepared], answers,
                                         vp.visual)[0]
        plain = stts_loss(micro_backend, prepared, answers, 0.5, scorer=None)
        unpruned = visual_pass(micro_backend, prepared[0], 1.0, None)
        plain_task = micro_backend.answer_pass([micro_backend.llm_inputs(p, None) for p in prepared], answers,
                                               unpruned.visual)[0]
        no_aux = stts_loss(micro_backend, prepared, answers, 0.5, aux_weight=0.0)
        bce = stts_loss(micro_backend, prepared, answers, 0.5, aux_form="bce")
        aux_bce = temporal_aux_loss(scores, prefix.hidden, prepared[0].groups, "bce")
    torch.testing.assert_close(parts["aux"], aux)
    torch.testing.assert_close(parts["task"], task)
    torch.testing.assert_close(parts["loss"], task + 0.5 * aux)
    assert float(aux) > 0 and parts["score_logits"].shape == (3 * prepared[0].groups.shape[0],)
    torch.testing.assert_close(plain["loss"], plain_task)
    assert float(plain["aux"]) == 0.0 and "score_logits" not in plain
    assert float((plain["task"] - parts["task"]).abs()) > 0  # pruning changed what the LLM saw
    torch.testing.assert_close(no_aux["loss"], task)
    torch.testing.assert_close(bce["aux"], aux_bce)
    torch.testing.assert_close(bce["loss"], task + 0.5 * aux_bce)
    assert float((aux_bce - aux).abs()) > 1e-3
    with pytest.raises(ValueError, match="one answer per"):
        stts_loss(micro_backend, prepared, answers[:1], 0.5)


def test_validation_keep_is_the_smallest_pruned_ratio() -> None:
    assert validation_keep([1.0, 0.7, 0.3]) == 0.3
    assert validation_keep([0.5]) == 0.5
    assert validation_keep([1.0]) == 0.5


def test_score_logits_invert_the_sigmoid_over_prunable_frames() -> None:
    logits = torch.tensor([[9.0, 9.0], [-3.0, 0.5], [-20.0, 4.0]])
    got = score_logits(torch.sigmoid(logits))
    torch.testing.assert_close(got, logits[1:].reshape(-1), atol=1e-3, rtol=1e-4)  # frame 0 left out
    assert got.requires_grad is False


def test_saturation_warning_only_below_the_threshold(capsys: pytest.CaptureFixture) -> None:
    warn_if_saturated({"step": 3, "score_logit_median": -12.5})
    assert "saturated" in capsys.readouterr().out
    warn_if_saturated({"step": 4, "score_logit_median": -9.5})
    warn_if_saturated({"step": 5})
    assert capsys.readouterr().out == ""


def test_log_holds_the_scorer_logit_range(trained: Path) -> None:
    log = _log(trained)
    for r in log:
        assert r["score_logit_min"] <= r["score_logit_median"] <= r["score_logit_max"]
    assert len({r["score_logit_median"] for r in log}) > 1  # it follows the scorer as it trains


def test_several_keep_ratios_are_drawn_per_sample_and_json_written(tmp_path: Path) -> None:
    """--keep 1.0 0.5: some samples unpruned; the result JSON is the last log record, validated at 0.5."""
    out, result = tmp_path / "run", tmp_path / "result.json"
    args = ["--preset", "micro", "--out", str(out), "--steps", "2", "--batch", "3", "--frames", "4",
            "--eval-every", "1000", "--save-every", "1000", "--keep", "1.0", "0.5", "--json", str(result)]
    assert main(args) == 0
    record = json.loads(result.read_text())
    assert record == _log(out)[-1]
    assert record["step"] == 2 and 0.0 <= record["val_acc_keep"] <= 1.0
    assert json.loads((out / "trainer_state.json").read_text())["args"]["keep"] == [1.0, 0.5]


def test_jsonl_data_trains(tmp_path: Path) -> None:
    from stts_core.data.synthetic import write_split

    jsonl = write_split(tmp_path / "data", "train", 2, num_frames=4, size=84)
    out = tmp_path / "run"
    args = ["--preset", "micro", "--data", str(jsonl), "--out", str(out), "--steps", "2", "--batch", "2",
            "--frames", "4", "--eval-every", "1000", "--save-every", "2"]
    assert main(args) == 0
    assert len(_log(out)) == 2
    assert torch.isfinite(torch.tensor([r["task_loss"] for r in _log(out)])).all()
    # Each pass visits every line once, in a seeded order; `start` resumes mid-pass.
    from itertools import islice

    from stts_core.train.samples import jsonl_samples

    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    first = [(s.question, s.answer) for s in islice(jsonl_samples(jsonl, 4, seed=0, start=0), 2 * len(rows))]
    assert sorted(first[:len(rows)]) == sorted((r["question"], r["answer"]) for r in rows)
    assert sorted(first[len(rows):]) == sorted(first[:len(rows)]) and first[len(rows):] != first[:len(rows)]
    resumed = [(s.question, s.answer) for s in islice(jsonl_samples(jsonl, 4, seed=0, start=3), 4)]
    assert resumed == first[3:7]


@pytest.mark.parametrize("content", ["", "\n\n", '{"video": "a.mp4", "question": "q"}\n', "[1, 2]\n", "{not json\n",
                                     '{"video": "missing.mp4", "question": "q", "answer": "a"}\n'])
def test_unusable_jsonl_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture, content: str) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["--preset", "micro", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len([x for x in err.splitlines() if x.startswith("error:")]) == 1, err


def test_gradient_clipping_keeps_the_vision_side_from_shrinking_the_llm_step(trained: Path) -> None:
    backend = load_molmo2(str(trained), device="cpu")
    named = dict(backend.model.named_parameters())
    for name, p in named.items():
        p.grad = torch.full_like(p, 100.0 if name.startswith(VISION_PREFIXES) else 1e-4)
    clip_gradients(backend.model, MOLMO2, 1.0)
    vision = torch.stack([p.grad.norm() for n, p in named.items() if n.startswith(VISION_PREFIXES)]).norm()
    assert float(vision) == pytest.approx(1.0, rel=1e-4)
    assert float(named["lm_head.weight"].grad.max()) == pytest.approx(1e-4)


@pytest.mark.slow
def test_two_processes_take_the_same_steps_as_one(tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo) and one process, same global batch: the same logged losses;
    only process 0 writes the log and the checkpoint."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root), HF_HUB_OFFLINE="1")
    args = ["-m", "stts_core.train", "--preset", "micro", "--steps", "3", "--batch", "4", "--frames", "4",
            "--eval-every", "1000", "--save-every", "1000", "--keep", "1.0", "0.5", "--lr", "3e-3", "--warmup", "2"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for command, out in ((launcher, tmp_path / "two"), ([sys.executable], tmp_path / "one")):
        done = subprocess.run([*command, *args, "--out", str(out)], cwd=root, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [r["step"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two, strict=True):
        for key in ("task_loss", "aux_loss", "score_logit_median"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
    assert one[-1]["task_loss"] < one[0]["task_loss"]
    assert json.loads((tmp_path / "two" / "trainer_state.json").read_text())["step"] == 3


def test_freeze_scorer_keeps_the_scorer_and_trains_the_rest(micro_checkpoint: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "frozen"
    assert main(["--model", str(micro_checkpoint), "--out", str(out), "--steps", "2", "--batch", "1", "--frames", "4",
                 "--lr", "1e-2", "--warmup", "0", "--keep", "0.5", "--eval-every", "1000", "--freeze-scorer"]) == 0
    before, after = load_file(str(micro_checkpoint / "model.safetensors")), load_file(str(out / "model.safetensors"))
    scorer = [k for k in before if k.startswith("temporal_token_scorer.")]
    assert scorer and all(torch.equal(before[k], after[k]) for k in scorer)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("model.transformer."))
