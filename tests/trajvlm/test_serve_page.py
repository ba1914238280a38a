"""The web page of trajvlm serve in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium).

Load the page, upload a video, ask, watch the answer stream in, ask again (multi-turn), and keep a screenshot
whose answer area is not blank. Skips with the reason when Chromium or chromedriver is not installed
(CI installs them with apt-get; no browser is ever downloaded at run time).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server needs fastapi: pip install 'trajvlm[serve]'")
pytest.importorskip("selenium", reason="the page tests need selenium: pip install 'trajvlm[dev]'")

from tests.trajvlm.test_serve import NAME, live_server, make_app, saved_tiny_model, write_clip  # noqa: E402
from trajvlm.inference import load_model  # noqa: E402

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if path is None]
    if missing:
        pytest.skip(
            f"headless browser tests need {' and '.join(missing)} on PATH, not found "
            "(Debian: apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page_server(tiny_base_path, tmp_path_factory):
    model_dir = saved_tiny_model(tiny_base_path, tmp_path_factory.mktemp("page_model"))
    root = tmp_path_factory.mktemp("page_media")
    write_clip(root / "clip.mp4")
    with live_server(make_app(load_model(model_dir, device="cpu"), root)) as url:
        yield url, root


def _text(driver, css: str) -> str:
    return driver.find_element("css selector", css).text


def _wait(driver, condition, what: str, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d), message=f"page never showed {what}")


def test_upload_ask_stream_and_multi_turn(browser, page_server, tmp_path):
    from PIL import Image

    url, root = page_server
    browser.get(url)
    _wait(browser, lambda d: NAME in _text(d, "#model-info"), "the model info")
    _wait(browser, lambda d: "clip.mp4" in _text(d, "#media-select"), "the media root's videos")

    browser.find_element("css selector", "#file-input").send_keys(str(root / "clip.mp4"))
    _wait(browser, lambda d: "uploaded" in _text(d, "#video-status"), "the uploaded video")
    _wait(browser, lambda d: "trajectories over 4 frames" in _text(d, "#overlay-status"), "the trajectory overlay")
    assert browser.find_element("css selector", "#overlay").get_attribute("src").startswith("data:image/gif")

    browser.find_element("css selector", "#question").send_keys("What happens in the video?")
    browser.find_element("css selector", "#ask").click()
    _wait(browser, lambda d: _text(d, "#status").startswith("done"), "the end of the answer")
    answer = _text(browser, "#answer-0 .text")
    assert answer.strip()
    meta = browser.find_element("css selector", "#answer-0 .meta")
    assert int(meta.get_attribute("data-visual-tokens")) > 0 and "visual tokens (4 frames)" in meta.text

    browser.find_element("css selector", "#question").send_keys("And then?")
    browser.find_element("css selector", "#ask").click()
    _wait(
        browser,
        lambda d: (
            len(d.find_elements("css selector", ".turn.assistant")) == 2 and _text(d, "#status").startswith("done")
        ),
        "the second answer",
    )
    assert _text(browser, "#answer-1 .text").strip()

    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    keep = os.environ.get("TRAJVLM_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "serve_page.png")
    area = Image.open(io.BytesIO(browser.find_element("css selector", "#conversation").screenshot_as_png))
    extrema = area.convert("L").getextrema()
    assert extrema[1] - extrema[0] > 100  # text drawn on the answer area, not a blank box


def test_choose_from_media_root_and_reset(browser, page_server):
    from selenium.webdriver.support.ui import Select

    url, _ = page_server
    browser.get(url)
    _wait(browser, lambda d: "clip.mp4" in _text(d, "#media-select"), "the media root's videos")
    Select(browser.find_element("css selector", "#media-select")).select_by_visible_text("clip.mp4")
    _wait(browser, lambda d: "video: clip.mp4" in _text(d, "#video-status"), "the chosen video")
    browser.find_element("css selector", "#question").send_keys("Describe the video.")
    browser.find_element("css selector", "#ask").click()
    _wait(browser, lambda d: _text(d, "#status").startswith("done"), "the answer")
    assert _text(browser, "#answer-0 .text").strip()
    browser.find_element("css selector", "#reset").click()
    assert browser.find_elements("css selector", ".turn") == []
