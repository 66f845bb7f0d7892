"""When a keep value has rested: every keep change of a session is stamped, and a rerun waits until the
session's last change is SETTLE_S old, so dragging the slider redraws at once but reruns the models once."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import gradio as gr

SETTLE_S = 0.6  # the keep value must rest this long before the models rerun
MAX_SESSIONS = 1024  # stamps kept (the oldest sessions are forgotten first)
MAX_WAIT_S = 5.0


class SettleClock:
    """Per-session time of the last keep change, shared by the events of one view."""

    def __init__(self) -> None:
        self._changes: OrderedDict[str, float] = OrderedDict()  # session -> time of its last keep change
        self._lock = threading.Lock()

    @staticmethod
    def _session(request: gr.Request | None) -> str:
        return getattr(request, "session_hash", None) or "-"

    def touch(self, request: gr.Request | None) -> None:
        session = self._session(request)
        with self._lock:
            self._changes[session] = time.monotonic()
            self._changes.move_to_end(session)
            while len(self._changes) > MAX_SESSIONS:
                self._changes.popitem(last=False)

    def settle(self, request: gr.Request | None = None) -> None:
        """Wait until this session's keep value has rested SETTLE_S (at most MAX_WAIT_S)."""
        session = self._session(request)
        deadline = time.monotonic() + MAX_WAIT_S
        while time.monotonic() < deadline:
            with self._lock:
                rest = self._changes.get(session, 0.0) + SETTLE_S - time.monotonic()
            if rest <= 0:
                return
            time.sleep(min(rest, 0.2))
