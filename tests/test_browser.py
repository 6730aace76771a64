"""The browser tests: ``report.html`` (``swinlab report``) and the demo page of
``swinlab serve``, each opened in headless Chromium (Debian's ``chromium`` +
``chromium-driver``, driven by selenium from a child process: :mod:`browser_helpers`).

They live in this file of their own so that they run early in a full suite run: run after
the OpenVINO / ONNX Runtime tests (test_runtimes.py, test_serve.py), the demo page's test
took the whole pytest process down with a SIGSEGV five runs out of five (never in smaller
runs; not diagnosed: the dump showed the test process in a system call, no fault of its own).
"""

from __future__ import annotations

import shutil

import httpx
import pytest
from PIL import Image

from browser_helpers import browser_check, needs_chromium
from test_report import SECTIONS, short_names, tiny_run  # noqa: F401 - fixtures
from test_serve import run_dir, server, tiny_zip, val_images  # noqa: F401 - fixtures


@pytest.mark.slow
@needs_chromium
def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    shot = tmp_path / "swinlab_report.png"
    seen = browser_check("check_report", url=(tiny_run["run"] / "report.html").resolve().as_uri(), shot=str(shot))
    widths, sections = seen["widths"], seen["sections"]
    assert len(widths) >= 34 and min(widths) > 0
    assert sections == list(SECTIONS.values())
    assert Image.open(shot).size[0] == 1280
    try:
        shutil.copyfile(shot, "/tmp/swinlab_report.png")  # for a person to look at
    except OSError:
        pass


@needs_chromium
def test_demo_page_in_headless_chromium(server, val_images, tmp_path):
    image = tmp_path / "val_2.JPEG"
    image.write_bytes(val_images["val_2.JPEG"])
    expected = httpx.post(f"{server}/predict", content=image.read_bytes(), timeout=60).json()["results"][0]["predictions"]
    shot = tmp_path / "swinlab_demo.png"
    seen = browser_check("check_demo", url=server, image=str(image), shot=str(shot))
    assert seen["items"] == [f"{p['rank']}. {p['class']}" for p in expected]
    assert seen["attention_shown"]
    assert seen["preview_width"] == 64
    assert Image.open(shot).size[0] > 0
    try:
        shutil.copyfile(shot, "/tmp/swinlab_demo.png")  # for a person to look at
    except OSError:
        pass
