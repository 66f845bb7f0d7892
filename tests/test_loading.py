"""`load_backend` dispatches by the checkpoint's `config.model_type` and refuses, in one sentence, what no
registered family claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stts_core import list_families, load_backend
from stts_core.models.base import ModelLoadError
from stts_core.models.registry import family_for_model_type, family_for_preset


def test_unclaimed_model_type_is_refused_naming_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_onevision", "architectures": ["X"]}))
    with pytest.raises(ModelLoadError) as info:
        load_backend(str(tmp_path), device="cpu")
    message = str(info.value)
    assert "'llava_onevision'" in message and "molmo2" in message
    assert "\n" not in message


def test_folder_without_config_and_broken_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_backend(str(tmp_path), device="cpu")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_backend(str(tmp_path), device="cpu")


def test_empty_model_name_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="Give a model"):
        load_backend("  ")


def test_every_family_claims_its_types_and_presets() -> None:
    for family in list_families():
        for model_type in family.model_types:
            assert family_for_model_type(model_type) is family
        for preset in family.presets:
            assert family_for_preset(preset) is family
    with pytest.raises(ValueError, match="Unknown preset"):
        family_for_preset("no-such-preset")
