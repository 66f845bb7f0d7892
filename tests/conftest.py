"""Shared fixtures: a micro random Molmo2 checkpoint written to disk and loaded back the way users load one."""

from __future__ import annotations

from pathlib import Path

import pytest

from stts_core.data.synthetic import VOCABULARY
from stts_core.models.molmo2.backend import Molmo2Backend
from stts_core.models.molmo2.build import build_random_checkpoint
from stts_core.models.molmo2.checkpoint import load_molmo2


@pytest.fixture(scope="session")
def micro_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a random-weight micro Molmo2ForSTTS checkpoint (safetensors, config, processor)."""
    return build_random_checkpoint(tmp_path_factory.mktemp("micro-ckpt"), "micro", words=VOCABULARY)


@pytest.fixture(scope="session")
def micro_backend(micro_checkpoint: Path) -> Molmo2Backend:
    """The micro checkpoint loaded through `load_molmo2`, on the CPU in float32."""
    return load_molmo2(str(micro_checkpoint), device="cpu")


@pytest.fixture(scope="module")
def handlers():  # noqa: ANN201 - app.handlers imports gradio, which only the app tests need
    """The app's event handlers with a fresh model cache on the CPU (one per test module)."""
    from app.handlers import Handlers
    from app.models import CACHE, ModelChoices

    CACHE.clear()
    CACHE.configure(device="cpu", max_models=2)
    return Handlers(ModelChoices())
