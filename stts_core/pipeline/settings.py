"""What one request runs with, and the checks on what a caller passes in (one sentence per problem)."""

from __future__ import annotations

from dataclasses import dataclass

from stts_core.data.question import MAX_QUESTION_CHARS, validate_question  # noqa: F401 - re-exported
from stts_core.data.video import MAX_FRAMES
from stts_core.methods.budget import validate_keep_ratio
from stts_core.methods.registry import get_method

MAX_NEW_TOKENS = 1024


@dataclass
class RunSettings:
    keep_ratio: float = 0.5
    scorer: str = "learned"  # a registered method (stts_core.list_methods()); the baseline always runs unpruned
    num_frames: int = 16
    max_new_tokens: int = 16
    seed: int = 0
    match_budget: bool = False  # test-time scaling: STTS samples round(frames / keep) frames
    attention_bias: bool | None = None  # None: the method's own choice (on for the learned scorer, trained with it)
    run_baseline: bool = True
    stop_at_eos: bool = True

    def validated(self) -> RunSettings:
        validate_keep_ratio(self.keep_ratio)
        get_method(self.scorer)
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, int) \
                or not 1 <= self.num_frames <= MAX_FRAMES:
            raise ValueError(f"The number of frames must be a whole number from 1 to {MAX_FRAMES}, "
                             f"got {self.num_frames!r}.")
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be from 1 to {MAX_NEW_TOKENS}, got {self.max_new_tokens!r}.")
        return self

    def stts_frames(self) -> int:
        if not self.match_budget:
            return self.num_frames
        return min(MAX_FRAMES, max(1, round(self.num_frames / self.keep_ratio)))
