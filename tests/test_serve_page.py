"""The page at / in a real headless browser (Debian's chromium, driven through chromedriver by selenium): type a
prompt, watch the answer stream in, each token coloured by its source, with the statistics and the speedup.

Opt-in: `pytest --run-browser tests/test_serve_page.py` (needs `apt-get install -y chromium chromium-driver`).
`--serve-url URL` tests a running `biglittle serve` instead of one on the tiny models; `--screenshot PATH` keeps
a picture of the page (docs/serve.png was taken so).
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager, nullcontext

import pytest
from serving import CHAT_TEMPLATE, running_server

from biglittle import load_pair
from biglittle.serve import create_app

pytestmark = pytest.mark.browser
TINY_PROMPT = "the old man wants some bread . and"
REAL_PROMPT = "Write a Python function that returns the n-th Fibonacci number."


@contextmanager
def tiny_server(tiny_models):
    pair = load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"])
    pair.tokenizer.chat_template = CHAT_TEMPLATE
    pair.target.name, pair.draft.name = "tiny Llama (tests)", "tiny GPT-2 (tests)"  # shown on the page
    pair.generate("the cat", method="ar")  # warm up: the page's timings then leave out one-off start-up costs
    pair.generate("the cat")
    with running_server(create_app(pair, model_name="tiny")) as url:
        yield url, pair


@contextmanager
def headless_chromium(profile_dir):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("Chromium is not installed: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",  # this machine reaches no outside host
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1100,760",
        f"--user-data-dir={profile_dir}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_streams_coloured_tokens_with_statistics(request, tiny_models, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = request.config.getoption("--serve-url")
    server = nullcontext((url.rstrip("/"), None)) if url else tiny_server(tiny_models)
    with server as (base, pair), headless_chromium(tmp_path / "profile") as browser:
        browser.get(base + "/")
        wait = WebDriverWait(browser, 600 if url else 60)
        wait.until(lambda b: b.find_element(By.ID, "model").text.startswith("model "))
        prompt = browser.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys(REAL_PROMPT if url else TINY_PROMPT)
        browser.find_element(By.ID, "compare").click()
        browser.find_element(By.ID, "send").click()
        wait.until(lambda b: " tokens in " in b.find_element(By.ID, "status").text)

        spans = browser.find_elements(By.CSS_SELECTOR, "#output span")
        written = [span for span in spans if span.get_attribute("class") != "turned-down"]
        sources = {span.get_attribute("class") for span in written}
        assert written and sources <= {"draft", "target", "unverified"} and "target" in sources
        assert browser.find_element(By.ID, "stat-speedup").text.endswith("×")
        assert float(browser.find_element(By.ID, "stat-rate").text) > 0
        if pair is not None:  # the page shows exactly the server's greedy answer
            expected = pair.generate(pair.encode_messages([{"role": "user", "content": TINY_PROMPT}]))
            assert "".join(span.get_attribute("textContent") for span in written) == expected.text
            assert int(browser.find_element(By.ID, "stat-tokens").text) == len(expected.token_ids)
            assert ("draft" in sources) == (expected.stats.accepted > 0)
            turned_down = [span for span in spans if span.get_attribute("class") == "turned-down"]
            assert bool(turned_down) == (expected.stats.discarded > 0)
        screenshot = request.config.getoption("--screenshot")
        if screenshot:
            browser.save_screenshot(screenshot)
