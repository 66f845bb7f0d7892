"""Model choices and the per-process model cache, the only state the users of one app share.

Each model is loaded once per process. A failed load raises `ModelLoadError` with one readable
sentence and leaves whatever was loaded before untouched, so the previous model stays usable.
On Hugging Face ZeroGPU the model work runs inside `spaces.GPU`; the main process never touches
CUDA itself (models are placed on "cuda" through the `spaces` runtime, not by probing the driver).
"""

from __future__ import annotations

import functools
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

from stts_core.compute_thread import COMPUTE
from stts_core.models.base import VideoBackend
from stts_core.models.loading import DEFAULT_MODEL, ModelLoadError, load_backend

BUILTIN_LABEL = "Built-in STTS-tiny (offline, CPU)"
# Public hub checkpoints only (no guessed names): Molmo2, and the Qwen-VL models most people run, which have
# no STTS weights and score with the heuristic.
HUB_MODELS = ("allenai/Molmo2-4B", "Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-8B-Instruct",
              "Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct")
GPU_MAX_S = 300
NOT_OFFERED = "This app only runs the models listed in the Model box."

F = TypeVar("F", bound=Callable[..., Any])


def has_spaces() -> bool:
    return importlib.util.find_spec("spaces") is not None


def on_zero_gpu() -> bool:
    """True inside a Hugging Face ZeroGPU Space (the `spaces` runtime owns the GPU there)."""
    return bool(os.environ.get("SPACES_ZERO_GPU")) and has_spaces()


def gpu_seconds(num_frames: int, runs: int = 1, source: str | None = None) -> int:
    """ZeroGPU seconds to ask for: both models on `num_frames` frames, `runs` times (precise mode), by the
    estimate of the family of the model loaded from `source` (`ModelFamily.gpu_seconds`; the registry's
    default estimate when that model is not loaded)."""
    from stts_core.models.registry import ModelFamily, family_of

    backend = CACHE.peek(source) if source else None
    frames = max(1, int(num_frames))
    if backend is not None:
        seconds = family_of(backend).gpu_seconds(frames, runs)
    else:
        seconds = runs * (ModelFamily.gpu_base_s + ModelFamily.gpu_per_frame_s * frames)
    return int(min(GPU_MAX_S, seconds))


def gpu_task(duration: Callable[..., int]) -> Callable[[F], F]:
    """The model work of one event: `spaces.GPU(duration=duration)` when the `spaces` package is
    importable (a no-op outside ZeroGPU), run on the process's one compute thread (`COMPUTE`) except on
    ZeroGPU, where the `spaces` runtime runs it in its GPU worker. `duration` gets the task's arguments
    and returns seconds."""

    def wrap(fn: F) -> F:
        device_fn = fn
        if has_spaces():
            import spaces

            device_fn = spaces.GPU(duration=duration)(fn)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            return device_fn(*args, **kwargs) if on_zero_gpu() else COMPUTE.run(device_fn, *args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap


def public_mode(flag: bool = False) -> bool:
    """Public deployment: a Hugging Face Space (SPACE_ID set) or the --public flag."""
    return flag or bool(os.environ.get("SPACE_ID"))


def canonical(source: str) -> str:
    """One spelling per model: an existing folder becomes its real path; hub ids stay as typed."""
    path = os.path.expanduser(source)
    return os.path.realpath(path) if os.path.isdir(path) else source


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
    public: bool = False  # public deployment: only listed models, unless allow_custom
    allow_custom: bool = False

    def __post_init__(self) -> None:
        self.builtin_path = canonical(self.builtin_path)

    @classmethod
    def starting_with(cls, model: str | None, public: bool = False, allow_custom: bool = False) -> ModelChoices:
        """Choices with `model` (the --model flag) selected; an unknown id or path is added to the list."""
        choices = cls(public=public, allow_custom=allow_custom)
        if not model or canonical(model) == choices.builtin_path:
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

    @property
    def custom_allowed(self) -> bool:
        return not self.public or self.allow_custom

    def source(self, choice: str | None) -> str:
        """Hub id or canonical local path for a dropdown value (a listed label, or a custom id/path
        where custom models are allowed). Raises ValueError with a sentence otherwise."""
        text = choice.strip() if isinstance(choice, str) else ""
        if not text:
            raise ValueError("Please choose a model.")
        if text == BUILTIN_LABEL:
            return self.builtin_path
        if text not in self.labels and not self.custom_allowed:
            raise ValueError(NOT_OFFERED)
        return canonical(text)

    def label(self, source: str) -> str:
        return BUILTIN_LABEL if source == self.builtin_path else source

    def load_error(self, source: str, err: Exception) -> str:
        """The message a visitor sees; in public mode it never tells which server folders exist."""
        if not self.public:
            return str(err)
        return f"Could not load the model '{source}'." if source in self.labels else "Could not load that model."


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
        self._models: OrderedDict[str, VideoBackend] = OrderedDict()
        self._lock = threading.Lock()
        self.pinned = canonical(DEFAULT_MODEL)  # the built-in model is never evicted

    def get(self, source: str, builtin_path: str = DEFAULT_MODEL) -> VideoBackend:
        """The backend for `source`, loading it on first use; raises ModelLoadError on failure.

        Sources are canonicalised, so two spellings of one folder share one entry."""
        source = canonical(source)
        with self._lock:
            if source in self._models:
                self._models.move_to_end(source)
                return self._models[source]
            check_source(source, builtin_path)
            try:
                backend = COMPUTE.run(load_backend, source, device=self.device)
            except ModelLoadError:
                raise
            except Exception as err:
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise ModelLoadError(f"Could not load the model '{source}': {reason}") from err
            self._models[source] = backend
            self._evict()
            return backend

    def _evict(self) -> None:
        """Drop least recently used models beyond max_models, never the pinned built-in one."""
        while len(self._models) > self.max_models:
            victim = next((s for s in self._models if s != self.pinned), None)
            if victim is None:
                return
            del self._models[victim]

    def peek(self, source: str) -> VideoBackend | None:
        """The loaded backend for `source`, or None; never loads."""
        return self._models.get(canonical(source))

    @property
    def sources(self) -> list[str]:
        return list(self._models)

    def configure(self, device: str | None = None, max_models: int | None = None, pinned: str | None = None) -> None:
        self.device = device
        if max_models is not None:
            self.max_models = max(1, max_models)
        if pinned is not None:
            self.pinned = canonical(pinned)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


CACHE = ModelCache()


def builtin_available(path: str = DEFAULT_MODEL) -> bool:
    return Path(path, "config.json").is_file()
