"""STTS Studio web app: `python app.py [--host 127.0.0.1] [--port 7860] [--model PATH_OR_ID] [--device cpu|cuda]
[--share] [--public [--allow-custom-models]]`.

Also the Hugging Face Spaces entry point (sdk gradio, app_file app.py). Serves the built-in model
offline on a CPU by default. Scripts can call the "/run" endpoint with gradio_client; see
app/handlers.py for its inputs and outputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

if importlib.util.find_spec("spaces") is not None:
    import spaces  # noqa: F401  (on ZeroGPU it must be imported before torch)

from app.examples import ASSETS_EXAMPLES, examples_dir
from app.forms import LIMITS
from app.models import CACHE, ModelChoices, default_device, on_zero_gpu, public_mode
from app.ui import DEFAULT_FRAMES, build_demo
from stts_core.compute_thread import COMPUTE
from stts_core.host_memory import retain_freed_memory
from stts_core.models.base import VideoBackend
from stts_core.pipeline import warm_up

THEME = "soft"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py", description="STTS Studio web app")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--model", default=None, help="hub id or local checkpoint folder selected at start "
                                                   "(default: the built-in STTS-tiny in assets/stts-tiny)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available, else cpu")
    p.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    p.add_argument("--max-models", type=int, default=2, help="models kept loaded at once")
    p.add_argument("--examples-dir", type=Path, default=None, help="where example clips are written "
                                                                    "(default: assets/examples if writable)")
    p.add_argument("--no-preload", action="store_true", help="load the selected model on the first run instead")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up runs at start (the first "
                                                             "visitor's run then says it is a warm-up run)")
    p.add_argument("--public", action="store_true", help="public deployment (also when SPACE_ID is set): the Model "
                                                          "box offers the listed models only")
    p.add_argument("--allow-custom-models", action="store_true", help="in public mode, still accept typed hub ids "
                                                                       "and local checkpoint folders")
    return p.parse_args(argv)


def warm_at_start(backend: VideoBackend, skip: bool = False) -> None:
    """Untimed runs of both paths before the server takes visitors (`pipeline.warm_up`), so the first
    visitor's timings are steady-state and the page calls a run a warm-up only when it is one. Not on
    ZeroGPU, where no GPU is attached outside a request."""
    if skip or on_zero_gpu():
        return
    seconds = COMPUTE.run(warm_up, backend, num_frames=DEFAULT_FRAMES)  # on the thread that serves the runs
    print(f"warmed up {backend.source or backend.name} (baseline and STTS, untimed) in {seconds:.1f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    retain_freed_memory()  # before the model loads: runs reuse freed host memory instead of faulting it in
    public = public_mode(args.public)
    choices = ModelChoices.starting_with(args.model, public=public, allow_custom=args.allow_custom_models)
    CACHE.configure(device=default_device(args.device), max_models=args.max_models, pinned=choices.builtin_path)
    examples = examples_dir(args.examples_dir)
    if not args.no_preload:  # before the page is built, so the keep slider starts at the model's default
        try:
            backend = CACHE.get(choices.source(choices.selected), choices.builtin_path)
        except RuntimeError as err:
            print(f"warning: {err} The app starts anyway; pick another model in the page.", file=sys.stderr)
        else:
            warm_at_start(backend, args.no_warmup)
    demo = build_demo(args.model, examples, public=public, allow_custom=args.allow_custom_models)
    demo.queue(default_concurrency_limit=1, max_size=64)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=LIMITS.max_bytes,
                state_session_capacity=200, theme=THEME, show_error=True,
                allowed_paths=[str(examples), str(ASSETS_EXAMPLES)])


if __name__ == "__main__":
    main()
