"""What one request returns. The UI and the CLIs only read these."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from stts_core.pipeline.agreement import answers_agree
from stts_core.pipeline.settings import RunSettings
from stts_core.pipeline.stages import MODEL_STAGES, STAGES, TTFT_STAGES, total

# A run on the CPU that got less than this share of its threads' time competed with other work: on the
# 2-core machine an idle run measures 0.98-1.00 and one beside two busy processes 0.48-0.50.
CONTENDED_SHARE = 0.8


@dataclass
class ModelRun:
    """One model run (pruned or baseline): answer, token counts and measured stage times in seconds."""

    answer: str
    token_ids: list[int]
    timings: dict[str, float]
    num_frames: int
    visual_tokens: int  # visual tokens the LLM received
    prompt_tokens: int
    vit_suffix_tokens: int  # patches the post-pruning ViT blocks ran on (per block)
    peak_mem_gb: float | None
    vit_tokens: int = 0  # patches ViT block 0 ran on (all sampled frames)
    cpu_share: float | None = None  # timing.CpuShare over the run (CPU only): about 1 unless contended

    @property
    def ttft_s(self) -> float:
        """Model-side time to first token (TTFT_STAGES)."""
        return total(self.timings, TTFT_STAGES)

    @property
    def model_s(self) -> float:
        """Model-side time for the whole answer: TTFT plus decoding."""
        return total(self.timings, MODEL_STAGES)

    @property
    def e2e_s(self) -> float:
        """Every stage, video decoding and preprocessing included."""
        return total(self.timings, STAGES)

    def to_json(self) -> dict[str, Any]:
        return {"answer": self.answer, "token_ids": self.token_ids, "timings_s": self.timings, "ttft_s": self.ttft_s,
                "model_s": self.model_s, "e2e_s": self.e2e_s, "num_frames": self.num_frames,
                "visual_tokens": self.visual_tokens, "prompt_tokens": self.prompt_tokens,
                "vit_tokens": self.vit_tokens, "vit_suffix_tokens": self.vit_suffix_tokens,
                "peak_mem_gb": self.peak_mem_gb, "cpu_share": self.cpu_share}


@dataclass
class RunResult:
    frames: np.ndarray  # (T, H, W, 3) uint8: the frames the keep mask is drawn over
    timestamps: np.ndarray  # (T,) seconds
    scores: np.ndarray | None  # (T, G) float32, high = keep; None for a method that selects without scores
    keep_mask: np.ndarray  # (T, G) bool: the groups the pruned run kept
    groups: np.ndarray  # (G, P) patch indices per group inside a frame (-1 = padding)
    grid: tuple[int, int]  # groups per frame as (rows, cols)
    patch_grid: tuple[int, int]  # patches per frame as (rows, cols)
    settings: RunSettings
    scorer_used: str  # the method that ran (the fallback rule may replace the one asked for)
    stts: ModelRun
    baseline: ModelRun | None
    device: str
    warmup: bool  # the first run after the model loaded pays one-off costs
    decode_s: float = 0.0  # video decoding, shared by both runs when they use the same frames
    notes: list[str] = field(default_factory=list)
    frame_unit: str = "frame"  # what one row of the mask is (Qwen-VL: a temporal patch of two frames)
    row_times: np.ndarray | None = None  # (rows, frames per row) seconds of each row's frames; None at one frame a row

    @property
    def agree(self) -> bool | None:
        """Same normalised answer; None without a baseline, False when either answer is empty."""
        if self.baseline is None:
            return None
        return answers_agree(self.baseline.answer, self.stts.answer)

    def _speedup(self, attr: str) -> float | None:
        if self.baseline is None:
            return None
        return getattr(self.baseline, attr) / max(getattr(self.stts, attr), 1e-12)

    @property
    def contended_share(self) -> float | None:
        """The lowest CPU share of the two runs when it is below CONTENDED_SHARE (other work on the
        machine took the cores, so the timings are not the model's), else None."""
        shares = [r.cpu_share for r in (self.baseline, self.stts) if r is not None and r.cpu_share is not None]
        low = min(shares, default=None)
        return low if low is not None and low < CONTENDED_SHARE else None

    @property
    def ttft_speedup(self) -> float | None:
        return self._speedup("ttft_s")

    @property
    def model_speedup(self) -> float | None:
        return self._speedup("model_s")

    @property
    def e2e_speedup(self) -> float | None:
        return self._speedup("e2e_s")

    def to_json(self) -> dict[str, Any]:
        scores = None if self.scores is None else [[round(float(x), 6) for x in row] for row in self.scores]
        return {
            "settings": asdict(self.settings), "scorer_used": self.scorer_used, "device": self.device,
            "warmup": self.warmup, "frame_unit": self.frame_unit, "keep_mask_shape": list(self.keep_mask.shape),
            "kept_groups": int(self.keep_mask.sum()), "grid": list(self.grid),
            "timestamps_s": [float(t) for t in self.timestamps], "scores": scores,
            "row_times_s": None if self.row_times is None else [[float(t) for t in r] for r in self.row_times],
            "keep_mask": [[bool(x) for x in row] for row in self.keep_mask], "decode_s": self.decode_s,
            "stts": self.stts.to_json(), "baseline": None if self.baseline is None else self.baseline.to_json(),
            "agree": self.agree, "ttft_speedup": self.ttft_speedup, "model_speedup": self.model_speedup,
            "e2e_speedup": self.e2e_speedup, "notes": self.notes,
        }
