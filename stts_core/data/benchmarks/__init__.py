"""Readers for benchmarks in their published layouts (the user's local copies; nothing is downloaded),
multiple-choice prompts per model family and answer-letter extraction.

``--data mvbench:/path/to/MVBench`` (also ``videomme:``, ``nextqa:``, ``longvideobench:``) reads a copy;
`find_benchmark` maps a spec's prefix to its reader. Each reader module cites the documentation and
loader code its layout was checked against.
"""

from __future__ import annotations

from stts_core.data.benchmarks import longvideobench, mvbench, nextqa, videomme  # noqa: F401 - they register
from stts_core.data.benchmarks.choices import Choice, extract_choice, letter_of
from stts_core.data.benchmarks.prompts import choice_prompt, style_for
from stts_core.data.benchmarks.registry import (
    BENCHMARK_LIMITS,
    Benchmark,
    find_benchmark,
    get_benchmark,
    list_benchmarks,
    register_benchmark,
)

__all__ = ["BENCHMARK_LIMITS", "Benchmark", "Choice", "choice_prompt", "extract_choice", "find_benchmark",
           "get_benchmark", "letter_of", "list_benchmarks", "register_benchmark", "style_for"]
