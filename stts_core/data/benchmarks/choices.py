"""Multiple-choice answers: option letters, and reading the chosen letter out of a model's free text.

`extract_choice` reads the styles real models answer in: a bare letter ("B", "b", "(B)", "B.", "[B]"), a
stated answer ("Answer: B", "The answer is (C).", "Best option: (D"), a letter leading the option text
("B. a red car", "(B) a red car", "C) ..."), the option's text itself ("a red car"), and a capital letter
standing alone in a sentence ("I think B is right"). The rules are tried in that order and the first one
that finds a letter of the question's options wins; within a rule the last occurrence counts (reasoning
before a final answer). Reasoning inside ``<think>...</think>`` is ignored.

Compared with lmms-eval's parsers (``lmms_eval/tasks/_task_utils/mcq_extract.py``, the MMMU-style
``parse_multi_choice_response`` of its nextqa/longvideobench tasks), read for their semantics: the same
formats are accepted and the last stated answer wins, but an answer that names no option is never turned
into a random guess (lmms-eval's NExT-QA and LongVideoBench parsers pick a random letter there): it is
"no answer" and counts as wrong, so our accuracy is not inflated by chance on unreadable answers.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import NamedTuple

LETTERS = string.ascii_uppercase

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_BARE = re.compile(r"[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:,]?")
_STATED = re.compile(r"(?i:answer|option|choice)\s*(?i:is)?\s*[:=]?\s*(?i:option\s*)?[(\[]?\s*([A-Z])(?![A-Za-z])")
_LEADING = re.compile(r"[(\[]?([A-Z])(?:\s*[)\]]|[.:](?!\d))")
_LONE = re.compile(r"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])")
_WORD_AFTER = re.compile(r"\s+[a-z]")
_LETTER_PREFIX = re.compile(r"^\s*[(\[]?([A-Z])\s*[).:\]]\s+(.*)$", re.DOTALL)


class Choice(NamedTuple):
    """The letter read from an answer (None: it names no option) and the rule that read it."""

    letter: str | None
    rule: str  # bare | stated | leading | option_text | lone | none


def letter_of(index: int) -> str:
    """0 -> "A", 1 -> "B", ..."""
    if not 0 <= index < len(LETTERS):
        raise ValueError(f"An option index must be from 0 to {len(LETTERS) - 1} (got {index}).")
    return LETTERS[index]


def split_option(text: str) -> tuple[str | None, str]:
    """``"B. a red car"`` -> ("B", "a red car"); text without a letter prefix -> (None, text)."""
    match = _LETTER_PREFIX.match(str(text))
    return (match.group(1), match.group(2).strip()) if match else (None, str(text).strip())


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _by_option_text(text: str, options: Sequence[str]) -> str | None:
    """The option whose text the answer is, or the longest option text the answer contains (None on a tie
    between different options)."""
    said = _normal(text)
    texts = [_normal(o) for o in options]
    for i, t in enumerate(texts):
        if t and said == t:
            return LETTERS[i]
    found = [(len(t), i) for i, t in enumerate(texts) if t and re.search(rf"(?<!\w){re.escape(t)}(?!\w)", said)]
    if not found:
        return None
    best = max(found)[0]
    longest = {i for n, i in found if n == best}
    return LETTERS[longest.pop()] if len(longest) == 1 else None


def extract_choice(response: str | None, options: Sequence[str]) -> Choice:
    """The option letter ``response`` chooses among ``options`` (see the module docstring)."""
    valid = set(LETTERS[: len(options)])
    text = _THINK.sub(" ", response or "").strip()
    if not text or not valid:
        return Choice(None, "none")
    bare = _BARE.fullmatch(text)
    if bare and bare.group(1).upper() in valid:
        return Choice(bare.group(1).upper(), "bare")
    stated = [m.group(1) for m in _STATED.finditer(text) if m.group(1) in valid]
    if stated:
        return Choice(stated[-1], "stated")
    leading = _LEADING.match(text)
    if leading and leading.group(1) in valid:
        return Choice(leading.group(1), "leading")
    by_text = _by_option_text(text, options)
    if by_text is not None:
        return Choice(by_text, "option_text")
    # "A" and "I" before a lower-case word are the article and the pronoun, not options.
    lone = [m.group(1) for m in _LONE.finditer(text)
            if m.group(1) in valid and not (m.group(1) in "AI" and _WORD_AFTER.match(text, m.end()))]
    return Choice(lone[-1], "lone") if lone else Choice(None, "none")
