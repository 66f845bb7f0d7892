"""Keep freed host memory inside the process (Linux, glibc), so a run does not fault its buffers in again.

glibc returns freed blocks above its (adaptive) mmap threshold to the kernel and trims the top of the heap,
so each inference run on the CPU maps its activation buffers afresh and touches every page once more:
on the 2-core machine, preset `qwen3-vl-cpu-mid` at 32 frames took about 108,000 minor page faults and
250 ms of kernel time per run, and which run of a pair paid more depended on what ran before it. With the
settings below the same run takes a handful of faults and ~16 ms of kernel time (docs/benchmarks.md).
PyTorch's CUDA caching allocator keeps freed device memory the same way.

The cost is that the process keeps its high-water mark of host memory instead of handing it back.
`STTS_GLIBC_MALLOC=default` leaves glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt(3) parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

# Blocks below 32 MiB (glibc's largest mmap threshold) come from the heap and are reused; the heap top is
# trimmed only beyond 1 GiB free; a growing heap takes 64 MiB at a time; two arenas, so a server's worker
# threads share retained memory instead of each keeping its own.
SETTINGS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 64 << 20, M_ARENA_MAX: 2}

_state: dict[str, bool] = {}


def retain_freed_memory() -> bool:
    """Apply SETTINGS once per process; True when glibc took all of them (False elsewhere or when opted out)."""
    if "applied" in _state:
        return _state["applied"]
    _state["applied"] = applied = _apply()
    return applied


def _apply() -> bool:
    if not sys.platform.startswith("linux") or os.environ.get("STTS_GLIBC_MALLOC", "").lower() == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS.items())


def host_allocator() -> str:
    """What a benchmark report records about the host allocator."""
    return "glibc, freed memory retained (stts_core.host_memory)" if _state.get("applied") else "default"
