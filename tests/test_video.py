"""Tests for stts_core.video: decoding, uniform sampling, rotation and input validation.

Clips are generated on the fly with PyAV; each frame carries its own index as grey levels so the tests can
tell exactly which frames were sampled.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stts_core.data import video as V
from stts_core.data.sampling import uniform_positions
from stts_core.data.timeline import MAX_PLAUSIBLE_FPS
from stts_core.data.video import (
    SampledVideo,
    VideoError,
    VideoLimits,
    frames_from_array,
    load_video,
    probe_video,
)
from stts_core.data.video_encode import write_video

HAS_VP9 = "libvpx-vp9" in av.codecs_available


def code_frame(i: int, width: int = 64, height: int = 48) -> np.ndarray:
    """Frame whose left half encodes i // 30 and right half i % 30 as grey levels 8 apart."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, : width // 2] = (i // 30) * 8 + 4
    frame[:, width // 2 :] = (i % 30) * 8 + 4
    return frame


def decode_ids(frames: np.ndarray) -> np.ndarray:
    """Inverse of code_frame, read from the middle of each half (robust to compression noise)."""
    h, w = frames.shape[1:3]
    hi = frames[:, h // 2, w // 4].astype(float).mean(axis=-1)
    lo = frames[:, h // 2, 3 * w // 4].astype(float).mean(axis=-1)
    return (np.round((hi - 4) / 8) * 30 + np.round((lo - 4) / 8)).astype(np.int64)


def write_test_clip(
    path: Path,
    n_frames: int,
    *,
    codec: str = "libx264",
    fps: int = 8,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    rotation: float | None = None,
    size: tuple[int, int] = (64, 48),
    options: dict[str, str] | None = None,
    frame_fn=code_frame,
) -> Path:
    """Encode coded frames; ``pts``/``time_base`` give irregular (VFR) timing, ``rotation`` a display matrix."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options or {"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        tb = time_base or Fraction(1, fps)
        stream.time_base = tb
        stream.codec_context.time_base = tb
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frame_fn(i, width, height), format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = tb
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture
def clip40(tmp_path: Path) -> Path:
    return write_test_clip(tmp_path / "clip40.mp4", 40)


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(
    "suffix,codec",
    [
        (".mp4", "libx264"),
        pytest.param(
            ".webm",
            "libvpx-vp9",
            marks=pytest.mark.skipif(not HAS_VP9, reason="libvpx-vp9 encoder missing from this PyAV build"),
        ),
    ],
)
def test_uniform_sampling_picks_slice_centres(tmp_path: Path, suffix: str, codec: str) -> None:
    opts = {"crf": "10"} if codec == "libx264" else {"crf": "10", "b": "0", "cpu-used": "8", "deadline": "realtime"}
    path = write_test_clip(tmp_path / f"clip{suffix}", 40, codec=codec, options=opts)
    video = load_video(path, 4)
    assert isinstance(video, SampledVideo)
    assert video.frames.shape == (4, 48, 64, 3) and video.frames.dtype == np.uint8
    # 40 frames at 8 fps = 5 s; slice centres 0.625, 1.875, 3.125, 4.375 s are frames 5, 15, 25, 35.
    assert video.indices.tolist() == [5, 15, 25, 35]
    np.testing.assert_allclose(video.timestamps, [0.625, 1.875, 3.125, 4.375])
    assert decode_ids(video.frames).tolist() == [5, 15, 25, 35]
    assert video.total_frames == 40
    assert video.fps == pytest.approx(8.0)
    assert video.duration == pytest.approx(5.0)
    assert (video.width, video.height) == (64, 48)


def test_metadata_is_plain_python(clip40: Path) -> None:
    meta = load_video(clip40, 8).metadata()
    assert set(meta) == {"fps", "duration", "total_num_frames", "frames_indices", "width", "height"}
    assert meta["frames_indices"] == [2, 7, 12, 17, 22, 27, 32, 37]
    assert all(type(i) is int for i in meta["frames_indices"])
    assert type(meta["fps"]) is float and type(meta["duration"]) is float
    assert type(meta["total_num_frames"]) is int and meta["total_num_frames"] == 40


def test_probe_reports_header_facts(clip40: Path) -> None:
    info = probe_video(clip40)
    assert info["fps"] == pytest.approx(8.0)
    assert info["duration"] == pytest.approx(5.0, abs=0.2)
    assert info["total_frames"] == 40
    assert (info["width"], info["height"], info["rotation"]) == (64, 48, 0)
    assert info["codec"] == "h264"


def test_probe_uses_content_not_extension(tmp_path: Path) -> None:
    path = write_test_clip(tmp_path / "clip.mp4", 10)
    renamed = path.rename(tmp_path / "clip.dat")
    assert probe_video(renamed)["total_frames"] == 10


def test_all_frames_each_once(tmp_path: Path) -> None:
    path = write_test_clip(tmp_path / "clip.mp4", 40)
    video = load_video(path, 40)
    assert video.indices.tolist() == list(range(40))
    assert decode_ids(video.frames).tolist() == list(range(40))


def test_single_frame_clip(tmp_path: Path) -> None:
    path = write_test_clip(tmp_path / "one.mp4", 1)
    for n in (1, 8):
        video = load_video(path, n)
        assert video.frames.shape == (1, 48, 64, 3)
        assert video.indices.tolist() == [0]
        assert video.timestamps.tolist() == [0.0]
        assert video.total_frames == 1


def test_fewer_frames_than_requested_returns_each_frame_once(tmp_path: Path) -> None:
    path = write_test_clip(tmp_path / "five.mp4", 5)
    video = load_video(path, 16)
    assert len(video.frames) == 5
    assert video.indices.tolist() == [0, 1, 2, 3, 4]
    assert decode_ids(video.frames).tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(video.timestamps, np.arange(5) / 8)


@pytest.mark.parametrize(
    "suffix", [".mp4", pytest.param(".webm", marks=pytest.mark.skipif(not HAS_VP9, reason="no VP9"))]
)
def test_variable_frame_rate_takes_nearest_real_frames(tmp_path: Path, suffix: str) -> None:
    ms = [0, 10, 20, 30, 40, 300, 310, 600, 900, 1000]
    codec = "libx264" if suffix == ".mp4" else "libvpx-vp9"
    path = write_test_clip(tmp_path / f"vfr{suffix}", len(ms), codec=codec, pts=ms, time_base=Fraction(1, 1000))
    video = load_video(path, 4)
    real = np.asarray(ms) / 1000
    # The clip ends one frame after its last timestamp.
    assert 1.0 < video.duration < 1.2
    targets = (np.arange(4) + 0.5) * video.duration / 4
    nearest = np.abs(real[None, :] - targets[:, None]).argmin(axis=1)
    assert video.indices.tolist() == nearest.tolist()
    # Index-based sampling would give [1, 4, 6, 9] (centres) or [0, 3, 6, 9] (linspace).
    assert video.indices.tolist() == [4, 6, 7, 9]
    np.testing.assert_allclose(video.timestamps, real[video.indices], atol=1e-3)
    assert decode_ids(video.frames).tolist() == [4, 6, 7, 9]


def test_variable_frame_rate_collisions_stay_distinct(tmp_path: Path) -> None:
    # Frames bunched at the start: several slice centres share the same nearest frame.
    ms = [0, 5, 10, 15, 20, 25, 1000, 2000]
    path = write_test_clip(tmp_path / "bunch.mp4", len(ms), pts=ms, time_base=Fraction(1, 1000))
    video = load_video(path, 6)
    assert len(video.indices) == 6
    assert len(set(video.indices.tolist())) == 6
    assert np.all(np.diff(video.indices) > 0)
    assert decode_ids(video.frames).tolist() == video.indices.tolist()


def test_sparse_sampling_seeks_and_still_gets_right_frames(tmp_path: Path, monkeypatch) -> None:
    path = write_test_clip(tmp_path / "long.mp4", 300, fps=30, options={"crf": "10", "g": "30"})
    decoded = 0
    original = V._iter_frames

    def counting(*args):
        nonlocal decoded
        for frame in original(*args):
            decoded += 1
            yield frame

    monkeypatch.setattr(V, "_iter_frames", counting)
    video = load_video(path, 3)
    assert video.indices.tolist() == [50, 150, 250]
    assert decode_ids(video.frames).tolist() == [50, 150, 250]
    # Seeking to the keyframe before each target decodes about a GOP per frame, not the whole clip.
    assert decoded < 120


def test_downscale_keeps_aspect(tmp_path: Path) -> None:
    path = write_test_clip(tmp_path / "vga.mp4", 6, size=(640, 480))
    video = load_video(path, 3, VideoLimits(max_side=160))
    assert video.frames.shape == (3, 120, 160, 3)
    assert (video.width, video.height) == (640, 480)
    assert decode_ids(video.frames).tolist() == video.indices.tolist()


def test_no_upscaling_for_small_clips(clip40: Path) -> None:
    assert load_video(clip40, 2, VideoLimits(max_side=768)).frames.shape[1:] == (48, 64, 3)


def _marker_frame(i: int, width: int, height: int) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:12, :12] = 255  # top-left marker in stored (unrotated) pixels
    return frame


@pytest.mark.parametrize(
    "ccw,corner",
    [
        (90, "bottom-left"),  # displayed turned a quarter counter-clockwise: top-left -> bottom-left
        (-90, "top-right"),  # the common phone case (legacy "rotate=90" tag): top-left -> top-right
        (180, "bottom-right"),
    ],
)
def test_rotation_is_applied(tmp_path: Path, ccw: int, corner: str) -> None:
    path = write_test_clip(tmp_path / "rot.mp4", 4, rotation=ccw, frame_fn=_marker_frame)
    info = probe_video(path)
    video = load_video(path, 2)
    swapped = ccw % 180 != 0
    expected_hw = (64, 48) if swapped else (48, 64)
    assert video.frames.shape[1:3] == expected_hw
    assert (video.height, video.width) == expected_hw
    assert (info["height"], info["width"]) == expected_hw
    assert info["rotation"] == ccw % 360
    h, w = expected_hw
    corners = {
        "top-left": video.frames[:, 2, 2],
        "top-right": video.frames[:, 2, w - 3],
        "bottom-left": video.frames[:, h - 3, 2],
        "bottom-right": video.frames[:, h - 3, w - 3],
    }
    for name, pixels in corners.items():
        if name == corner:
            assert pixels.min() > 200, name
        else:
            assert pixels.max() < 60, name


# ---------------------------------------------------------------------------------------------- bad input


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="could not find"):
        load_video(tmp_path / "nope.mp4", 4)


def test_folder_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="folder"):
        probe_video(tmp_path)


def test_zero_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        load_video(path, 4)


def test_text_renamed_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("These are my meeting notes, not a video.\n" * 20)
    with pytest.raises(VideoError, match="plain text") as info:
        load_video(path, 4)
    assert "Traceback" not in str(info.value)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="could not be opened") as info:
        probe_video(path)
    assert isinstance(info.value.__cause__, av.error.FFmpegError)


def test_truncated_mp4(tmp_path: Path) -> None:
    data = write_test_clip(tmp_path / "full.mp4", 40).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) * 3 // 10])
    with pytest.raises(VideoError, match="damaged or incomplete"):
        load_video(path, 4)


def _write_audio(path: Path, codec: str) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=8000)
        stream.layout = "mono"
        fmt = "s16" if codec == "pcm_s16le" else "fltp"
        dtype = np.int16 if fmt == "s16" else np.float32
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype), format=fmt, layout="mono")
            frame.sample_rate = 8000
            frame.pts = i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("name,codec", [("sound.wav", "pcm_s16le"), ("sound.mp4", "aac")])
def test_audio_only(tmp_path: Path, name: str, codec: str) -> None:
    path = _write_audio(tmp_path / name, codec)
    with pytest.raises(VideoError, match="no video track.*audio only"):
        load_video(path, 4)


@pytest.mark.parametrize("n", [0, 513, 2.5, -1, True, "4", None])
def test_bad_frame_count(clip40: Path, n: object) -> None:
    with pytest.raises(VideoError, match="number of frames must be a whole number from 1 to 512"):
        load_video(clip40, n)  # type: ignore[arg-type]


def test_frame_count_bounds_follow_limits(clip40: Path) -> None:
    assert len(load_video(clip40, np.int64(3)).frames) == 3
    with pytest.raises(VideoError, match="from 1 to 2"):
        load_video(clip40, 3, VideoLimits(max_frames=2))


def test_file_size_limit(tmp_path: Path, clip40: Path) -> None:
    big = tmp_path / "big.mp4"
    big.write_bytes(clip40.read_bytes())
    with big.open("r+b") as fh:
        fh.truncate(3 * 1024**2)
    with pytest.raises(VideoError, match=r"too large \(3 MB\); the limit is 2 MB"):
        probe_video(big, VideoLimits(max_bytes=2 * 1024**2))


def test_default_size_limit_is_stated_in_mb(tmp_path: Path) -> None:
    path = tmp_path / "huge.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    with path.open("r+b") as fh:
        fh.truncate(501 * 1024**2)  # sparse: costs no disk
    with pytest.raises(VideoError, match="the limit is 500 MB"):
        load_video(path, 4)


def test_duration_limit(clip40: Path) -> None:
    with pytest.raises(VideoError, match="too long.*the limit is 2 seconds"):
        load_video(clip40, 4, VideoLimits(max_duration_s=2))
    with pytest.raises(VideoError, match="the limit is 2 seconds"):
        probe_video(clip40, VideoLimits(max_duration_s=2))


def test_pixel_limit(clip40: Path) -> None:
    with pytest.raises(VideoError, match=r"64x48.*the limit is 1,000 pixels"):
        load_video(clip40, 4, VideoLimits(max_pixels=1000))


def test_decode_timeout(clip40: Path) -> None:
    with pytest.raises(VideoError, match="took longer than 0 seconds"):
        load_video(clip40, 4, VideoLimits(decode_timeout_s=0.0))


# ---------------------------------------------------------------------------------------------- arrays


def test_frames_from_array() -> None:
    frames = np.zeros((6, 10, 14, 3), np.uint8)
    video = frames_from_array(frames, fps=4.0)
    assert video.frames.shape == (6, 10, 14, 3)
    np.testing.assert_allclose(video.timestamps, np.arange(6) / 4)
    assert video.indices.tolist() == list(range(6))
    assert (video.width, video.height, video.total_frames) == (14, 10, 6)
    assert video.duration == pytest.approx(1.5)
    assert video.metadata()["frames_indices"] == list(range(6))


@pytest.mark.parametrize(
    "frames,fragment",
    [
        (np.zeros((6, 10, 14, 3), np.float32), "uint8"),
        (np.zeros((10, 14, 3), np.uint8), "shape"),
        (np.zeros((6, 10, 14, 4), np.uint8), "shape"),
        (np.zeros((0, 10, 14, 3), np.uint8), "at least one"),
        ([[[[0, 0, 0]]]], "numpy array"),
    ],
)
def test_frames_from_array_rejects_bad_input(frames: object, fragment: str) -> None:
    with pytest.raises(VideoError, match=fragment):
        frames_from_array(frames)  # type: ignore[arg-type]


def test_frames_from_array_rejects_bad_fps() -> None:
    with pytest.raises(VideoError, match="frame rate"):
        frames_from_array(np.zeros((2, 4, 4, 3), np.uint8), fps=0)


# ---------------------------------------------------------------------------------------------- writing


@pytest.mark.parametrize(
    "suffix,codec",
    [
        (".mp4", "h264"),
        (".gif", "gif"),
        pytest.param(".webm", "vp9", marks=pytest.mark.skipif(not HAS_VP9, reason="no VP9")),
    ],
)
def test_write_video_roundtrip(tmp_path: Path, suffix: str, codec: str) -> None:
    frames = np.stack([code_frame(i, 63, 47) for i in range(12)])  # odd size on purpose
    path = write_video(tmp_path / f"out{suffix}", frames, fps=8)
    info = probe_video(path)
    assert info["codec"] == codec
    assert info["total_frames"] == 12
    video = load_video(path, 12)
    assert len(video.frames) == 12
    if codec != "gif":  # GIF's 3-3-2 palette cannot carry the grey-level code
        assert (info["width"], info["height"]) == (64, 48)
        assert decode_ids(video.frames).tolist() == list(range(12))


def test_write_video_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="codec"):
        write_video(tmp_path / "out.xyz", np.zeros((2, 8, 8, 3), np.uint8))


# ---------------------------------------------------------------------------------------------- selection


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=60),
    n=st.integers(min_value=1, max_value=70),
)
def test_select_uniform_properties(gaps: list[int], n: int) -> None:
    times = np.cumsum([0, *gaps[:-1]]).astype(np.float64) / 1000
    end = times[-1] + gaps[-1] / 1000
    chosen = uniform_positions(times, 0.0, end, n)
    assert len(chosen) == min(n, len(times))
    assert np.all(np.diff(chosen) > 0)
    assert chosen.min() >= 0 and chosen.max() < len(times)
    targets = (np.arange(n) + 0.5) * end / n
    nearest = np.abs(times[None, :] - targets[:, None]).argmin(axis=1)
    if n <= len(times) and len(set(nearest.tolist())) == n:
        # Without collisions every pick is the nearest frame (ties may go either way).
        dist_chosen = np.abs(times[chosen] - targets)
        dist_best = np.abs(times[nearest] - targets)
        np.testing.assert_allclose(dist_chosen, dist_best)


# ----------------------------------------------------------------------------------------------------------
# one open per request, damaged packets


def _corrupt_packets(src: Path, dst: Path, which: tuple[int, ...]) -> int:
    """Copy ``src`` with the bytes of the given video packets replaced by noise; returns the packet count."""
    with av.open(str(src)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(0)
    for i in which:
        pos, size = packets[i]
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return len(packets)


def test_open_video_opens_the_container_once_for_probe_and_every_sampling(tmp_path: Path, monkeypatch) -> None:
    path = write_test_clip(tmp_path / "c.mp4", 40)
    opened: list[str] = []
    real_open = av.open

    def counting_open(*args, **kwargs):
        opened.append(str(args[0]))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(V.av, "open", counting_open)
    with V.open_video(path) as video:
        assert video.info["total_frames"] == 40
        eight, four = video.sample(8), video.sample(4)
        assert video.sample(8) is eight  # one decode per distinct frame count
    assert opened == [str(path)]
    np.testing.assert_array_equal(decode_ids(eight.frames), load_video(path, 8).indices)
    np.testing.assert_array_equal(decode_ids(four.frames), load_video(path, 4).indices)


def test_sampling_after_the_timeline_scan_matches_a_fresh_decode_at_every_count(tmp_path: Path) -> None:
    path = write_test_clip(tmp_path / "c.mp4", 40)
    with V.open_video(path) as video:
        for n in (40, 7, 1, 13, 40):
            sampled = video.sample(n)
            np.testing.assert_array_equal(decode_ids(sampled.frames), sampled.indices)


def test_damaged_packets_are_stepped_over_and_counted(tmp_path: Path) -> None:
    from stts_core.data.synthetic import make_clip

    good = write_video(tmp_path / "good.mp4", make_clip(3, num_frames=48).frames, fps=8)
    bad = tmp_path / "bad.mp4"
    assert _corrupt_packets(good, bad, (10, 20, 30)) == 48
    video = load_video(bad, 48)
    assert video.extra["skipped_packets"] == 3
    assert 40 <= len(video.frames) < 48
    assert load_video(good, 48).extra["skipped_packets"] == 0


def test_a_closed_video_file_refuses_to_decode(tmp_path: Path) -> None:
    path = write_test_clip(tmp_path / "c.mp4", 10)
    video = V.open_video(path)
    video.close()
    with pytest.raises(VideoError, match="closed"):
        video.sample(4)


def _write_all_zero_timestamps(path: Path, n_frames: int) -> Path:
    """A playable H.264 MP4 whose every packet says pts = dts = 0 (what a broken muxer leaves)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "10", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        frames = [av.VideoFrame.from_ndarray(code_frame(i), format="rgb24") for i in range(n_frames)]
        for frame in [*frames, None]:
            for packet in stream.encode(frame):
                packet.pts = packet.dts = 0
                container.mux(packet)
    return path


def test_repeated_timestamps_fall_back_to_decode_order(tmp_path: Path) -> None:
    """Every packet at pts 0 used to collapse the clip to one frame; decode order gives them all back,
    spread uniformly, and the result says its times are estimates."""
    from stts_core.data.video import decoding_notes

    path = _write_all_zero_timestamps(tmp_path / "zero.mp4", 40)
    assert {p.pts for p in av.open(str(path)).demux(video=0) if p.size} == {0}
    with V.open_video(path) as video:
        assert video.info["total_frames"] == 40 and video.info["timestamps"] == "missing"
        assert 0 < video.info["fps"] <= MAX_PLAUSIBLE_FPS
        sampled = video.sample(8)
    np.testing.assert_array_equal(decode_ids(sampled.frames), sampled.indices)
    assert len(set(sampled.indices.tolist())) == 8 and np.all(np.diff(sampled.timestamps) > 0)
    assert any("no usable timestamps" in note for note in decoding_notes(sampled))
    assert decoding_notes(load_video(write_test_clip(tmp_path / "ok.mp4", 20), 8)) == []


def test_the_shipped_real_footage_example_decodes_to_every_requested_frame() -> None:
    path = Path(__file__).resolve().parent.parent / "assets" / "examples" / "bigbuckbunny_360p.mp4"
    with V.open_video(path) as video:
        assert video.info["timestamps"] == "stream" and video.info["total_frames"] >= 100
        assert 4.5 < video.info["duration"] < 6.0  # the 5.3 s excerpt
        sampled = video.sample(16)
    assert sampled.frames.shape == (16, 360, 640, 3)
