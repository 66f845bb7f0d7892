"""The stages of one run, in report order, and the three times every report uses:

- time to first token (TTFT): the model side up to the first answer token, ``TTFT_STAGES``. Decoding the
  video and the processor's CPU preprocessing are identical work in both runs (a data loader does them
  in a serving system), so they are reported on their own and left out of it;
- model time: TTFT plus generating the remaining tokens (``MODEL_STAGES``);
- end to end: every stage, video decoding and preprocessing included (``STAGES``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

STAGES = ("decode_video", "preprocess", "vit_prefix", "scoring", "vit_suffix", "connector", "llm_prefill", "decoding")
TTFT_STAGES = ("vit_prefix", "scoring", "vit_suffix", "connector", "llm_prefill")
MODEL_STAGES = (*TTFT_STAGES, "decoding")


def total(timings: Mapping[str, float], stages: Sequence[str]) -> float:
    """Seconds spent in `stages` (a stage that did not run counts 0)."""
    return sum(float(timings.get(s, 0.0)) for s in stages)
