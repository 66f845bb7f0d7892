"""Molmo2's video preprocessing with fewer passes over the frames, giving the stock processor's exact bytes.

The stock `Molmo2VideoProcessor` turns uint8 frames into float for the bilinear resize, rounds and clamps
the result into a new tensor, casts it to uint8, and casts it back to float to rescale and normalise:
four full copies of the video beside the resize. On the 2-core CPU that was 5.5 ms of a 16-frame run's
34 ms time to first token (the same for the baseline and STTS, so it dilutes every speedup). Rounding
and clamping in place and skipping the uint8 round trip (the rounded, clamped floats are whole numbers
in 0..255, which the round trip returns unchanged) gives the same bytes with half the passes.

`FastMolmo2VideoProcessor` overrides `_build_video_patches` (`install_fast_video_patches` puts it into a
processor) and takes the shorter path only where the result is provably the stock one: integer frames,
bilinear resize, rescale and normalise both on with a non-zero mean (so a rounded -0.0 and 0.0 normalise
to the same value). Everything else runs the stock code.
tests/test_video_patches.py checks equality with the stock processor byte for byte.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.image_utils import PILImageResampling, SizeDict
from transformers.models.molmo2 import video_processing_molmo2 as stock


def fast_path_applies(video: torch.Tensor, resample: Any, do_rescale: bool, do_normalize: bool,
                      image_mean: Any) -> bool:
    """True when the fewer-passes path gives the stock bytes for this call (see the module docstring)."""
    mean = image_mean if isinstance(image_mean, (list, tuple)) else [image_mean]
    return (not video.dtype.is_floating_point and resample == PILImageResampling.BILINEAR
            and bool(do_rescale) and bool(do_normalize) and all(float(m) != 0.0 for m in mean))


def resized_normalized(processor: Any, video: torch.Tensor, crop_size: int, resample: Any, rescale_factor: float,
                       image_mean: Any, image_std: Any) -> torch.Tensor:
    """(T, C, H, W) integer frames -> (T, C, S, S) float32, resized, rounded to whole pixel values, clamped,
    rescaled and normalised: the stock `resize_and_normalize_image` without its uint8 round trip."""
    floats = video.float()
    resized = processor.resize(floats, size=SizeDict(height=crop_size, width=crop_size), resample=resample,
                               antialias=False)
    resized = resized.round_().clamp_(0, 255)  # `floats` (or the resize's own output) is ours to modify
    return processor.rescale_and_normalize(resized, True, rescale_factor, True, image_mean, image_std)


class FastMolmo2VideoProcessor(stock.Molmo2VideoProcessor):
    """The stock video processor with `resized_normalized` where it gives the stock bytes; it saves
    under the stock class name, so a checkpoint saved with it loads anywhere."""

    def _build_video_patches(self, video: torch.Tensor, crop_size: int, resample: Any, do_rescale: bool,
                             rescale_factor: float, do_normalize: bool, image_mean: Any, image_std: Any,
                             image_patch_size: int, image_pooling_h: int, image_pooling_w: int
                             ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        if not fast_path_applies(video, resample, do_rescale, do_normalize, image_mean):
            return super()._build_video_patches(video, crop_size, resample, do_rescale, rescale_factor, do_normalize,
                                                image_mean, image_std, image_patch_size, image_pooling_h,
                                                image_pooling_w)
        resized = resized_normalized(self, video, crop_size, resample, rescale_factor, image_mean, image_std)
        side = crop_size // image_patch_size
        index_grid = torch.arange(side * side, dtype=torch.int32, device=video.device).reshape(side, side)
        pooling, rows, cols = stock.arange_for_pooling(index_grid, image_pooling_h, image_pooling_w)
        patches = stock.batch_pixels_to_patches(resized.permute(0, 2, 3, 1), image_patch_size)
        return [rows, cols], patches, pooling

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["video_processor_type"] = stock.Molmo2VideoProcessor.__name__
        return out


def install_fast_video_patches(processor: Any) -> bool:
    """Swap a Molmo2 processor's video processor for `FastMolmo2VideoProcessor` with the same settings;
    False (nothing changed) for any other processor, or when the stock class no longer has the method
    this overrides (a transformers release that reshaped it runs its own code)."""
    video_processor = getattr(processor, "video_processor", None)
    if isinstance(video_processor, FastMolmo2VideoProcessor):
        return True
    if type(video_processor) is not stock.Molmo2VideoProcessor or not hasattr(video_processor, "_build_video_patches"):
        return False
    processor.video_processor = FastMolmo2VideoProcessor.from_dict(video_processor.to_dict())
    return True
