"""Headless Chromium for the browser tests (the demo page of ``swinlab serve``,
``report.html``): Debian's ``chromium`` + ``chromium-driver`` driven by selenium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def chromium() -> tuple[str, str] | None:
    """``(browser, chromedriver)`` paths, or None when either is not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


#: skip marker of the tests that need the browser.
needs_chromium = pytest.mark.skipif(chromium() is None, reason="chromium and chromedriver are not installed "
                                    "(apt-get install chromium chromium-driver; .ci/run installs them)")


@contextmanager
def headless_chrome(width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A selenium Chrome driver on headless Chromium with a ``width x height`` window (quit at the end)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    # chromedriver in a session of its own: the signals its browser processes send their group at
    # shutdown must not reach the test process (a full suite run died of SIGSEGV in driver.quit())
    service = Service(driver_path, popen_kw={"start_new_session": True})
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
