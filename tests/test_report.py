"""The run report (``report.html``), the most-confused pairs of ``swinlab
evaluate`` and the progress output of ``swinlab train`` in a file and on a terminal.

The report tests train a tiny real run -- the micro Swin on the first 12
Tiny ImageNet classes of ``../shared`` for 4 batches -- whose end writes the
report (evaluating first), evaluate it again with flip averaging, and
rebuild the page from that evaluation with ``swinlab report``.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import torch
from PIL import Image

from runs_helpers import make_squares, tiny_imagenet_classes, tiny_recipe
from swinlab.inference.reports import (most_confused_pairs, ranked_classes, read_confusion_csv, read_predictions_csv,
                                      unique_names)
from swinlab.io.progress import bars_shown
from swinlab.report.page import SECTIONS

N_CLASSES = 12


def _swinlab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "swinlab", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def short_names(tiny_imagenet_zip) -> list[str]:
    """The first synonym of the words.txt names of the first N_CLASSES wnids."""
    return tiny_imagenet_classes(tiny_imagenet_zip, N_CLASSES)[1]


@pytest.fixture(scope="module")
def tiny_run(tiny_imagenet_zip, tmp_path_factory) -> dict:
    """A trained tiny run: train (writes the report), evaluate --tta-hflip, report; their outputs."""
    root = tmp_path_factory.mktemp("report")
    cfg = {"model": "swin_micro_patch4_window4_64", "data": "tiny-imagenet", "data_root": str(tiny_imagenet_zip),
           "num_classes": N_CLASSES, "epochs": 1, "batch_size": 32, "max_train_batches": 4, "lr": 2e-3,
           "warmup_epochs": 0, "threads": 2, "tensorboard": False, "progress": False, "log_every": 1,
           "aug": {"img_size": 64, "random_resized_crop": False, "eval_crop_ratio": 1.0}}
    (root / "recipe.json").write_text(json.dumps(cfg))
    run = root / "run"
    train = _swinlab("train", "--config", str(root / "recipe.json"), "--out", str(run))
    after_train = (run / "report.html").is_file()
    evaluate = _swinlab("evaluate", str(run), "--tta-hflip", "--show", "4", "--no-progress")
    report = _swinlab("report", str(run), "--no-progress")
    return {"run": run, "train": train, "evaluate": evaluate, "report": report, "after_train": after_train,
            "html": (run / "report.html").read_text(encoding="utf-8")}


def _table_rows(html: str, cls: str) -> list[list[str]]:
    """The text of the cells of every row (header left out) of the tables ``<table class=cls>``."""
    rows = []
    for table in re.findall(rf'<table class="{cls}">(.*?)</table>', html, flags=re.S):
        for tr in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)[1:]:
            cells = re.findall(r"<td[^>]*>(.*?)</td>", re.sub(r'<div class="thumbs">.*?</div>', "", tr, flags=re.S))
            rows.append(cells)
    return rows


@pytest.mark.slow
def test_report_has_every_section_names_and_inlined_images(tiny_run, short_names):
    html = tiny_run["html"]
    assert tiny_run["after_train"], "train did not write report.html"
    assert "report: " in tiny_run["report"].stdout and "evaluating" not in tiny_run["report"].stderr
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html, sid
    for cls, name_cols in (("classes", (0,)), ("pairs", (0, 1))):
        rows = _table_rows(html, cls)
        assert rows, f"no rows in the {cls} table"
        for cells in rows:
            for c in name_cols:
                assert cells[c] in short_names, f"{cls} table: {cells[c]!r} is not a class name"
    assert len(_table_rows(html, "classes")) == 2 * min(10, N_CLASSES // 2)
    srcs = re.findall(r'<img src="([^"]*)"', html)
    assert len(srcs) >= 2 + 2 * 16 and all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))
                                           for s in srcs)
    text = re.sub(r'data:image/[a-z]+;base64,[A-Za-z0-9+/=]+', "", html)
    assert not re.search(r"https?:|src=\"//|href=\"//|url\(", text)
    assert "evaluation, flip averaging" in text and "evaluation, no flip averaging" in text
    assert f"ISA {torch.backends.cpu.get_cpu_capability()}" in text
    for name in ("best.pt", "config.json", "eval/metrics.json", "eval/predictions.csv"):
        assert f'href="{name}"' in text, name


@pytest.mark.slow
def test_confused_pairs_are_the_confusion_matrix_entries(tiny_run, short_names):
    ev = tiny_run["run"] / "eval"
    metrics = json.loads((ev / "metrics.json").read_text())
    matrix = read_confusion_csv(ev / "confusion_matrix.csv")
    rows = read_predictions_csv(ev / "predictions.csv")
    counted = torch.zeros_like(matrix)
    for r in rows:
        counted[r["label"], r["predicted"]] += 1
    assert torch.equal(counted, matrix) and int(matrix.sum()) == metrics["num_images"] == N_CLASSES * 50
    pairs = metrics["most_confused"]
    off = matrix.clone().fill_diagonal_(0)
    assert [p["count"] for p in pairs] == sorted(off.flatten().tolist(), reverse=True)[:len(pairs)]
    for p in pairs:
        assert p["count"] == int(matrix[p["true"], p["predicted"]]) and p["true"] != p["predicted"]
        assert p["rate"] == pytest.approx(100 * p["count"] / int(matrix[p["true"]].sum()))
        assert p["true_name"].split(",")[0].strip() == short_names[p["true"]]
    by_name = metrics["per_class_accuracy"]
    assert [v["count"] for v in by_name.values()] == matrix.sum(dim=1).tolist()
    assert list(by_name)[0].split(",")[0].strip() == short_names[0]
    out = tiny_run["evaluate"].stdout
    assert out.index("top-5:") < out.index("most-confused pairs")
    printed = re.findall(r"^  (.+?) +-> (.+): (\d+) \(", out, flags=re.M)
    assert [(a.strip(), b, int(n)) for a, b, n in printed] == [
        (short_names[p["true"]], short_names[p["predicted"]], p["count"]) for p in pairs]


def test_most_confused_pairs_of_a_known_matrix():
    m = torch.tensor([[5, 3, 0], [1, 6, 4], [0, 4, 2]])
    pairs = most_confused_pairs(m, ["a", "b", "c"], k=3)
    assert [(p["true_name"], p["predicted_name"], p["count"]) for p in pairs] == [("b", "c", 4), ("c", "b", 4),
                                                                                 ("a", "b", 3)]
    assert pairs[0]["rate"] == pytest.approx(100 * 4 / 11)
    assert most_confused_pairs(torch.eye(3, dtype=torch.int64), ["a", "b", "c"]) == []


def test_best_worst_classes_and_unique_names():
    best, worst = ranked_classes([50.0, float("nan"), 90.0, 10.0, 50.0], k=10)
    assert best == [2, 0] and worst == [3, 0]  # 4 classes with images: two each, ties by index
    assert unique_names(["crane", "cat", "crane"], ["n1", "n2", "n3"]) == ["crane (n1)", "cat", "crane (n3)"]


# ------------------------------------------------------------------ progress output
def _train_cmd(tmp_path: Path, *extra: str) -> list[str]:
    data = make_squares(tmp_path / "squares")
    recipe = tiny_recipe(tmp_path / "recipe.json", epochs=1, progress=True, log_every=1, progress_interval_s=0,
                         ema_decay=None, report=True)
    return [sys.executable, "-m", "swinlab", "train", "--config", str(recipe), "--data-root", str(data),
            "--out", str(tmp_path / "run"), *extra]


_STEP_LINE = re.compile(r"^epoch 1/1 step \d+ \(\d+/12 batches\): loss \d+\.\d+ lr \S+ \| \d+ img/s \| \d+s$", re.M)


def test_output_in_a_file_has_lines_not_bars_and_a_folder_report(tmp_path):
    proc = subprocess.run(_train_cmd(tmp_path), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "\r" not in out
    assert len(_STEP_LINE.findall(out)) == 12  # 48 images / batch 4, a line at every step (interval 0)
    assert re.search(r"^epoch 1/1: train loss .* top-1 .*$", out, flags=re.M)
    assert "most-confused pairs" in out and "report: " in out
    html = (tmp_path / "run" / "report.html").read_text()
    assert {c for row in _table_rows(html, "classes") for c in row[:1]} <= {"k0", "k1", "k2"}


def test_no_progress_in_a_file_gives_only_the_epoch_lines(tmp_path):
    proc = subprocess.run(_train_cmd(tmp_path, "--no-progress", "--no-report"), capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "\r" not in out and not _STEP_LINE.search(out) and "epoch 1/1: train loss" in out


def test_on_a_terminal_the_bars_are_drawn(tmp_path):
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    proc = subprocess.Popen(_train_cmd(tmp_path, "--no-report"), stdout=secondary, stderr=secondary,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.wait(timeout=300) == 0
    out = b"".join(chunks).decode(errors="replace")
    assert "\r" in out and re.search(r"epoch 1/1: +\d+%\|", out)
    assert not _STEP_LINE.search(out.replace("\r\n", "\n"))


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_bars_only_on_a_terminal():
    assert bars_shown(True, _Stream(True)) and not bars_shown(True, _Stream(False))
    assert not bars_shown(False, _Stream(True))


def test_report_of_a_cifar_run_names_its_classes(tmp_path):
    from test_data_cifar import C10, make_cifar10

    make_cifar10(tmp_path / "cifar-10-python.tar.gz")
    recipe = tiny_recipe(tmp_path / "recipe.json", data="cifar10", data_root=str(tmp_path / "cifar-10-python.tar.gz"),
                         epochs=1, ema_decay=None, report=True)
    _swinlab("train", "--config", str(recipe), "--out", str(tmp_path / "run"))
    html = (tmp_path / "run" / "report.html").read_text()
    names = {c for row in _table_rows(html, "classes") for c in row[:1]}
    assert names and names <= {c.decode() for c in C10}
    assert all(s.startswith("data:image/") for s in re.findall(r'<img src="([^"]*)"', html))
