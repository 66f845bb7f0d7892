"""`python scripts/app_memory.py`: how much the app's memory grows per visitor.

Starts `python app.py` (from --repo, default this checkout) on a free port with a random micro
checkpoint, runs one warm-up request, then --sessions new visitors (a new gradio_client session each),
every one running the "/run" endpoint on a --frames-frame 640x480 clip, and prints the server's
resident memory (RSS, from /proc) before, after and at its peak. The target is <= 150 MB growth over
30 sessions of 256 frames (5 MB a session): a session keeps only what the keep slider redraws from, and
its pictures (contact-sheet tiles, scrubber frames) live in files under the run's folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (VmRSS from /proc)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.is_file():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def make_clip(path: Path, frames: int, width: int = 640, height: int = 480, fps: float = 24.0) -> Path:
    """A textured clip with a moving square: real-looking enough that JPEG and H.264 sizes are typical."""
    from stts_core.data.video_encode import write_video

    rng = np.random.default_rng(0)
    base = cv_blur(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    pictures = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        pictures[t] = np.roll(base, t * 3, axis=1)
        x = (t * 7) % (width - 80)
        pictures[t, 200:280, x:x + 80] = (220, 40, 40)
    return write_video(path, pictures, fps=fps)


def cv_blur(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), 6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_app(repo: Path, model: str, work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, GRADIO_TEMP_DIR=str(work / "gradio"), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", PYTHONPATH=str(repo))
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, str(repo / "app.py"), "--port", str(port), "--model", model,
                             "--device", "cpu", "--examples-dir", str(work / "examples")],
                            cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((work / "server.log").read_text(errors="replace")[-2000:])
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the app did not start within 180 s")


def visit(url: str, clip: Path, model: str, frames: int) -> float:
    """One new visitor (a new session) running one request; returns its seconds."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    start = time.perf_counter()
    args = [handle_file(str(clip)), "what moves ?", model, "heuristic", frames, 0.5, False]
    try:
        client.predict(*args, False, api_name="/run")
    except (TypeError, ValueError):  # an app version whose "/run" has no measure-precisely input
        client.predict(*args, api_name="/run")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python scripts/app_memory.py", description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=30)
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--repo", type=Path, default=REPO, help="checkout whose app.py is measured")
    p.add_argument("--model", default=None, help="checkpoint folder (default: a random micro one)")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="stts-app-memory-"))
    proc = None
    try:
        from stts_core.data.synthetic import VOCABULARY
        from stts_core.models.molmo2.build import build_random_checkpoint

        model = args.model or str(build_random_checkpoint(work / "micro", "micro", words=VOCABULARY))
        clip = make_clip(work / "clip.mp4", args.frames + 8)
        proc, url = start_app(args.repo.resolve(), model, work)
        warm = visit(url, clip, model, args.frames)
        before = rss_mb(proc.pid)
        peak, seconds, trace = before, [], []
        for _ in range(args.sessions):
            seconds.append(visit(url, clip, model, args.frames))
            now = rss_mb(proc.pid)
            peak = max(peak, now)
            trace.append(round(now))
        after = rss_mb(proc.pid)
        print(json.dumps({"repo": str(args.repo), "sessions": args.sessions, "frames": args.frames,
                          "clip": "640x480", "warmup_s": round(warm, 1),
                          "median_run_s": round(float(np.median(seconds)), 1), "rss_before_mb": round(before),
                          "rss_after_mb": round(after), "growth_mb": round(after - before), "peak_mb": round(peak),
                          "rss_trace_mb": trace}, indent=1))
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
