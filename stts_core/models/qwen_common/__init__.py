"""What the Qwen-VL families (Qwen3-VL, Qwen2.5-VL) share: the raster / model-order layout and attention
segments (`layout`), M-RoPE positions by the reference rule (`positions`), the ViT stages with the key
bias and the mergers on kept groups (`vit`), the stage-by-stage backend (`backend`), the STTS settings
and scorer (`modeling`), loading (`checkpoint`) and offline checkpoints (`build`).

Imports nothing heavy on its own: the family packages import these modules where they need them.
"""
