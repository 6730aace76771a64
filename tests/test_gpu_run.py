"""The prepared GPU script (``benchmarks/gpu_run.py``) dry-runs on the CPU: pieces made by
``prepare``, reassembled and checked by ``run``, which profiles the step and trains the
budget recipe (a two-block Swin, batch 8) on a synthetic Tiny ImageNet in about a minute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_data_tiny_imagenet import make_tiny_zip

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_run.py"


def test_prepare_splits_and_run_refuses_missing_pieces(tmp_path: Path) -> None:
    arc = tmp_path / "tiny-imagenet-200.zip"
    make_tiny_zip(arc)
    subprocess.run([sys.executable, str(SCRIPT), "prepare", "--zip", str(arc), "--dest", str(tmp_path / "c"),
                    "--piece-mib", "0.004", "--python-version", "none"], check=True, capture_output=True)
    folders = sorted((tmp_path / "c").glob("carry*"))
    pieces = sorted(p for f in folders for p in f.glob("*.part*"))
    assert len(folders) == len(pieces) > 1 and b"".join(p.read_bytes() for p in pieces) == arc.read_bytes()
    res = subprocess.run([sys.executable, str(SCRIPT), "run", "--pieces", str(folders[0]), "--device", "cpu",
                          "--work", str(tmp_path / "w")], capture_output=True, text=True)
    assert res.returncode != 0 and f"1 of {len(pieces)} pieces found" in res.stderr


@pytest.mark.slow
def test_gpu_run_dry_runs_on_the_cpu(tmp_path: Path) -> None:
    arc = tmp_path / "tiny-imagenet-200.zip"
    make_tiny_zip(arc)
    subprocess.run([sys.executable, str(SCRIPT), "prepare", "--zip", str(arc), "--dest", str(tmp_path / "c"),
                    "--piece-mib", "0.004", "--python-version", "none"], check=True, capture_output=True)
    folders = [str(f) for f in sorted((tmp_path / "c").glob("carry*"))]
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, str(SCRIPT), "run", "--pieces", *folders, "--device", "cpu",
                          "--work", str(tmp_path / "w"), "--out-dir", str(out), "--total-min", "1", "--profile-s",
                          "3", "--margin-s", "10", "--cpu-model-tiny"], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads((out / "gpu_run.json").read_text())
    assert result["environment"]["device"] == "cpu" and result["profile"]["steps"] >= 10
    assert result["profile"]["host_ms_per_step"] > 0 and "graph_step" in result["profile"]["top_operators"]
    train = result["train"]
    assert train["epochs_completed"] >= 1 and train["val_top1"] is not None  # (all 100 epochs if the CPU is quiet)
    assert (out / "metrics.jsonl").is_file() and "sha256 ok" in res.stdout
    assert result["total_s"] < 75  # the 1-minute call budget, and a little for the last evaluation
