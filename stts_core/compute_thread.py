"""One long-lived thread for all the model work of a server process.

PyTorch's CPU kernels run their intra-op parallelism on GNU OpenMP, which gives every thread that starts
parallel work a team of worker threads of its own, alive as long as that thread is. Once a process holds
more OpenMP threads than the machine has cores, libgomp stops spinning between parallel regions and every
region waits for its workers to be woken. A web server runs each event on whichever of its worker threads
is free, so calling the model from the event threads grows a team per thread and slows every op of every
thread: on the 2-core machine a small parallel op took 28 us alone and ~100 us while a second team existed,
and the built-in model's 16-frame run 33-36 ms on one thread against 55-65 ms on a second one, the STTS
path (more, smaller ops) more than the baseline (docs/benchmarks.md). `COMPUTE.run` sends every model call
to one thread, so one team does all of it.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class ComputeThread:
    """A single worker thread, started on first use; calls from it run inline (no deadlock on nesting)."""

    def __init__(self, name: str = "stts-compute") -> None:
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._ident: int | None = None
        self._lock = threading.Lock()

    def _start(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
                self._ident = executor.submit(threading.get_ident).result()
                self._executor = executor
            return self._executor

    @property
    def ident(self) -> int:
        """The thread's identifier (starting it if needed)."""
        self._start()
        assert self._ident is not None
        return self._ident

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on the compute thread, waiting for its result (or its exception).

        The caller's context variables travel with the call, so a web framework's per-request state
        (progress bars, the request itself) is there when `fn` reports back."""
        executor = self._start()
        if threading.get_ident() == self._ident:
            return fn(*args, **kwargs)
        context = contextvars.copy_context()
        return executor.submit(context.run, fn, *args, **kwargs).result()


COMPUTE = ComputeThread()


def on_compute_thread(fn: F) -> F:
    """Decorator: every call of `fn` runs on `COMPUTE`."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return COMPUTE.run(fn, *args, **kwargs)

    return call  # type: ignore[return-value]
