"""The playground in headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium): a message
typed, the streamed answer read back from the page and checked against greedy decoding, the attention heatmap
drawn, screenshots saved in the test's tmp dir.

Without the browser the test skips with the reason on a user's machine; under CI (env CI set) it fails, since
scripts/setup.sh installs both there."""

from __future__ import annotations

import os
import shutil

import pytest
from serve_helpers import answer_alone

from transformers_zoo.tokenizers import chat


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths; skipped (failed under CI) when either is missing."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        browser = None
    if browser and driver:
        return browser, driver
    reason = ("headless browser test needs chromium, chromedriver and selenium (apt-get install chromium "
              "chromium-driver; pip install selenium): not found")
    if os.environ.get("CI"):
        pytest.fail(reason + " under CI, where scripts/setup.sh installs them")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    path, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = path
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1100,820"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


def test_playground_chat_streams_the_answer_and_draws_attention(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server.url + "/")
    key = browser.find_element(By.ID, "api-key")
    key.send_keys("test-key")
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)
    wait.until(lambda b: Select(b.find_element(By.ID, "chat-model")).first_selected_option.get_attribute("value"))
    browser.find_element(By.ID, "chat-input").send_keys("hello, cat?")
    browser.find_element(By.ID, "chat-send").click()
    answer = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".msg.assistant[data-done='true']")))
    served = server.app.state.models["lm"]
    ids = chat.encode_chat(served.tokenizer, [{"role": "user", "content": "hello, cat?"}])
    want, _ = answer_alone(served, ids, 64, chat.stop_ids(served.tokenizer))
    assert answer.get_attribute("textContent") == want and want.strip() and answer.is_displayed()
    assert browser.find_element(By.ID, "status").text == ""
    browser.save_screenshot(str(tmp_path / "chat.png"))

    # a model without a chat template continues the text typed (/v1/completions, streamed too)
    Select(browser.find_element(By.ID, "chat-model")).select_by_value("plain")
    browser.find_element(By.ID, "chat-input").send_keys("the cat")
    browser.find_element(By.ID, "chat-send").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".msg.assistant[data-done='true']")) == 2)
    plain = server.app.state.models["plain"]
    want, _ = answer_alone(plain, plain.tokenizer.encode_prompt("the cat"), 64, {plain.tokenizer.eos_id})
    continued = browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")[1].get_attribute("textContent")
    assert continued == want and want

    browser.find_element(By.CSS_SELECTOR, "#tabs button[data-tab='attention']").click()
    Select(browser.find_element(By.CSS_SELECTOR, "#tab-attention select.model")).select_by_value("mt")
    browser.find_element(By.ID, "attention-input").send_keys("the cat sat")
    browser.find_element(By.CSS_SELECTOR, "#attention-form button").click()
    wait.until(lambda b: len(Select(b.find_element(By.ID, "attention-map")).options) == 3)
    Select(browser.find_element(By.ID, "attention-head")).select_by_index(2)
    width = browser.execute_script("return document.getElementById('attention-canvas').width")
    assert width > len("the cat sat") * 20  # a cell per source token, plus labels
    browser.save_screenshot(str(tmp_path / "attention.png"))
    for name in ("chat.png", "attention.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
