"""The page in a real (headless) Chromium: upload, ask, run; every kind of keep change (drag, arrow keys,
number box) ends with answers rerun and captions current; the masks video plays; the download works; a
failed run leaves the page usable; a GIF upload plays without an error; a bad upload is refused.

Needs Debian's /usr/bin/chromium and the playwright package; skipped with the reason otherwise.
Screenshots go to tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
from app_server import serve

from stts_core.data.synthetic import make_clip
from stts_core.data.video_encode import write_video

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
    pytest.mark.slow,
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not installed"),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def browser(micro_checkpoint: Path):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser, serve(micro_checkpoint).url
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh tab (a new session) per test."""
    chromium, url = browser
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_selector("#run")
    yield page
    page.close()


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


def answers_for(page, keep: float) -> None:
    """Wait until every tab describes a finished run at `keep` (no preview caption left anywhere)."""
    expect(page.locator("#status")).to_contain_text(f"Done: keep {keep:.2f}", timeout=90_000)
    page.get_by_role("tab", name="Answers").click()
    expect(page.locator("#answer-info")).to_contain_text(f"keep {keep:.2f}")
    page.get_by_role("tab", name="Keep masks").click()
    expect(page.locator("#masks-info")).to_contain_text(f"Keep {keep:.2f}")
    expect(page.locator("#masks-info")).not_to_contain_text("Preview")
    expect(page.locator("#run")).to_be_enabled()


def test_upload_run_slide_and_bad_file(page, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", make_clip(5).frames, fps=8)
    page.locator("#video input[type=file]").set_input_files(str(clip))
    expect(page.locator("#video-info")).to_contain_text("fps")
    page.locator("#question textarea").fill(QUESTION)
    page.locator("#run").click()
    answers_for(page, 0.5)

    page.get_by_role("tab", name="Answers").click()
    expect(page.locator("#stts-answer textarea")).not_to_have_value("")
    expect(page.locator("#baseline-answer textarea")).not_to_have_value("")
    expect(page.locator("#answer-info")).to_contain_text("Visual tokens")
    baseline_before = page.locator("#baseline-answer textarea").input_value()

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
    answers_for(page, after)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "app_masks_tab_after_slider.png"))

    # Arrow keys on the slider: masks preview, then the models rerun once the value rests.
    track = page.locator("#keep input[type=range]")
    track.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    arrowed = round(after + 0.05, 2)
    expect(page.locator("#keep input[type=number]")).to_have_value(f"{arrowed:g}")
    answers_for(page, arrowed)

    # The number box: type a value and leave the box.
    box = page.locator("#keep input[type=number]")
    box.fill("0.4")
    box.press("Enter")
    answers_for(page, 0.4)
    page.get_by_role("tab", name="Answers").click()
    page.screenshot(path=str(ARTIFACTS / "app_answers_after_number_box.png"))

    # The masks video plays in the page.
    page.get_by_role("tab", name="Keep masks").click()
    played = page.evaluate("""async () => {
        const v = document.querySelector('#masks-video video');
        if (!v) return -1;
        v.muted = true;
        await v.play();
        await new Promise(r => setTimeout(r, 1500));
        return v.currentTime;
    }""")
    assert played > 0.2, played
    expect(page.locator("#frame-plot .js-plotly-plot")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "app_masks_video.png"), full_page=True)

    # The download bundle.
    page.get_by_role("tab", name="Download").click()
    with page.expect_download() as info:
        page.locator("#bundle a").first.click()
    saved = tmp_path / "bundle.zip"
    info.value.save_as(saved)
    with zipfile.ZipFile(saved) as zf:
        assert {"result.json", "stts_masks.mp4", "kept_per_frame.csv"} <= set(zf.namelist())
        assert json.loads(zf.read("result.json"))["settings"]["keep_ratio"] == 0.4

    page.get_by_role("tab", name="Temporal scores").click()
    expect(page.locator("#heatmap .js-plotly-plot")).to_have_count(1)
    expect(page.locator("#scores-image img")).to_have_count(1)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "app_scores_tab.png"), full_page=True)

    page.get_by_role("tab", name="Speed").click()
    expect(page.locator("#stage-table")).to_contain_text("end to end")
    expect(page.locator("#speed-info")).to_contain_text("Time to first token (model)")
    expect(page.locator("#stage-chart .js-plotly-plot")).to_have_count(1)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "app_speed_tab.png"), full_page=True)

    # A failed run: one sentence in a toast and the status line; results and controls untouched.
    page.locator("#question textarea").fill("")
    page.locator("#run").click()
    message = "Please type a question about the video."
    expect(page.locator(".toast-body").filter(has_text=message)).not_to_have_count(0)
    expect(page.locator("#status")).to_contain_text(message)
    expect(page.locator("#run")).to_be_enabled()
    page.get_by_role("tab", name="Answers").click()
    expect(page.locator("#baseline-answer textarea")).to_have_value(baseline_before)
    page.get_by_test_id("random-radio-label").click()
    expect(page.locator("#scorer input[value=random]")).to_be_checked()
    error_pills = page.evaluate("""() => [...document.querySelectorAll('body *')].filter(e =>
        e.children.length === 0 && e.textContent.trim() === 'Error' && !e.closest('[class*=toast]')).length""")
    assert error_pills == 0
    page.screenshot(path=str(ARTIFACTS / "app_failed_run.png"))

    notes = tmp_path / "holiday.mp4"
    notes.write_text("Not a video, just a renamed text file.\n" * 40)
    page.locator("#video button[aria-label=Clear]").click()
    page.locator("#video input[type=file]").set_input_files(str(notes))
    message = "This file is not a video we can read (it looks like plain text)."
    expect(page.get_by_text(message).first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "app_bad_upload.png"))
    page.locator("#question textarea").fill(QUESTION)
    page.locator("#run").click()
    expect(page.locator(".toast-body").filter(has_text=message)).not_to_have_count(0)
    expect(page.locator("#run")).to_be_enabled()


