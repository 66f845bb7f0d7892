"""Start `python app.py` once per test session on a free port (shared by the browser and client tests)."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 120


@dataclass
class Server:
    url: str
    model: str
    process: subprocess.Popen
    log: Path
    work: Path


_server: Server | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
    shutil.rmtree(server.work, ignore_errors=True)


def serve(model: Path) -> Server:
    """The running app for `model` (started on first use, stopped at interpreter exit)."""
    global _server
    if _server is not None and _server.process.poll() is None:
        return _server
    _server = start(model)
    return _server


def start(model: Path, *extra: str) -> Server:
    """A new app process for `model` (with `extra` command-line flags), not shared: the caller stops it
    (`stop`), or it stops at interpreter exit."""
    work = Path(tempfile.mkdtemp(prefix="stts-app-test-"))
    port = _free_port()
    env = dict(os.environ, GRADIO_TEMP_DIR=str(work / "gradio"), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = work / "server.log"
    cmd = [sys.executable, str(REPO / "app.py"), "--host", "127.0.0.1", "--port", str(port), "--model", str(model),
           "--device", "cpu", "--examples-dir", str(work / "examples"), *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(url=f"http://127.0.0.1:{port}/", model=str(model), process=process, log=log, work=work)
    atexit.register(_stop, server)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace")[-3000:]
            _stop(server)
            raise RuntimeError(f"The app exited during startup:\n{text}")
        try:
            with urllib.request.urlopen(server.url, timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    text = log.read_text(errors="replace")[-3000:]
    _stop(server)
    raise RuntimeError(f"The app did not answer within {STARTUP_TIMEOUT_S} s:\n{text}")


def stop(server: Server) -> None:
    """Stop a server from `start` and remove its files."""
    _stop(server)
