"""The fewer-passes Molmo2 video preprocessing gives the stock processor's bytes, and runs only where it can."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor
from transformers.image_utils import PILImageResampling
from transformers.models.molmo2.video_processing_molmo2 import Molmo2VideoProcessor

from stts_core.models.molmo2.video_patches import (
    FastMolmo2VideoProcessor,
    fast_path_applies,
    install_fast_video_patches,
)

BUILTIN = Path(__file__).resolve().parents[1] / "assets" / "stts-tiny"


def _pixels(video_processor: Molmo2VideoProcessor, frames: np.ndarray) -> dict[str, torch.Tensor]:
    n = int(frames.shape[0])
    meta = {"fps": 2.0, "total_num_frames": n, "frames_indices": list(range(n)), "duration": n / 2.0}
    out = video_processor(videos=[frames], video_metadata=[meta], do_sample_frames=False, return_tensors="pt")
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def _pair() -> tuple[Molmo2VideoProcessor, FastMolmo2VideoProcessor]:
    stock = AutoProcessor.from_pretrained(str(BUILTIN)).video_processor
    fast = FastMolmo2VideoProcessor.from_dict(stock.to_dict())
    assert type(stock) is Molmo2VideoProcessor
    return stock, fast


def _clips() -> dict[str, np.ndarray]:
    """Shapes and contents that exercise the resize: down- and up-scaling, non-square, the model's own
    size (no resize at all), the value extremes, and a real photograph panned across frames."""
    from skimage import data

    rng = np.random.default_rng(0)
    photo = data.astronaut()  # (512, 512, 3) uint8
    pan = np.stack([photo[40 + 7 * i: 40 + 7 * i + 300, 30: 30 + 420] for i in range(5)])
    extremes = rng.choice(np.array([0, 1, 127, 128, 254, 255], dtype=np.uint8), size=(3, 97, 61, 3))
    return {
        "noise_down": rng.integers(0, 256, size=(4, 252, 252, 3), dtype=np.uint8),
        "noise_up_odd": rng.integers(0, 256, size=(3, 101, 77, 3), dtype=np.uint8),
        "model_size": rng.integers(0, 256, size=(2, 168, 168, 3), dtype=np.uint8),
        "extremes": extremes,
        "photo_pan": np.ascontiguousarray(pan),
    }


@pytest.mark.parametrize("name", list(_clips()))
def test_fast_video_patches_equal_the_stock_processor_byte_for_byte(name: str) -> None:
    stock, fast = _pair()
    frames = _clips()[name]
    want, got = _pixels(stock, frames), _pixels(fast, frames)
    assert want.keys() == got.keys()
    for key in want:
        assert want[key].dtype == got[key].dtype and want[key].shape == got[key].shape, key
        assert torch.equal(want[key], got[key]), f"{key} differs on {name}"
    # bit-level equality of the pixels, signed zeros included
    assert torch.equal(want["pixel_values_videos"].view(torch.int32), got["pixel_values_videos"].view(torch.int32))


def test_the_fast_path_is_taken_only_where_it_is_exact() -> None:
    uint8, floats = torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 3, 4, 4)
    assert fast_path_applies(uint8, PILImageResampling.BILINEAR, True, True, [0.5, 0.5, 0.5])
    assert not fast_path_applies(floats, PILImageResampling.BILINEAR, True, True, [0.5, 0.5, 0.5])
    assert not fast_path_applies(uint8, PILImageResampling.BICUBIC, True, True, [0.5, 0.5, 0.5])
    assert not fast_path_applies(uint8, PILImageResampling.BILINEAR, False, True, [0.5, 0.5, 0.5])
    assert not fast_path_applies(uint8, PILImageResampling.BILINEAR, True, False, [0.5, 0.5, 0.5])
    assert not fast_path_applies(uint8, PILImageResampling.BILINEAR, True, True, [0.5, 0.0, 0.5])


def test_other_settings_run_the_stock_code_and_still_match() -> None:
    stock, fast = _pair()
    frames = _clips()["noise_up_odd"]
    for setting in ({"resample": PILImageResampling.BICUBIC}, {"do_normalize": False}):
        s = Molmo2VideoProcessor.from_dict({**stock.to_dict(), **setting})
        f = FastMolmo2VideoProcessor.from_dict({**fast.to_dict(), **setting})
        assert torch.equal(_pixels(s, frames)["pixel_values_videos"], _pixels(f, frames)["pixel_values_videos"])


def test_install_swaps_once_and_saves_under_the_stock_class(tmp_path: Path) -> None:
    processor = AutoProcessor.from_pretrained(str(BUILTIN))
    before = processor.video_processor.to_dict()
    assert install_fast_video_patches(processor)
    swapped = processor.video_processor
    assert isinstance(swapped, FastMolmo2VideoProcessor)
    assert install_fast_video_patches(processor) and processor.video_processor is swapped
    assert swapped.to_dict() == before
    processor.save_pretrained(tmp_path)
    assert type(AutoProcessor.from_pretrained(str(tmp_path)).video_processor) is Molmo2VideoProcessor
    assert not install_fast_video_patches(object())


def test_the_molmo2_backend_preprocesses_with_the_fast_path(micro_backend) -> None:  # noqa: ANN001 - fixture
    assert isinstance(micro_backend.processor.video_processor, FastMolmo2VideoProcessor)