def test_gif_upload_plays_without_error(page, tmp_path: Path) -> None:
    gif = write_video(tmp_path / "moving.gif", make_clip(8).frames[:12], fps=8)
    with page.expect_file_chooser() as chooser:
        page.locator("#upload-any").click()
    chooser.value.set_files(str(gif))
    expect(page.locator("#video-info")).to_contain_text("Converted to H.264 MP4", timeout=30_000)
    expect(page.locator("#video video")).to_have_count(1)
    ready = page.evaluate("""async () => {
        const v = document.querySelector('#video video');
        for (let i = 0; i < 50 && v.readyState < 2; i++) await new Promise(r => setTimeout(r, 100));
        return v.readyState;
    }""")
    assert ready >= 2
    assert page.locator(".toast-body").filter(has_text="playable").count() == 0
    page.screenshot(path=str(ARTIFACTS / "app_gif_upload.png"))


def open_tab(page, name: str) -> None:
    """Click a tab, from the "More tabs" menu when the tab row has no room for it."""
    tab = page.get_by_role("tab", name=name)
    if tab.count() and tab.first.is_visible():
        tab.first.click()
        return
    page.locator("button[aria-label='More tabs']").click()
    page.locator(".overflow-dropdown button").filter(has_text=name).click()


def test_compare_methods_tab(page, tmp_path: Path) -> None:
    """One video, four methods at one keep ratio: a strip per method over the same frames, the table of
    answers, agreement, TTFT and tokens; the keep slider redraws the strips at once, then the models rerun."""
    clip = write_video(tmp_path / "clip.mp4", make_clip(5).frames, fps=8)
    page.locator("#video input[type=file]").set_input_files(str(clip))
    expect(page.locator("#video-info")).to_contain_text("fps")
    page.locator("#question textarea").fill(QUESTION)
    open_tab(page, "Compare methods")
    for name in ("learned", "evs", "vidcom2", "fastv"):
        expect(page.locator("#compare-methods").get_by_label(name, exact=True)).to_be_checked()
    page.locator("#compare-methods").get_by_label("divprune", exact=True).check()
    page.locator("#compare-run").click()
    expect(page.locator("#compare-status")).to_contain_text("Done: keep 0.50", timeout=120_000)
    expect(page.locator("#compare-strips img")).to_have_count(1)
    table = page.locator("#compare-table")
    for name in ("baseline", "learned", "evs", "vidcom2", "divprune", "fastv"):
        expect(table).to_contain_text(name)
    expect(page.locator("#compare-summary")).to_contain_text("every method gives the LLM")
    expect(page.locator("#compare-chart .js-plotly-plot")).to_have_count(1)
    page.locator("#compare-strips").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "app_compare_tab.png"), full_page=True)

    strips = page.locator("#compare-strips img")
    before = strips.get_attribute("src")
    drag_slider(page, "compare-keep", 0.2, 0.05, 1.0)
    expect(strips).not_to_have_attribute("src", before, timeout=20_000)
    after = float(page.locator("#compare-keep input[type=number]").input_value())
    assert 0.1 < after < 0.3
    expect(page.locator("#compare-status")).to_contain_text(f"Done: keep {after:.2f}", timeout=120_000)
    expect(page.locator("#compare-summary")).to_contain_text(f"Keep {after:.2f}")
    page.locator("#compare-strips").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "app_compare_after_slider.png"), full_page=True)

    with page.expect_download() as info:
        page.locator("#compare-bundle a").first.click()
    saved = tmp_path / "compare.zip"
    info.value.save_as(saved)
    with zipfile.ZipFile(saved) as zf:
        assert {"compare.json", "methods.csv", "strips.png"} <= set(zf.namelist())
        data = json.loads(zf.read("compare.json"))
        assert [m["method"] for m in data["methods"]] == ["learned", "evs", "vidcom2", "divprune", "fastv"]
        assert data["keep_ratio"] == pytest.approx(after)


