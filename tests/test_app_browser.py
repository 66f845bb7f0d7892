"""The page in a real (headless) Chromium: upload, ask, run, drag the keep slider, and a bad upload.

Needs Debian's /usr/bin/chromium and the playwright package; skipped with the reason otherwise.
Screenshots go to tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from app_server import serve

from stts_core.synthetic import make_clip
from stts_core.video import write_video

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
QUESTION = "what colour is the square ?"

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not installed"),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def page(micro_checkpoint: Path):
    server = serve(micro_checkpoint)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(server.url)
        page.wait_for_selector("#run")
        yield page
        browser.close()


def drag_slider(page, elem_id: str, value: float, lo: float, hi: float) -> None:
    """Press on the slider's thumb and drag it to `value`, as a person would (fires change, then release)."""
    track = page.locator(f"#{elem_id} input[type=range]")
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    y = box["y"] + box["height"] / 2
    current = float(track.input_value())
    page.mouse.move(box["x"] + box["width"] * (current - lo) / (hi - lo), y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (value - lo) / (hi - lo), y, steps=8)
    page.mouse.up()


def test_upload_run_slide_and_bad_file(page, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", make_clip(5).frames, fps=8)
    page.locator("#video input[type=file]").set_input_files(str(clip))
    expect(page.locator("#video-info")).to_contain_text("fps")
    page.locator("#question textarea").fill(QUESTION)
    page.locator("#run").click()

    page.get_by_role("tab", name="Answers").click()
    expect(page.locator("#stts-answer textarea")).not_to_have_value("")
    expect(page.locator("#baseline-answer textarea")).not_to_have_value("")
    expect(page.locator("#answer-info")).to_contain_text("Visual tokens")

    page.get_by_role("tab", name="Keep masks").click()
    image = page.locator("#masks img")
    expect(image).to_have_count(1)
    expect(page.locator("#masks-info")).to_contain_text("Keep 0.50")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "app_masks_tab.png"))
    before = image.get_attribute("src")

    drag_slider(page, "keep", 0.2, 0.05, 1.0)
    expect(image).not_to_have_attribute("src", before, timeout=20_000)
    after = float(page.locator("#keep input[type=number]").input_value())
    assert 0.1 < after < 0.3
    expect(page.locator("#masks-info")).to_contain_text(f"Keep {after:.2f}")
    expect(page.locator("#masks-info")).not_to_contain_text("Preview", timeout=60_000)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "app_masks_tab_after_slider.png"))

    page.get_by_role("tab", name="Temporal scores").click()
    expect(page.locator("#heatmap .js-plotly-plot")).to_have_count(1)
    expect(page.locator("#scores-image img")).to_have_count(1)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "app_scores_tab.png"), full_page=True)
    page.get_by_role("tab", name="Answers").click()
    page.screenshot(path=str(ARTIFACTS / "app_answers_tab.png"))

    page.get_by_role("tab", name="Speed").click()
    expect(page.locator("#stage-table")).to_contain_text("end to end")
    expect(page.locator("#speed-info")).to_contain_text("End to end")
    expect(page.locator("#stage-chart .js-plotly-plot")).to_have_count(1)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "app_speed_tab.png"), full_page=True)

    notes = tmp_path / "holiday.mp4"
    notes.write_text("Not a video, just a renamed text file.\n" * 40)
    page.locator("#video button[aria-label=Clear]").click()
    page.locator("#video input[type=file]").set_input_files(str(notes))
    message = "This file is not a video we can read (it looks like plain text)."
    expect(page.get_by_text(message).first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "app_bad_upload.png"))
    page.locator("#run").click()
    expect(page.locator(".toast-body").filter(has_text=message)).not_to_have_count(0)
    expect(page.locator("#run")).to_be_enabled()
