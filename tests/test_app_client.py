"""The "/run" API as a script uses it: gradio_client against the launched app."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from app_server import serve
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from stts_core.data.synthetic import make_clip
from stts_core.data.video_encode import write_video
from stts_core.pipeline import STAGES


@pytest.fixture(scope="module")
def client(micro_checkpoint: Path) -> Client:
    return Client(serve(micro_checkpoint).url, verbose=False)


def test_run_endpoint_returns_both_answers(client: Client, micro_checkpoint: Path, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", make_clip(11).frames, fps=8)
    out = client.predict(handle_file(str(clip)), "what shape is the moving object ?", str(micro_checkpoint),
                         "heuristic", 8, 0.25, False, False, api_name="/run")
    assert len(out) == 19
    masks_path, masks_info, baseline, stts, table, details = out[0], out[1], out[5], out[6], out[8], out[11]
    masks_video, bundle, status = out[13], out[14], out[16]
    assert Path(masks_path).is_file()
    assert baseline.strip() and stts.strip()
    assert details["baseline"]["answer"] == baseline and details["stts"]["answer"] == stts
    t, g = details["keep_mask_shape"]
    assert details["kept_groups"] == round(0.25 * 8 * g) == sum(map(sum, details["keep_mask"]))
    assert len(details["scores"]) == t and len(details["scores"][0]) == g
    assert "Keep 0.25" in masks_info and status.startswith("Done: keep 0.25")
    assert [row[0] for row in table["data"]][-3:] == ["time to first token (model)", "model total", "end to end"]
    assert len(table["data"]) == len(STAGES) + 3
    assert Path(masks_video["video"] if isinstance(masks_video, dict) else masks_video).stat().st_size > 0
    with zipfile.ZipFile(bundle) as zf:
        assert json.loads(zf.read("result.json"))["keep_mask"] == details["keep_mask"]


def test_run_endpoint_reports_bad_input(client: Client, micro_checkpoint: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("plain text\n" * 50)
    with pytest.raises(AppError, match="not a video we can read"):
        client.predict(handle_file(str(notes)), "what is it ?", str(micro_checkpoint), "learned", 8, 0.5, False,
                       False, api_name="/run")
    clip = write_video(tmp_path / "clip.mp4", make_clip(2).frames, fps=8)
    with pytest.raises(AppError, match=r"^Frames must be a whole number from 4 to 256 \(got 4.5\)\.$"):
        client.predict(handle_file(str(clip)), "what is it ?", str(micro_checkpoint), "learned", 4.5, 0.5, False,
                       False, api_name="/run")
