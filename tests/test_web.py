"""The web page end to end in headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium) against a running server on tiny random models: type text, generate, and check that
the audio loads and plays, the spectrogram image appears and the token grid is replayed to its
last forward pass; then a dialogue, a voice conversion with an uploaded file, and an error."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from soundstorm.serve.app import create_app
from soundstorm.text.pipeline import SpeechPipeline
from tests.live_server import LiveServer
from tests.speech_models import needs_flite, write_tiny_models

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    needs_flite,
    pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="chromium / chromium-driver missing: make system-deps"),
]
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def url(models: Path) -> Iterator[str]:
    with LiveServer(create_app(SpeechPipeline.from_folder(models))) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def generate_and_wait(browser, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    browser.execute_script("document.getElementById('audio').removeAttribute('src')")
    browser.find_element(By.ID, "generate").click()
    WebDriverWait(browser, timeout).until(
        lambda b: b.execute_script("const a = document.getElementById('audio');"
                                   "return (a.src && a.readyState >= 1) || document.getElementById('error').textContent"))
    assert browser.find_element(By.ID, "error").text == ""


def check_result(browser) -> None:  # type: ignore[no-untyped-def]
    duration = browser.execute_script("return document.getElementById('audio').duration")
    assert duration > 0.1
    played = browser.execute_async_script(
        "const done = arguments[arguments.length - 1], audio = document.getElementById('audio');"
        "audio.play().then(() => setTimeout(() => done(audio.currentTime), 300), (e) => done('failed: ' + e));")
    assert isinstance(played, (int, float)) and played > 0, played  # it plays: time advances
    WebDriverWait(browser, 10).until(lambda b: b.execute_script(
        "const i = document.getElementById('spectrogram'); return i.complete && i.naturalWidth > 0"))
    WebDriverWait(browser, 20).until(lambda b: b.find_element(By.ID, "grid").get_attribute("data-done") == "1")
    passes = browser.execute_script("return window.lastResult.passes.length")
    assert int(browser.find_element(By.ID, "grid").get_attribute("data-pass")) == passes
    assert browser.find_element(By.ID, "grid-info").text.startswith(f"pass {passes}/{passes}")
    # the grid holds colour where tokens are, not only the masked background
    lit = browser.execute_script(
        "const c = document.getElementById('grid'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] !== 34 || d[i + 1] !== 34) n++; return n")
    assert lit > 0


def test_text_to_speech_in_the_browser(browser, url: str) -> None:  # type: ignore[no-untyped-def]
    browser.get(url)
    WebDriverWait(browser, 10).until(expected_conditions.text_to_be_present_in_element((By.ID, "model-info"), "levels"))
    text = browser.find_element(By.ID, "text")
    text.clear()
    text.send_keys("Hello from the browser. This is a test.")
    browser.find_element(By.ID, "steps").send_keys("4,2,1,1")
    generate_and_wait(browser)
    check_result(browser)
    assert "forward passes" in browser.find_element(By.ID, "timing").text
    assert browser.find_element(By.ID, "download").get_attribute("href").startswith("blob:")


def test_dialogue_and_voice_conversion_in_the_browser(browser, url: str, models: Path) -> None:  # type: ignore[no-untyped-def]
    browser.get(url)
    WebDriverWait(browser, 10).until(expected_conditions.text_to_be_present_in_element((By.ID, "model-info"), "levels"))
    browser.find_element(By.CSS_SELECTOR, "[data-mode=dialogue]").click()
    Select(browser.find_element(By.ID, "voice-name-2")).select_by_value("awb")
    browser.find_element(By.ID, "steps").send_keys("3,1")  # the first two levels only
    generate_and_wait(browser)
    check_result(browser)
    assert browser.execute_script("return window.lastResult.num_quantizers") == 2
    assert browser.execute_script("return document.getElementById('grid').height") == 2 * 12  # two rows of cells

    browser.find_element(By.CSS_SELECTOR, "[data-mode=resynth]").click()
    browser.find_element(By.ID, "source-file").send_keys(str(models / "voices" / "awb.wav"))
    generate_and_wait(browser)
    check_result(browser)


def test_an_error_is_shown_on_the_page(browser, url: str) -> None:  # type: ignore[no-untyped-def]
    browser.get(url)
    WebDriverWait(browser, 10).until(expected_conditions.text_to_be_present_in_element((By.ID, "model-info"), "levels"))
    browser.find_element(By.ID, "steps").send_keys("1,2,1,1,1")
    browser.find_element(By.ID, "generate").click()
    WebDriverWait(browser, 30).until(lambda b: "steps must list 1 to 4" in b.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text.startswith("422")
    # The voice EQ field reaches the server: out of range, its error comes back.
    browser.find_element(By.ID, "steps").clear()
    assert browser.find_element(By.ID, "spectrum-match").get_attribute("placeholder") == "0"  # /api/health's default
    browser.find_element(By.ID, "spectrum-match").send_keys("2")
    browser.find_element(By.ID, "generate").click()
    WebDriverWait(browser, 30).until(lambda b: "spectrum_match" in b.find_element(By.ID, "error").text)
