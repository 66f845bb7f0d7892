"""Synthetic clips: determinism, balance, and answers checked against the rendered pixels.

The pixel checks re-derive every answer from the frames alone (saturated-colour masks, centroids,
connected components, fill ratios), so a rendering bug that disagrees with the scene parameters fails.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stts_core.cli import synthetic as synthetic_cli
from stts_core.data import synthetic as syn

MIN_AREA = 150  # px; a 33-px triangle covers about 540 px, anti-aliased edge blobs far less


@cache
def clips(split: str, n: int) -> tuple[syn.Clip, ...]:
    return tuple(syn.iter_split(split, n))


@dataclass
class Track:
    """One colour's blob per frame: area, centroid and how much of its bounding box it fills."""

    area: np.ndarray
    centroid: np.ndarray
    fill: np.ndarray

    def present(self) -> np.ndarray:
        return self.area >= MIN_AREA


def hsv(frames: np.ndarray) -> np.ndarray:
    """HSV of a (..., H, W, 3) RGB stack in one OpenCV call."""
    flat = np.ascontiguousarray(frames.reshape(-1, frames.shape[-2], 3))
    return cv2.cvtColor(flat, cv2.COLOR_RGB2HSV).reshape(frames.shape)


def saturated_mask(frames: np.ndarray) -> np.ndarray:
    h = hsv(frames)
    return (h[..., 1] > 110) & (h[..., 2] > 110)


# OpenCV hue (0-180) windows of the palette: red wraps around 0, yellow ~25, green ~64, blue ~114.
HUE_WINDOWS = {
    "red": ((0, 12), (165, 181)),
    "yellow": ((15, 40),),
    "green": ((45, 90),),
    "blue": ((95, 135),),
}


def tracks(frames: np.ndarray) -> dict[str, Track]:
    h = hsv(frames)
    sat = (h[..., 1] > 110) & (h[..., 2] > 110)
    hue = h[..., 0]
    ys, xs = np.arange(frames.shape[1]), np.arange(frames.shape[2])
    out: dict[str, Track] = {}
    for name, windows in HUE_WINDOWS.items():
        mask = sat & np.logical_or.reduce([(hue >= lo) & (hue < hi) for lo, hi in windows])
        area = mask.sum((1, 2)).astype(float)
        if not (area >= MIN_AREA).any():
            continue
        safe = np.maximum(area, 1)
        centroid = np.stack([(mask.sum(1) * xs).sum(1) / safe, (mask.sum(2) * ys).sum(1) / safe], axis=1)
        cols, rows = mask.any(1), mask.any(2)
        width = xs.size - cols[:, ::-1].argmax(1) - cols.argmax(1)
        height = ys.size - rows[:, ::-1].argmax(1) - rows.argmax(1)
        fill = area / np.maximum(width * height, 1)
        missing = area < MIN_AREA
        centroid[missing], fill[missing] = np.nan, np.nan
        out[name] = Track(area, centroid, fill)
    return out


def shape_from_fill(fill: float) -> str:
    # Square fills its box (1.0), a circle pi/4 (0.785), the triangle half of it (0.5).
    if fill > 0.9:
        return "square"
    return "circle" if fill > 0.65 else "triangle"


def pixel_answers(frames: np.ndarray, qas: list[syn.QA]) -> list[str]:
    """Answer each question from the frames alone."""
    tr = tracks(frames)
    return [_pixel_answer(frames, tr, qa) for qa in qas]


def _pixel_answer(frames: np.ndarray, tr: dict[str, Track], qa: syn.QA) -> str:
    movers = {}
    for name, track in tr.items():
        if track.present().all():
            shift = track.centroid[-1] - track.centroid[0]
            if np.abs(shift).max() > 20:
                movers[name] = shift
    if qa.qtype == "count":
        sat = saturated_mask(frames[-1]).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(sat, connectivity=8)
        blobs = int((stats[1:, cv2.CC_STAT_AREA] >= MIN_AREA).sum())
        return syn.COUNT_WORDS[blobs - 1]
    if qa.qtype == "does_move":
        color = qa.question.split()[2]
        return "yes" if color in movers else "no"
    if qa.qtype in ("moving_color", "moving_shape", "direction"):
        assert len(movers) == 1, movers
        ((name, shift),) = movers.items()
        if qa.qtype == "moving_color":
            return name
        if qa.qtype == "moving_shape":
            return shape_from_fill(float(np.nanmedian(tr[name].fill)))
        dx, dy = shift
        if abs(dx) > abs(dy):
            return "right" if dx > 0 else "left"
        return "down" if dy > 0 else "up"
    if qa.qtype == "appears_shape":
        (name,) = [n for n, t in tr.items() if not t.present()[0] and t.present()[-1]]
        return shape_from_fill(float(np.nanmedian(tr[name].fill)))
    if qa.qtype == "disappears_color":
        (name,) = [n for n, t in tr.items() if t.present()[0] and not t.present()[-1]]
        return name
    raise AssertionError(qa.qtype)


