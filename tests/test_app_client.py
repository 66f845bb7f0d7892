"""The "/run" API as a script uses it: gradio_client against the launched app."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_server import serve
from gradio_client import Client, handle_file

from stts_core.pipeline import STAGES
from stts_core.synthetic import make_clip
from stts_core.video import write_video


@pytest.fixture(scope="module")
def client(micro_checkpoint: Path) -> Client:
    return Client(serve(micro_checkpoint).url, verbose=False)


def test_run_endpoint_returns_both_answers(client: Client, micro_checkpoint: Path, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", make_clip(11).frames, fps=8)
    out = client.predict(handle_file(str(clip)), "what shape is the moving object ?", str(micro_checkpoint),
                         "heuristic", 8, 0.25, False, api_name="/run")
    assert len(out) == 13
    masks_path, masks_info, baseline, stts, table, details = out[0], out[1], out[5], out[6], out[8], out[11]
    assert Path(masks_path).is_file()
    assert baseline.strip() and stts.strip()
    assert details["baseline"]["answer"] == baseline and details["stts"]["answer"] == stts
    assert details["kept_groups"] == round(0.25 * 8 * details["keep_mask_shape"][1])
    assert "Keep 0.25" in masks_info
    assert [row[0] for row in table["data"]][-2:] == ["time to first token", "end to end"]
    assert len(table["data"]) == len(STAGES) + 2


def test_run_endpoint_reports_bad_input(client: Client, micro_checkpoint: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("plain text\n" * 50)
    with pytest.raises(Exception, match="not a video we can read"):
        client.predict(handle_file(str(notes)), "what is it ?", str(micro_checkpoint), "learned", 8, 0.5, False,
                       api_name="/run")
