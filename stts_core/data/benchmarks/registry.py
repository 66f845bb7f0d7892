"""The benchmark registry: one reader per benchmark's published layout, picked by the spec's prefix
(``mvbench:/path/to/MVBench``), each a `Benchmark` bundle. `tables.load_dataset` dispatches here without
naming any benchmark; a new benchmark is a module that calls `register_benchmark`.

The tool never downloads a benchmark: a reader reads the user's local copy, checks it as it goes, and
turns a question it cannot use into an `Example` with its error (reported, not dropped). A copy it cannot
read at all (no folder, no annotation file) is a one-sentence `DatasetError` naming what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stts_core.data.tables import Dataset, DatasetError, Example
from stts_core.data.video import VideoLimits

# Benchmark videos run to an hour (Video-MME long, LongVideoBench 900-3600 s) and past 500 MB.
BENCHMARK_LIMITS = VideoLimits(max_bytes=16 * 1024**3, max_duration_s=4 * 3600, decode_timeout_s=600.0)

ReadFn = Callable[[Path, tuple[str, ...]], tuple[list[Example], list[str]]]
MetricFn = Callable[[Example, str, "str | None"], dict[str, Any]]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's reader and what its tables and lmms-eval export need."""

    name: str  # spec prefix and table name ("mvbench")
    label: str  # for people ("MVBench")
    read: ReadFn  # (root folder, subset names) -> examples in the annotation files' order, notes
    layout: str  # what the folder must hold, one line (errors and --help say it)
    lmms_task: Callable[[Example], str]  # lmms-eval's task name for a question ("mvbench_action_sequence")
    lmms_target: Callable[[Example], Any]  # lmms-eval's doc_to_target value
    lmms_metric: MetricFn  # (question, raw response, extracted letter) -> lmms-eval's per-sample metric field
    durations: tuple[str, ...] = ()  # the duration classes in table order (empty: the benchmark has none)
    limits: VideoLimits = BENCHMARK_LIMITS

    def load(self, spec: str, limit: int | None = None, subset: tuple[str, ...] = (),
             max_examples: int | None = None) -> Dataset:
        """The questions of the copy at ``spec`` (``name:/path``); see `tables.load_dataset`."""
        folder = spec.split(":", 1)[1].strip()
        if not folder:
            raise DatasetError(f"Give the folder of your {self.label} copy: {self.name}:/path/to/it ({self.layout}).")
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise DatasetError(f"There is no {self.label} folder at '{root}' ({self.layout}).")
        examples, notes = self.read(root, subset)
        examples = round_robin(examples, limit)
        if max_examples is not None and len(examples) > max_examples:
            raise DatasetError(f"{self.label} gives {len(examples)} questions; at most {max_examples} can be analysed "
                               "in one run (use a subset or a limit).")
        if not examples:
            raise DatasetError(f"{self.label} at '{root}' has no questions" + (f" in {', '.join(subset)}." if subset
                                                                                 else "."))
        examples = [replace(ex, index=i) for i, ex in enumerate(examples)]
        bad = sum(ex.error is not None for ex in examples)
        notes += [f"{bad} of {len(examples)} {self.label} questions cannot run; their rows say why."] if bad else []
        return Dataset(examples=examples, source=spec, root=root, notes=notes, limits=self.limits)


def round_robin(examples: list[Example], limit: int | None) -> list[Example]:
    """At most ``limit`` questions taken from the tasks in turn (the first of each task, then the second,
    ...), kept in file order, so a quick run touches every task."""
    if limit is None or limit >= len(examples):
        return examples
    by_task: dict[str | None, list[Example]] = {}
    for ex in examples:
        by_task.setdefault(ex.task, []).append(ex)
    chosen: list[Example] = []
    depth = 0
    while len(chosen) < limit:
        for items in by_task.values():
            if depth < len(items) and len(chosen) < limit:
                chosen.append(items[depth])
        depth += 1
    order = {id(ex): i for i, ex in enumerate(examples)}
    return sorted(chosen, key=lambda ex: order[id(ex)])


_BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark) -> Benchmark:
    """Add a reader under its spec prefix (a lower-case word, not taken by another)."""
    if not benchmark.name.isidentifier() or benchmark.name != benchmark.name.lower():
        raise ValueError(f"A benchmark name must be a lower-case word (got {benchmark.name!r}).")
    other = _BENCHMARKS.get(benchmark.name)
    if other is not None and other != benchmark:
        raise ValueError(f"A benchmark named {benchmark.name!r} is already registered.")
    _BENCHMARKS[benchmark.name] = benchmark
    return benchmark


def list_benchmarks() -> list[Benchmark]:
    return list(_BENCHMARKS.values())


def get_benchmark(name: str) -> Benchmark:
    if name not in _BENCHMARKS:
        raise ValueError(f"Unknown benchmark {name!r}; choose one of {', '.join(_BENCHMARKS)}.")
    return _BENCHMARKS[name]


def find_benchmark(spec: str) -> Benchmark | None:
    """The benchmark a data spec names by its prefix (``mvbench:...``), or None for any other spec."""
    head, sep, _ = str(spec).strip().partition(":")
    return _BENCHMARKS.get(head.strip().lower()) if sep else None
