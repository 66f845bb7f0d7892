"""The question a visitor or a table row asks: checked once, the same way everywhere."""

from __future__ import annotations

MAX_QUESTION_CHARS = 2000


def validate_question(question: object) -> str:
    """The question, stripped; a one-sentence ValueError for no text, too much text or text that is
    not valid Unicode (a lone surrogate cannot be encoded for the tokenizer)."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("Please type a question about the video.")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"The question is too long ({MAX_QUESTION_CHARS} characters at most).")
    try:
        question.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("The question contains characters that are not valid text; please retype it.") from None
    return question.strip()