def test_a_qwen_checkpoint_picked_in_the_model_box(page, tmp_path: Path) -> None:
    """A tiny Qwen3-VL checkpoint typed into the Model box serves the page: its masks, heatmap and answers
    speak of temporal patches (two frames a row, both frame times in the labels)."""
    from stts_core.data.synthetic import VOCABULARY
    from stts_core.models.qwen3_vl import FAMILY as QWEN3_VL

    folder = QWEN3_VL.tiny_checkpoint(tmp_path / "qwen3-vl-tiny", preset="qwen3-vl-tiny", words=VOCABULARY)
    clip = write_video(tmp_path / "clip.mp4", make_clip(5).frames, fps=8)
    page.locator("#video input[type=file]").set_input_files(str(clip))
    expect(page.locator("#video-info")).to_contain_text("fps")
    page.locator("#question textarea").fill(QUESTION)
    box = page.locator("#model input")
    box.fill(str(folder))
    box.press("Enter")
    page.locator("#run").click()
    answers_for(page, 0.5)
    expect(page.locator("#masks-info")).to_contain_text("temporal patches")
    expect(page.locator("#masks-info")).to_contain_text("both frame times")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "app_qwen_masks_tab.png"))
    page.get_by_role("tab", name="Answers").click()
    expect(page.locator("#answer-info")).to_contain_text("STTS temporal patches")
    expect(page.locator("#answer-info")).to_contain_text("Each mask row is a temporal patch")
    page.screenshot(path=str(ARTIFACTS / "app_qwen_answers_tab.png"))
    page.get_by_role("tab", name="Temporal scores").click()
    expect(page.locator("#heatmap .js-plotly-plot")).to_have_count(1)
    expect(page.locator("#heatmap")).to_contain_text("s+")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "app_qwen_scores_tab.png"), full_page=True)


def test_first_run_after_start_is_not_a_warm_up_and_shows_the_reference_at_scale(browser, micro_checkpoint: Path,
                                                                                 tmp_path: Path) -> None:
    """A server of its own, so this is the first Run it serves: the server warmed both paths up before it
    took visitors, so the Speed tab reports steady-state timings (no "Warm-up run"), and below them the
    recorded GPU reference at scale with its source, apart from this server's figures."""
    from app_server import start, stop

    chromium, _shared_url = browser
    server = start(micro_checkpoint)
    page = None
    try:
        assert "warmed up" in server.log.read_text(errors="replace")
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(server.url)
        page.wait_for_selector("#run")
        clip = write_video(tmp_path / "clip.mp4", make_clip(5).frames, fps=8)
        page.locator("#video input[type=file]").set_input_files(str(clip))
        expect(page.locator("#video-info")).to_contain_text("fps")
        page.locator("#question textarea").fill(QUESTION)
        page.locator("#run").click()
        answers_for(page, 0.5)
        page.get_by_role("tab", name="Speed").click()
        info = page.locator("#speed-info")
        expect(info).to_contain_text("Time to first token (model)")
        expect(info).not_to_contain_text("Warm-up run")
        expect(page.locator("#stage-chart")).not_to_contain_text("warm-up run")
        expect(info).to_contain_text("At scale: recorded on a GPU, not measured on this server")
        expect(info).to_contain_text("docs/bench/h200-molmo2-4b-inference.json")
        expect(info).to_contain_text("NVIDIA H200")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / "app_speed_first_run.png"), full_page=True)
    finally:
        if page is not None:
            page.close()
        stop(server)
