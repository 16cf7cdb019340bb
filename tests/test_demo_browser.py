"""The demo app (``hybrid`` with no APP) in a real headless Chromium: the plain request, the SSE clock and the
WebSocket echo all work from the page, as a newcomer would see them after ``make run``.

Chromium and chromedriver are Debian packages (.ci/system-deps installs them); Selenium drives them. The
screenshot is saved under tests/output/ for a human to look at.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.support import Server, wait_until

OUTPUT = Path(__file__).resolve().parent / "output"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="chromium and chromium-driver are not installed (.ci/system-deps installs them; "
                              "it needs root or sudo)"),
]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1000,700"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        try:
            driver.quit()
        except Exception:  # noqa: BLE001 - the test may have quit it already
            pass


def test_demo_page_in_headless_chromium(browser):
    from selenium.webdriver.common.by import By

    with Server("--port", "0") as srv:  # no APP argument: the built-in demo
        browser.get(f"http://127.0.0.1:{srv.port}/")
        assert browser.title == "hybrid"

        # The plain request: the page fetched /json and shows it.
        text = wait_until("the /json answer", lambda: (t := browser.find_element(By.ID, "plain").text).startswith("{")
                     and t)
        assert json.loads(text)["server"] == "hybrid"

        # The SSE clock ticks: two different times, a second apart.
        clock = lambda: browser.find_element(By.ID, "clock").text  # noqa: E731
        first = wait_until("the first clock event", lambda: re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", clock())
                      and clock())
        second = wait_until("the clock to tick", lambda: clock() != first and re.match(r"\d{4}-", clock()) and clock())
        assert second > first

        # The WebSocket echo.
        box = browser.find_element(By.ID, "message")
        box.clear()
        box.send_keys("hello from chromium")
        browser.find_element(By.CSS_SELECTOR, "#echo button").click()
        wait_until("the echo", lambda: browser.find_element(By.ID, "reply").text == "echo: hello from chromium")

        OUTPUT.mkdir(exist_ok=True)
        shot = OUTPUT / "demo-page.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
        # The page keeps its clock stream and its WebSocket open: close the browser, and the server stops cleanly.
        browser.quit()
        time.sleep(2.5)  # the clock notices the closed stream at its next ticks
        assert srv.stop() == 0, srv.output
    assert '"WebSocket /ws" 101' in srv.output or "/ws" in srv.output
