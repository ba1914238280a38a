"""The web page of trajvlm serve in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium).

Load the page, upload a video, ask, watch the answer stream in, ask again (multi-turn), and keep a screenshot
whose answer area is not blank. Switch video while an answer streams (the next question carries the new video), see
a media-root video's preview, and recover from an error. Skips with the reason when Chromium or chromedriver is not installed
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
    write_clip(root / "other.mp4", seed=8)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    app = make_app(load_model(model_dir, device="cpu"), root)
    with live_server(app) as url:
        yield url, root, app


def _text(driver, css: str) -> str:
    return driver.find_element("css selector", css).text


def _wait(driver, condition, what: str, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d), message=f"page never showed {what}")


def test_upload_ask_stream_and_multi_turn(browser, page_server, tmp_path):
    from PIL import Image

    url, root, _ = page_server
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

    url, _, _ = page_server
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


RECORD_REQUESTS = """
window.sentQuestions = [];
const realFetch = window.fetch;
window.fetch = (url, options) => {
  if (String(url).includes("/v1/chat/completions")) window.sentQuestions.push(JSON.parse(options.body));
  return realFetch(url, options);
};
"""


def _choose(driver, name: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("css selector", "#media-select")).select_by_visible_text(name)
    _wait(driver, lambda d: f"video: {name}" in _text(d, "#video-status"), f"the chosen video {name}")


def _ask(driver, question: str, max_tokens: int) -> None:
    box = driver.find_element("css selector", "#max-tokens")
    box.clear()
    box.send_keys(str(max_tokens))
    driver.find_element("css selector", "#question").send_keys(question)
    _wait(driver, lambda d: d.find_element("css selector", "#ask").is_enabled(), "the Ask button enabled")
    driver.find_element("css selector", "#ask").click()


def test_switching_video_mid_stream_sends_the_new_video(browser, page_server):
    url, root, app = page_server
    engine = app.state.engine
    cancelled = engine.stats()["cancelled"]
    browser.get(url)
    _wait(browser, lambda d: "other.mp4" in _text(d, "#media-select"), "the media root's videos")
    browser.execute_script(RECORD_REQUESTS)
    _choose(browser, "clip.mp4")
    _ask(browser, "Tell me everything.", 1000)  # seconds of streaming on the tiny model
    _wait(browser, lambda d: _text(d, "#answer-0 .text").strip(), "the first streamed text", timeout=60)
    _choose(browser, "other.mp4")  # while the answer streams
    assert browser.find_elements("css selector", ".turn") == []
    _ask(browser, "And this one?", 6)
    _wait(browser, lambda d: _text(d, "#status").startswith("done"), "the answer about the new video", timeout=60)
    sent = browser.execute_script("return window.sentQuestions;")
    assert len(sent) == 2
    last = sent[-1]["messages"]
    assert len(last) == 1 and last[0]["content"][0]["video_url"]["url"] == (root / "other.mp4").resolve().as_uri()
    assert [t.get_attribute("class") for t in browser.find_elements("css selector", ".turn")] == [
        "turn user",
        "turn assistant",
    ]
    assert "And this one?" in _text(browser, "#conversation")
    assert "Tell me everything." not in _text(browser, "#conversation")  # the old conversation did not come back
    assert engine.stats()["cancelled"] == cancelled + 1  # the old answer's generation was stopped, not finished


def test_media_root_video_has_a_preview(browser, page_server):
    import httpx

    url, root, _ = page_server
    browser.get(url)
    _wait(browser, lambda d: "clip.mp4" in _text(d, "#media-select"), "the media root's videos")
    _choose(browser, "clip.mp4")
    preview = browser.find_element("css selector", "#preview")
    assert preview.get_attribute("hidden") is None
    src = preview.get_attribute("src")
    assert src == f"{url}/v1/media/clip.mp4"
    assert httpx.get(src).content == (root / "clip.mp4").read_bytes()  # what the video element loads


def test_an_error_puts_the_question_back(browser, page_server):
    url, _, _ = page_server
    browser.get(url)
    _wait(browser, lambda d: "broken.mp4" in _text(d, "#media-select"), "the media root's videos")
    _choose(browser, "broken.mp4")
    _ask(browser, "What is in it?", 6)
    _wait(browser, lambda d: "cannot decode the video" in _text(d, "#status"), "the decoding error")
    assert "error" in browser.find_element("css selector", "#status").get_attribute("class")
    assert browser.find_elements("css selector", ".turn") == []  # no question left without its answer
    assert browser.find_element("css selector", "#question").get_attribute("value") == "What is in it?"
    _choose(browser, "clip.mp4")
    browser.find_element("css selector", "#ask").click()  # the question is still in the box: ask it again
    _wait(browser, lambda d: _text(d, "#status").startswith("done"), "the answer after the error")
    assert _text(browser, "#answer-0 .text").strip()
