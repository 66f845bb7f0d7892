"""Model choices and the per-process model cache, the only state the users of one app share.

Each model is loaded once per process. A failed load raises `ModelLoadError` with one readable
sentence and leaves whatever was loaded before untouched, so the previous model stays usable.
On Hugging Face ZeroGPU the model work runs inside `spaces.GPU`; the main process never touches
CUDA itself (models are placed on "cuda" through the `spaces` runtime, not by probing the driver).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from stts_core.backends.molmo2 import ModelLoadError
from stts_core.run import DEFAULT_MODEL, load_backend

BUILTIN_LABEL = "Built-in STTS-tiny (offline, CPU)"
HUB_MODELS = ("allenai/Molmo2-4B", "allenai/Molmo2-4B-Lite-50", "allenai/Molmo2-4B-Lite-30")
GPU_SECONDS = 120  # ZeroGPU time slot asked for one run (both models)

F = TypeVar("F", bound=Callable[..., Any])


def has_spaces() -> bool:
    return importlib.util.find_spec("spaces") is not None


def on_zero_gpu() -> bool:
    """True inside a Hugging Face ZeroGPU Space (the `spaces` runtime owns the GPU there)."""
    return bool(os.environ.get("SPACES_ZERO_GPU")) and has_spaces()


def gpu_task(fn: F) -> F:
    """`spaces.GPU` when the `spaces` package is importable (a no-op outside ZeroGPU), else fn itself."""
    if not has_spaces():
        return fn
    import spaces

    return spaces.GPU(duration=GPU_SECONDS)(fn)


def default_device(requested: str | None) -> str | None:
    """The device models load on: the flag if given; "cuda" on ZeroGPU; else the library's choice."""
    if requested:
        return requested
    return "cuda" if on_zero_gpu() else None


@dataclass
class ModelChoices:
    """What the model dropdown offers and how a choice becomes a hub id or a local path."""

    builtin_path: str = DEFAULT_MODEL
    extra: list[str] = field(default_factory=list)
    selected: str = BUILTIN_LABEL

    @classmethod
    def starting_with(cls, model: str | None) -> ModelChoices:
        """Choices with `model` (the --model flag) selected; an unknown id or path is added to the list."""
        choices = cls()
        if not model or os.path.abspath(os.path.expanduser(model)) == os.path.abspath(DEFAULT_MODEL):
            return choices
        if model in HUB_MODELS:
            choices.selected = model
        else:
            choices.extra.append(model)
            choices.selected = model
        return choices

    @property
    def labels(self) -> list[str]:
        return [BUILTIN_LABEL, *HUB_MODELS, *self.extra]

    def source(self, choice: str | None) -> str:
        """Hub id or local path for a dropdown value (a listed label or any custom id/path)."""
        text = (choice or "").strip()
        if not text:
            raise ValueError("Please choose a model.")
        if text == BUILTIN_LABEL:
            return self.builtin_path
        return text

    def label(self, source: str) -> str:
        return BUILTIN_LABEL if source == self.builtin_path else source


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source.count("/") > 1 or os.sep in source.replace("/", "")


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub library rejects is simply not cached
        return False


def check_source(source: str, builtin_path: str = DEFAULT_MODEL) -> None:
    """Fail fast, with a sentence, for sources that cannot load (instead of minutes of network retries)."""
    if os.path.isdir(source):
        return
    if source == builtin_path:
        raise ModelLoadError(
            f"The built-in model is not installed yet (expected a checkpoint folder at {builtin_path}); "
            "start the app with --model PATH to use another checkpoint."
        )
    if _looks_like_path(source):
        raise ModelLoadError(f"There is no model folder at '{source}'.")
    if not _in_hub_cache(source) and not _hub_reachable():
        raise ModelLoadError(
            f"Could not load the model '{source}': the Hugging Face Hub cannot be reached from this machine "
            "and the model is not in the local cache."
        )


class ModelCache:
    """Loaded backends by source, least recently used first; at most `max_models` stay loaded.

    A new model is only admitted after it loaded, so a failure never evicts a working one.
    """

    def __init__(self, device: str | None = None, max_models: int = 2) -> None:
        self.device = device
        self.max_models = max(1, max_models)
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, source: str, builtin_path: str = DEFAULT_MODEL) -> Any:
        """The backend for `source`, loading it on first use; raises ModelLoadError on failure."""
        with self._lock:
            if source in self._models:
                self._models.move_to_end(source)
                return self._models[source]
            check_source(source, builtin_path)
            try:
                backend = load_backend(source, device=self.device)
            except ModelLoadError:
                raise
            except Exception as err:
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise ModelLoadError(f"Could not load the model '{source}': {reason}") from err
            self._models[source] = backend
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            return backend

    def peek(self, source: str) -> Any | None:
        """The loaded backend for `source`, or None; never loads."""
        return self._models.get(source)

    @property
    def sources(self) -> list[str]:
        return list(self._models)

    def configure(self, device: str | None = None, max_models: int | None = None) -> None:
        self.device = device
        if max_models is not None:
            self.max_models = max(1, max_models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


CACHE = ModelCache()


def builtin_available(path: str = DEFAULT_MODEL) -> bool:
    return Path(path, "config.json").is_file()
