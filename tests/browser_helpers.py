"""Headless Chromium for the browser tests (the demo page of ``swinlab serve``,
``report.html``): Debian's ``chromium`` + ``chromium-driver`` driven by selenium.

The browser is driven from a child Python process of its own (:func:`browser_check`
runs this file as a script), not from the test process: in full suite runs the test
process died of SIGSEGV inside selenium's ``driver.quit()`` (while it sent chromedriver
SIGTERM) after the OpenVINO / ONNX Runtime / Inductor tests had run in it; a fresh
interpreter that only runs selenium does not carry their state. The check functions
below return plain data that the tests assert on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path, popen_kw={"start_new_session": True}), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def browser_check(name: str, **kwargs: Any) -> dict[str, Any]:
    """Run the check ``name`` (a function of this module) with ``kwargs`` in a child
    Python process and return what it returned (JSON); the test fails with the child's
    output when it does not finish cleanly within 240 s."""
    pytest.importorskip("selenium")
    cmd = [sys.executable, str(Path(__file__).resolve()), name, json.dumps(kwargs)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, start_new_session=True)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"browser check {name} did not finish in 240 s: {e.stdout}{e.stderr}")
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.fail(f"browser check {name} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_report(url: str, shot: str, width: int = 1280, height: int = 2000) -> dict[str, Any]:
    """Open ``url`` (report.html), wait for every image; the images' natural widths, the
    section headings and a screenshot at ``shot``."""
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chrome(width, height) as driver:
        driver.get(url)
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && [...document.images].every(i => i.complete)"))
        widths = driver.execute_script("return [...document.images].map(i => i.naturalWidth)")
        sections = driver.execute_script("return [...document.querySelectorAll('section h2')].map(h => h.innerText)")
        driver.save_screenshot(shot)
    return {"widths": widths, "sections": sections}


def check_demo(url: str, image: str, shot: str) -> dict[str, Any]:
    """Open the demo page at ``url``, upload ``image``, wait for the top-5 list and the
    attention overlay; the listed classes, the overlay's visibility, the preview's
    natural width and a screenshot at ``shot``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chrome() as driver:
        driver.get(url + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.ID, "block-select").get_attribute("value") == "5")
        driver.find_element(By.ID, "file-input").send_keys(image)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#top5 li")) == 5)
        wait.until(lambda d: d.execute_script(
            "const i = document.getElementById('attention-img'); return i.complete && i.naturalWidth > 0;"))
        items = [i.text for i in driver.find_elements(By.CSS_SELECTOR, "#top5 li .cls")]
        shown = driver.find_element(By.ID, "attention-img").is_displayed()
        preview = driver.execute_script("return document.getElementById('preview').naturalWidth")
        driver.save_screenshot(shot)
    return {"items": items, "attention_shown": shown, "preview_width": preview}


if __name__ == "__main__":
    check = {"check_report": check_report, "check_demo": check_demo}[sys.argv[1]]
    print(json.dumps(check(**json.loads(sys.argv[2]))))