def test_same_seed_same_clip_and_different_seeds_differ() -> None:
    a, b, c = syn.make_clip(123), syn.make_clip(123), syn.make_clip(124)
    assert a.frames.shape == (16, 252, 252, 3) and a.frames.dtype == np.uint8
    assert np.array_equal(a.frames, b.frames)
    assert a.qas == b.qas and a.scene == b.scene
    assert not np.array_equal(a.frames, c.frames)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**40), frames=st.integers(4, 12), size=st.sampled_from([126, 168, 252]))
def test_make_clip_is_a_pure_function_of_its_arguments(seed: int, frames: int, size: int) -> None:
    a, b = syn.make_clip(seed, frames, size), syn.make_clip(seed, frames, size)
    assert a.frames.shape == (frames, size, size, 3)
    assert np.array_equal(a.frames, b.frames) and a.qas == b.qas
    assert 1 <= len(a.qas) <= 3 and a.qas[0].qtype == a.scene.focus


def test_split_seeds_are_disjoint_and_fixed() -> None:
    assert [c.seed for c in syn.iter_split("test", 3)] == [2_000_000, 2_000_001, 2_000_002]
    assert syn.SPLIT_SEEDS["val"] - syn.SPLIT_SEEDS["train"] >= 1_000_000
    with pytest.raises(ValueError):
        next(syn.iter_split("nope", 1))


def test_answers_match_rendered_pixels_for_every_question_type() -> None:
    seen: Counter[str] = Counter()
    for clip in clips("test", 200)[:100]:
        assert pixel_answers(clip.frames, clip.qas) == [qa.answer for qa in clip.qas], (clip.seed, clip.qas)
        seen.update(qa.qtype for qa in clip.qas)
    assert set(seen) == set(syn.QUESTION_TYPES)


def test_answers_match_scene_parameters() -> None:
    for clip in clips("test", 200):
        scene, last = clip.scene, clip.scene.num_frames - 1
        by_color = {o.color: o for o in scene.objects}
        assert len(by_color) == len(scene.objects)
        for qa in clip.qas:
            movers = [o for o in scene.objects if o.behaviour == "moves"]
            if qa.qtype == "count":
                assert qa.answer == syn.COUNT_WORDS[sum(o.visible(last) for o in scene.objects) - 1]
            elif qa.qtype == "does_move":
                assert qa.answer == ("yes" if by_color[qa.question.split()[2]].behaviour == "moves" else "no")
            elif qa.qtype == "moving_color":
                assert [o.color for o in movers] == [qa.answer]
            elif qa.qtype == "moving_shape":
                assert [o.shape for o in movers] == [qa.answer]
            elif qa.qtype == "direction":
                (m,) = movers
                assert m.color in qa.question and m.shape in qa.question
                dx, dy = np.subtract(m.center(last), m.center(0))
                assert syn.DIRECTIONS[qa.answer] == (int(np.sign(dx)), int(np.sign(dy)))
                assert max(abs(dx), abs(dy)) >= 0.35 * scene.size
            elif qa.qtype == "appears_shape":
                (o,) = [o for o in scene.objects if not o.visible(0) and o.visible(last)]
                assert o.shape == qa.answer and o.frame_on >= 4
            elif qa.qtype == "disappears_color":
                (o,) = [o for o in scene.objects if o.visible(0) and not o.visible(last)]
                assert o.color == qa.answer and o.frame_off >= 4


