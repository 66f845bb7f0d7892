"""What a batch analysis asks the model: a free-form question as it is, a multiple-choice question in the
prompt format of the model's family (`stts_core.data.benchmarks.prompts`; a family's bundle may name its
style in `ModelFamily.mc_prompt`)."""

from __future__ import annotations

from stts_core.data.benchmarks.prompts import choice_prompt, style_for
from stts_core.data.tables import Example
from stts_core.models.base import VideoBackend
from stts_core.models.registry import family_of


def prompt_style(backend: VideoBackend) -> str:
    """The multiple-choice prompt style of ``backend``'s family (lmms-eval's for a family without one)."""
    try:
        family = family_of(backend)
    except ValueError:  # a backend outside the family registry (a test double, a user's own class)
        return style_for(getattr(backend, "name", None))
    return style_for(family.name, family.mc_prompt)


def prompt_for(backend: VideoBackend, ex: Example, style: str | None = None) -> str:
    """The text ``backend`` is asked for ``ex``."""
    if not ex.is_choice:
        return ex.question
    return choice_prompt(style or prompt_style(backend), ex.question, ex.options, ex.benchmark)
