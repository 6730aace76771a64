"""``swinlab train`` / ``swinlab models`` / ``python -m swinlab`` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import swinlab
from swinlab.cli.main import main
from swinlab.weights import save_pretrained


def _squares(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for split, n in (("train", 8), ("val", 4)):
        for c, colour in enumerate(((230, 30, 30), (30, 30, 230))):
            d = root / split / f"k{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 50, (32, 32, 3)).astype(np.uint8)
                img[8:24, 8:24] = colour
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def test_python_m_swinlab_train_help() -> None:
    out = subprocess.run([sys.executable, "-m", "swinlab", "train", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in ("--config", "--resume", "--time-budget-min", "--set KEY=VALUE", "--amp", "--export",
                 "--grad-checkpointing"):
        assert flag in out.stdout


def test_tiny_cli_train_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _squares(tmp_path / "data")
    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps({
        "model": "swin_micro_patch4_window4_64",
        "model_overrides": {"img_size": 32, "embed_dim": 16, "depths": [2, 2], "num_heads": [1, 2],
                            "window_size": 4},
        "data": "folder", "load_size": 32, "aug": {"img_size": 32},
        "epochs": 5, "batch_size": 4, "lr": 1e-3, "tensorboard": False,
    }))
    out = tmp_path / "runs" / "tiny"
    rc = main(["train", "--config", str(recipe), "--data-root", str(data), "--epochs", "2", "--out", str(out),
               "--no-progress", "--threads", "1", "--set", "aug.hflip=0.0", "--set", "warmup_epochs=0.5"])
    text = capsys.readouterr().out
    assert rc == 0
    assert f"run dir: {out}" in text and "val top-1:" in text and "top-5:" in text
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["epochs"] == 2 and cfg["aug"]["hflip"] == 0.0 and cfg["warmup_epochs"] == 0.5
    assert (out / "best.pt").is_file() and (out / "curves.png").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert "most-confused pairs" in text and (out / "report.html").is_file()  # the end of train: evaluate + page

    # resume with the checkpoint's own config, extending the run by one epoch
    rc = main(["train", "--resume", str(out), "--epochs", "3", "--no-progress"])
    assert rc == 0
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_cli_reports_bad_keys_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["train", "--set", "learning_rat=0.1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("swinlab train: error:") and "unknown key 'learning_rat'" in err
    rc = main(["train", "--config", "no_such_recipe_xyz"])
    assert rc == 2 and "no_such_recipe_xyz" in capsys.readouterr().err


def test_models_lists_zoo_with_params(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "swin_micro*"]) == 0
    text = capsys.readouterr().out
    n = sum(p.numel() for p in swinlab.create_model("swin_micro_patch4_window4_64").parameters())
    assert "swin_micro_patch4_window4_64" in text and f"{n / 1e6:.2f}M" in text
    assert "swin_tiny" not in text
    assert main(["models", "nothing_like_this*"]) == 1


def test_finetune_swinv2_recipe_loads_a_smaller_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The finetune_swinv2_192to256 recipe on a tiny V2: weights saved at img 64 / window 4 load into
    the model built at img 128 / window 8 with pretrained_window_sizes 4 (buffers dropped, the bias
    MLP taken as it is, the 5-class head re-initialised for 2 classes), and 2 steps train."""
    tiny = dict(embed_dim=16, depths=[1, 1], num_heads=[1, 2])
    torch.manual_seed(3)
    source = swinlab.create_model("swinv2_tiny_window8_256", num_classes=5, img_size=64, window_size=4, **tiny)
    with torch.no_grad():  # no zeros or ones for a loading mistake to hide behind
        for p in source.parameters():
            p.add_(0.1 * torch.randn_like(p))
    save_pretrained(source, tmp_path / "w4")
    data = _squares(tmp_path / "data")
    out = tmp_path / "ft"
    overrides = {**tiny, "window_size": 8, "pretrained_window_sizes": 4}
    rc = main(["train", "--config", "finetune_swinv2_192to256", "--pretrained", str(tmp_path / "w4"),
               "--data-root", str(data), "--out", str(out), "--set", "aug.img_size=128",
               "--set", f"model_overrides={json.dumps(overrides)}", "--epochs", "1", "--batch-size", "8",
               "--max-train-batches", "2", "--max-val-batches", "1", "--warmup-epochs", "0", "--amp", "none",
               "--threads", "1", "--no-progress", "--no-report", "--no-tensorboard", "--no-plots"])
    captured = capsys.readouterr()
    log = captured.err  # the run's announcements
    assert rc == 0, log
    assert "pretrained weights: loaded" in log and "re-initialised: head.weight, head.bias" in log, log
    assert "val top-1:" in captured.out
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["step"] == 2 and saved["model_kwargs"]["window_size"] == 8
    assert saved["model_kwargs"]["pretrained_window_sizes"] == 4 and saved["model_kwargs"]["img_size"] == 128
    # the lr is 2e-5 * 8 / 512: two steps leave the loaded bias MLP next to the file's, far from a fresh one
    fresh = swinlab.create_model("swinv2_tiny_window8_256", num_classes=2, img_size=128, window_size=8, **tiny)
    cpb = [k for k in source.state_dict() if ".cpb_mlp." in k]
    assert len(cpb) == 2 * 3  # 2 blocks: the first linear layer with its bias, the second without
    for k in cpb:
        want = source.state_dict()[k]
        assert (saved["model"][k] - want).abs().max() < 1e-4, k
        assert (fresh.state_dict()[k] - want).abs().max() > 1e-2, k
