"""The footage world (clips filmed like real video) and the optical-flow check of a scorer on real videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stts_core.analysis.footage_check import flow_motion, footage_check
from stts_core.analysis.ood import OOD_PHOTOS
from stts_core.data import synthetic as syn
from stts_core.data.synthetic.footage import Camera, draw_footage_style, render_footage


def test_footage_world_keeps_the_scenes_questions_and_is_seeded() -> None:
    for seed in range(4):
        plain, footage = syn.make_clip(seed, num_frames=6), syn.make_clip(seed, num_frames=6, world="footage")
        assert [q.question for q in footage.qas] == [q.question for q in plain.qas]
        assert [q.answer for q in footage.qas] == [q.answer for q in plain.qas]
        assert footage.frames.shape == plain.frames.shape and footage.frames.dtype == np.uint8
        assert not np.array_equal(footage.frames, plain.frames)
        assert np.array_equal(footage.frames, syn.make_clip(seed, num_frames=6, world="footage").frames)


def test_footage_world_films_only_training_photographs() -> None:
    used = set()
    for seed in range(60):
        scene = syn.make_scene(np.random.default_rng(seed), num_frames=4)
        style = draw_footage_style(np.random.default_rng([seed, 11]), scene)
        used |= {style.background, style.cut_background, *(s.photo for s in style.sprites)}
    assert used <= set(syn.TRAIN_PHOTOS)
    assert not used & set(OOD_PHOTOS)


def test_footage_styles_cover_still_and_moving_cameras_and_the_degradations() -> None:
    styles = []
    for seed in range(80):
        scene = syn.make_scene(np.random.default_rng(seed), num_frames=8)
        styles.append(draw_footage_style(np.random.default_rng([seed, 11]), scene))
    still = [s for s in styles if s.camera == Camera(start=s.camera.start)]
    assert 0.2 < len(still) / len(styles) < 0.7
    assert any(s.camera.zoom_rate for s in styles) and any(s.camera.roll_rate for s in styles)
    assert any(s.sprites and any(p.wobble for p in s.sprites) for s in styles)
    assert {s.blur for s in styles} == {"none", "motion", "focus"}
    assert any(s.jpeg for s in styles) and any(s.ripple for s in styles) and any(s.shadow for s in styles)


def test_a_still_camera_without_movers_changes_only_where_the_scene_does() -> None:
    """With the camera still and no sprite, ripple, light change, blur, noise or compression, the frames
    differ only where the scene's shapes are (the background is the same photograph)."""
    seed = 3
    scene = syn.make_scene(np.random.default_rng(seed), num_frames=6)
    style = draw_footage_style(np.random.default_rng([seed, 11]), scene)
    style.camera, style.sprites, style.ripple, style.shadow = Camera(), [], None, None
    style.gain, style.blur, style.noise, style.jpeg, style.cut_at = 0.0, "none", 0.0, None, None
    frames = render_footage(scene, style).astype(int)
    objects = np.zeros(frames.shape[:3], dtype=bool)
    for t in range(scene.num_frames):
        layer = np.zeros(frames.shape[1:], dtype=np.uint8)
        for obj in scene.objects:
            if obj.visible(t):
                syn.draw_object(layer, obj, t, fill=(255, 255, 255))
        objects[t] = layer[..., 0] > 0
    changed = np.abs(frames[1:] - frames[:-1]).max(-1) > 0
    assert not (changed & ~objects[1:] & ~objects[:-1]).any()


def test_a_moving_camera_moves_the_background() -> None:
    seed = 5
    scene = syn.make_scene(np.random.default_rng(seed), num_frames=4)
    style = draw_footage_style(np.random.default_rng([seed, 11]), scene)
    style.camera = Camera(velocity=(3.0, 0.0))
    style.sprites, style.ripple, style.noise, style.jpeg = [], None, 0.0, None
    frames = render_footage(scene, style)
    motion = flow_motion(frames, (126, 126), flow_px=0.5)
    assert motion[1:].mean() > 0.5 and not motion[0].any()


def test_blend_world_is_footage_for_even_seeds_and_rich_or_plain_for_odd() -> None:
    for seed in range(4):
        blend = syn.make_clip(seed, num_frames=4, world="blend").frames
        world = "footage" if seed % 2 == 0 else ("rich" if seed % 4 == 1 else "plain")
        assert np.array_equal(blend, syn.make_clip(seed, num_frames=4, world=world).frames)


def test_flow_labels_a_moving_square_and_not_the_still_background() -> None:
    frames = np.full((4, 96, 96, 3), 60, dtype=np.uint8)
    rng = np.random.default_rng(0)
    frames[:] = rng.integers(40, 80, (96, 96, 3), dtype=np.uint8)  # a still texture
    for t in range(4):
        frames[t, 30:54, 10 + 8 * t:34 + 8 * t] = (230, 40, 40)
    motion = flow_motion(frames, (96, 96))
    assert not motion[0].any()
    assert motion[1:, 30:54, 20:60].mean() > 0.3
    assert motion[1:, 70:, :].mean() < 0.02


def test_footage_check_reports_recall_against_chance_and_the_heuristic(micro_backend, tmp_path: Path) -> None:
    from stts_core.data.video_encode import write_video

    clip = syn.make_clip(11, num_frames=8, world="footage")
    video = write_video(tmp_path / "clip.mp4", clip.frames, fps=8)
    out = footage_check(micro_backend, video, ["heuristic", "random"], num_frames=8, keep_ratio=0.3)
    assert out["frames"] == 8 and 0.0 <= out["moving_share"] <= 1.0
    heuristic = out["heuristic"]
    assert heuristic["recall_over_heuristic"] == pytest.approx(1.0)
    if heuristic["recall"] is not None:
        assert heuristic["recall_over_chance"] == pytest.approx(heuristic["recall"] / heuristic["chance"])
