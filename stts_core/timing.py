"""Stage timers that measure what the device really did (CUDA work is synchronised before reading)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


def synchronize(device: torch.device | str | None) -> None:
    """Wait for queued device work so that a wall-clock reading covers it."""
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(dev)


class StageTimer:
    """Accumulates seconds per named stage; the order of first use is the order of the report."""

    def __init__(self, device: torch.device | str | None = None,
                 on_start: Callable[[str], None] | None = None) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self.on_start = on_start  # told each stage's name as it starts (progress bars), outside the clock

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.on_start is not None:
            self.on_start(name)
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def get(self, name: str) -> float:
        return self.seconds.get(name, 0.0)


class CpuShare:
    """How much of its threads' CPU a stretch of work on the CPU got: process CPU time over wall time x
    torch's intra-op threads. An idle machine gives about 1 (the workers spin between ops); other
    processes competing for the cores push it toward 1 / (competitors + 1), and such a run's timings are
    the contention's, not the model's. None for work on an accelerator, where the host mostly waits."""

    def __init__(self, device: torch.device | str | None) -> None:
        self.on_cpu = torch.device(device).type == "cpu" if device is not None else True
        self.threads = max(1, torch.get_num_threads())
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def share(self) -> float | None:
        if not self.on_cpu:
            return None
        wall = time.perf_counter() - self.wall
        return (time.process_time() - self.cpu) / max(wall * self.threads, 1e-9)


def reset_peak_memory(device: torch.device | str | None) -> None:
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(dev)


def peak_memory_gb(device: torch.device | str | None) -> float | None:
    """Peak allocated GPU memory since the last reset, in GiB; None on the CPU (not tracked)."""
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(dev) / 1024**3
    return None


def device_name(device: torch.device | str | None) -> str:
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