def test_every_type_and_several_answers_in_first_200_test_clips() -> None:
    answers: dict[str, Counter[str]] = defaultdict(Counter)
    for clip in clips("test", 200):
        for qa in clip.qas:
            assert qa.answer in syn.ANSWERS[qa.qtype]
            answers[qa.qtype][qa.answer] += 1
    assert set(answers) == set(syn.QUESTION_TYPES)
    totals = [sum(c.values()) for c in answers.values()]
    assert max(totals) < 2 * min(totals), answers
    for qtype, counts in answers.items():
        assert len(counts) >= 2, (qtype, counts)
        assert max(counts.values()) < 0.7 * sum(counts.values()), (qtype, counts)


def test_background_is_exactly_static_outside_objects() -> None:
    for clip in clips("test", 200)[:40]:
        scene = clip.scene
        covered = np.zeros((scene.size, scene.size), dtype=bool)
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box(scene.num_frames)
            covered[max(0, int(y0) - 2) : int(y1) + 3, max(0, int(x0) - 2) : int(x1) + 3] = True
        free = clip.frames[:, ~covered]
        assert np.array_equal(free, np.broadcast_to(free[:1], free.shape))
        assert not saturated_mask(clip.frames[0])[~covered].any()


def test_objects_are_drawn_in_their_colour_where_the_scene_says() -> None:
    for clip in clips("test", 200)[:40]:
        for obj in clip.scene.objects:
            for t in range(clip.scene.num_frames):
                cx, cy = np.rint(obj.center(t)).astype(int)
                pixel = tuple(int(v) for v in clip.frames[t, cy + obj.size // 6, cx])
                assert (pixel == syn.COLORS[obj.color]) == obj.visible(t), (clip.seed, obj, t)


def test_vocabulary_covers_every_question_and_answer() -> None:
    vocab = set(syn.VOCABULARY)
    assert sorted(vocab) == syn.VOCABULARY
    for answers in syn.ANSWERS.values():
        assert set(answers) <= vocab
    for clip in clips("test", 200):
        for qa in clip.qas:
            assert qa.question.endswith(" ?") and qa.question == qa.question.lower()
            assert set(qa.question.split()) | {qa.answer} <= vocab


def test_write_split_round_trips_through_mp4(tmp_path: Path) -> None:
    video = pytest.importorskip("stts_core.data.video")
    jsonl = syn.write_split(tmp_path, "val", 3)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    expected = list(syn.iter_split("val", 3))
    assert len(records) == sum(len(c.qas) for c in expected)
    assert {r["seed"] for r in records} == {c.seed for c in expected}
    by_seed = {c.seed: c for c in expected}
    for record in records:
        clip = by_seed[record["seed"]]
        assert any(qa.question == record["question"] and qa.answer == record["answer"] for qa in clip.qas)
    for clip in expected:
        (path,) = {tmp_path / r["video"] for r in records if r["seed"] == clip.seed}
        decoded = video.load_video(path, 16).frames
        assert decoded.shape == (16, 252, 252, 3)
        error = np.abs(decoded.astype(np.int16) - clip.frames.astype(np.int16))
        assert error.mean() < 3.0, error.mean()
        assert pixel_answers(decoded, clip.qas) == [qa.answer for qa in clip.qas], (clip.seed, clip.qas)


def test_example_clips_and_cli(tmp_path: Path) -> None:
    pytest.importorskip("stts_core.data.video")
    examples = syn.example_clips(tmp_path / "ex", n=3)
    assert len(examples) == 3 and all(p.is_file() and p.suffix == ".mp4" for p, _ in examples)
    assert all(set(q.split()) <= set(syn.VOCABULARY) for _, q in examples)
    synthetic_cli.main(["--out", str(tmp_path / "cli"), "--split", "test", "--clips", "1"])
    assert (tmp_path / "cli" / "test" / "clip_00000.mp4").is_file()
    assert (tmp_path / "cli" / "test.jsonl").read_text().count("\n") == len(syn.make_clip(2_000_000).qas)


def test_grounding_questions_agree_with_the_scene_and_stay_out_of_the_splits() -> None:
    seen: Counter[str] = Counter()
    for seed in range(60):
        clip = syn.make_clip(seed, num_frames=8)
        objs = {o.color: o for o in clip.scene.objects}
        for qa in syn.grounding_questions(clip.scene, np.random.default_rng(seed), n=4):
            seen[qa.qtype] += 1
            assert qa.answer in syn.GROUNDING_ANSWERS[qa.qtype]
            color = next(c for c in syn.COLORS if f" {c} " in qa.question)
            if qa.qtype == "shape_of_color":
                assert qa.answer == objs[color].shape
            elif qa.qtype == "color_present":
                assert (qa.answer == "yes") == (color in objs)
            else:
                obj = objs[color]
                t = obj.frame_on if qa.question.endswith("start ?") else obj.frame_off - 1
                assert (qa.answer == "left") == (obj.center(t)[0] < clip.scene.size / 2)
            assert set(qa.question.split()) <= set(syn.VOCABULARY)
        assert all(qa.qtype in syn.QUESTION_TYPES for qa in clip.qas)
    assert set(seen) == set(syn.GROUNDING_TEMPLATES)


def test_group_labels_name_the_object_under_each_cell() -> None:
    seen: set[str] = set()
    for seed in (3, 4):  # a mover, a static object, one that appears and one that disappears
        clip = syn.make_clip(seed, num_frames=8)
        labels = syn.group_labels(clip.scene, 3, 3)
        assert labels.shape == (8, 9, len(syn.LABEL_HEADS))
        colors, shapes, motions = list(syn.COLORS), list(syn.SHAPES), syn.LABEL_HEADS["motion"]
        cell = clip.scene.size / 3
        for t in range(8):
            for obj in clip.scene.objects:
                cx, cy = obj.center(t)
                g = int(cy // cell) * 3 + int(cx // cell)
                # The cell holding the object's centre holds most of the object.
                if obj.visible(t):
                    assert labels[t, g, 0] == 1 + colors.index(obj.color)
                    assert labels[t, g, 1] == 1 + shapes.index(obj.shape)
                    bins = syn.POSITION_BINS
                    assert labels[t, g, 2] == 1 + int(cx * bins / clip.scene.size)
                    assert labels[t, g, 3] == 1 + int(cy * bins / clip.scene.size)
                    expected = {"moves": obj.direction, "appears": "appeared"}.get(obj.behaviour, "still")
                    assert motions[labels[t, g, -1]] == expected
                    seen.add(obj.behaviour)
            # Cells with no object at all are 0 in every head.
            covered = {int(obj.center(t)[1] // cell) * 3 + int(obj.center(t)[0] // cell)
                       for obj in clip.scene.objects if obj.visible(t)}
            empty = [g for g in range(9) if labels[t, g, 0] == 0]
            assert not set(empty) & covered
            assert (labels[t, empty] == 0).all()
    assert seen == set(syn.BEHAVIOURS)


def test_max_objects_limits_scenes_and_keeps_answers_consistent() -> None:
    for seed in range(40):
        clip = syn.make_clip(seed, num_frames=6, max_objects=1)
        assert len(clip.scene.objects) == 1
        for qa in clip.qas:  # one object: every question is about it
            assert qa.answer == syn.answer_for(clip.scene, qa.qtype, 0).answer
        two = syn.make_clip(seed, num_frames=6, max_objects=2)
        assert 1 <= len(two.scene.objects) <= 2
    # The default is exactly the splits' distribution (the same clip as without the argument).
    a, b = syn.make_clip(2_000_007), syn.make_clip(2_000_007, max_objects=3)
    assert (a.frames == b.frames).all() and a.qas == b.qas
    with pytest.raises(ValueError):
        syn.make_clip(1, max_objects=0)


# ---------------------------------------------------------------- the rich world


@cache
def rich_clips(n: int) -> tuple[syn.Clip, ...]:
    return tuple(syn.make_clip(seed, world="rich") for seed in range(n))


def test_rich_world_renders_the_plain_worlds_scenes_and_questions() -> None:
    for seed in range(6):
        plain, rich = syn.make_clip(seed), syn.make_clip(seed, world="rich")
        assert [(q.question, q.answer) for q in plain.qas] == [(q.question, q.answer) for q in rich.qas]
        assert [(o.color, o.shape, o.behaviour, o.frame_on, o.frame_off) for o in plain.scene.objects] == [
            (o.color, o.shape, o.behaviour, o.frame_on, o.frame_off) for o in rich.scene.objects]
        assert rich.frames.shape == plain.frames.shape and rich.frames.dtype == np.uint8
        assert not np.array_equal(rich.frames, plain.frames)
        assert np.array_equal(rich.frames, syn.make_clip(seed, world="rich").frames)


def test_unknown_world_is_refused() -> None:
    with pytest.raises(ValueError, match="world"):
        syn.make_clip(0, world="dreamy")


def test_rich_styles_cover_pans_cuts_stops_distractors_noise_and_flicker() -> None:
    styles = []
    stops = 0
    for seed in range(60):
        scene = syn.make_scene(np.random.default_rng(seed))
        styles.append(syn.draw_rich_style(np.random.default_rng([seed, 7]), scene))
        stops += sum(o.stop is not None for o in scene.objects)
    assert sum(s.pan != (0.0, 0.0) for s in styles) >= 10
    assert sum(s.cut_at is not None for s in styles) >= 5
    assert sum(bool(s.distractors) for s in styles) >= 20
    assert sum(s.noise > 0 for s in styles) >= 20 and sum(s.flicker > 0 for s in styles) >= 10
    assert stops >= 5
    assert len({s.photos[0] for s in styles}) >= 6


def test_stopping_mover_keeps_its_path_and_stands_still_after_it_stops() -> None:
    obj = syn.SceneObject("square", "red", "moves", 30, (50.0, 60.0), velocity=(4.0, 0.0), direction="right")
    end = obj.center(15)
    obj.stop, obj.velocity = 10, (4.0 * 15 / 10, 0.0)
    assert obj.center(10) == pytest.approx(end) and obj.center(15) == pytest.approx(end)
    assert obj.center(5)[0] < obj.center(10)[0]


def test_rich_objects_keep_their_colour_over_photos_noise_and_flicker() -> None:
    for clip in rich_clips(16):
        for obj in clip.scene.objects:
            for t in range(clip.scene.num_frames):
                if not obj.visible(t):
                    continue
                cx, cy = np.rint(obj.center(t)).astype(int)
                pixel = clip.frames[t, cy + obj.size // 6, cx].astype(int)
                want = np.array(syn.COLORS[obj.color])
                assert np.abs(pixel - want).max() <= 0.1 * want.max() + 25, (clip.seed, obj.color, t, pixel)


def test_rich_background_moves_in_pans_and_cuts_and_is_still_otherwise() -> None:
    checked = set()
    for seed, clip in enumerate(rich_clips(16)):
        scene = clip.scene
        style = syn.draw_rich_style(np.random.default_rng([seed, 7]), syn.make_scene(np.random.default_rng(seed)))
        covered = np.zeros((scene.size, scene.size), dtype=bool)
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box(scene.num_frames)
            covered[max(0, int(y0) - 3): int(y1) + 4, max(0, int(x0) - 3): int(x1) + 4] = True
        free = clip.frames[:, ~covered].astype(np.float32)
        change = np.abs(free[-1] - free[0]).mean()
        noise_floor = 2.5 * style.noise + 255 * style.flicker + 1.0
        if style.pan != (0.0, 0.0) or style.cut_at is not None:
            if max(abs(v) for v in style.pan) >= 1.0 or style.cut_at is not None:
                assert change > noise_floor, (seed, change, style)
                checked.add("moves")
        else:
            assert change <= noise_floor, (seed, change, style)
            checked.add("still")
    assert checked == {"moves", "still"}


def test_train_photos_load_and_stay_out_of_the_ood_check() -> None:
    from stts_core.analysis.ood import OOD_PHOTOS

    assert not set(syn.TRAIN_PHOTOS) & set(OOD_PHOTOS)
    for name in syn.TRAIN_PHOTOS:
        img = syn.photo(name)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and min(img.shape[:2]) >= 150


def test_mixed_world_is_rich_for_odd_seeds_and_plain_for_even() -> None:
    for seed in (10, 11):
        mixed = syn.make_clip(seed, num_frames=4, world="mixed").frames
        expected = syn.make_clip(seed, num_frames=4, world="rich" if seed % 2 else "plain").frames
        other = syn.make_clip(seed, num_frames=4, world="plain" if seed % 2 else "rich").frames
        assert np.array_equal(mixed, expected)
        assert not np.array_equal(mixed, other)
