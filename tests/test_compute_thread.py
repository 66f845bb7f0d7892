"""stts_core.compute_thread and the app's use of it: every model call of a server runs on one thread."""

from __future__ import annotations

import contextvars
import os
import sys
import threading

import pytest
import torch

from app import models
from stts_core.compute_thread import COMPUTE, ComputeThread, on_compute_thread

REQUEST = contextvars.ContextVar("request", default=None)


def _from_threads(fn, count: int) -> tuple[list, int]:
    """Call `fn` from `count` threads that all stay alive until every call returned -> results and the
    process's OS-thread growth while they were alive."""
    before = len(os.listdir("/proc/self/task"))
    results: list = [None] * count
    done = threading.Barrier(count + 1)

    def worker(i: int) -> None:
        results[i] = fn()
        done.wait()  # alive (with whatever OpenMP team it grew) until the count below
        done.wait()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    done.wait()
    grown = len(os.listdir("/proc/self/task")) - before
    done.wait()
    for t in threads:
        t.join()
    return results, grown


def test_calls_from_any_thread_run_on_one_thread_with_results_and_errors() -> None:
    compute = ComputeThread("test-compute")
    idents, _ = _from_threads(lambda: compute.run(threading.get_ident), 4)
    assert set(idents) == {compute.ident} and compute.ident != threading.get_ident()
    with pytest.raises(ValueError, match="bad input"):
        compute.run(lambda: (_ for _ in ()).throw(ValueError("bad input")))
    assert compute.run(lambda: compute.run(lambda: 7)) == 7  # a nested call runs inline, no deadlock


def test_the_callers_context_variables_travel_with_the_call() -> None:
    """Per-request state a web framework keeps in context variables (progress bars) is seen by the call."""
    token = REQUEST.set("event-1")
    try:
        assert COMPUTE.run(REQUEST.get) == "event-1"
    finally:
        REQUEST.reset(token)
    assert COMPUTE.run(REQUEST.get) is None


@pytest.mark.skipif(not sys.platform.startswith("linux") or torch.get_num_threads() < 2,
                    reason="counts OpenMP worker threads in /proc (Linux, 2+ intra-op threads)")
def test_model_work_from_many_event_threads_grows_one_openmp_team() -> None:
    """Parallel torch work called from six live threads directly grows a worker team per thread; through
    the compute thread the process gains only the six callers and at most one team."""
    work = torch.randn(1 << 20)

    def parallel_op() -> float:
        return float(torch.nn.functional.gelu(work).sum())

    COMPUTE.run(parallel_op)  # the compute thread and its team exist before counting
    _, routed = _from_threads(on_compute_thread(parallel_op), 6)
    _, direct = _from_threads(parallel_op, 6)  # second: a finished caller's team leaves after its thread
    assert routed <= 7, (routed, direct)  # the callers (other threads of the process may come and go)
    assert direct >= 11, (routed, direct)


def test_the_apps_model_work_and_model_loading_run_on_the_compute_thread(monkeypatch) -> None:
    seen: dict[str, int] = {}

    @models.gpu_task(lambda *a: 1)
    def device_work() -> str:
        seen["work"] = threading.get_ident()
        return "done"

    def fake_load(source: str, device: str | None = None) -> object:
        seen["load"] = threading.get_ident()
        return object()

    monkeypatch.setattr(models, "load_backend", fake_load)
    monkeypatch.setattr(models, "check_source", lambda *a: None)
    assert device_work() == "done"
    models.ModelCache().get("some/model")
    assert seen == {"work": COMPUTE.ident, "load": COMPUTE.ident}
