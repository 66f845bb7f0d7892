"""The one rule for comparing answers: with the baseline (agreement) and with a gold answer
(correctness). No answer is never agreement and never correct."""

from __future__ import annotations


def normalize_answer(text: str | None) -> str:
    """Lower case, full stops dropped, whitespace collapsed."""
    return " ".join((text or "").lower().replace(".", " ").split())


def answers_agree(a: str | None, b: str | None) -> bool:
    """Two answers agree when their normalised text is equal and not empty."""
    na, nb = normalize_answer(a), normalize_answer(b)
    return bool(na) and na == nb


def matches(answer: str | None, reference: str | None) -> bool | None:
    """`answers_agree` against a reference that may be unknown (None: nothing to compare with)."""
    return None if reference is None else answers_agree(answer, reference)
