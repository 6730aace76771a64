"""Helpers of the run-integrity and DDP tests: a tiny image-folder data set,
a deterministic tiny recipe, subprocess runs through ``integrity_driver.py``
and comparisons of run folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DRIVER = Path(__file__).with_name("integrity_driver.py")
TIMING = ("images_per_s", "epoch_time_s", "time_s")


def make_squares(root: Path, n_train: int = 16, n_val: int = 6) -> Path:
    """Three classes of coloured squares on noise (train/val folders)."""
    rng = np.random.default_rng(1)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, colour in enumerate(((230, 30, 30), (30, 30, 230), (30, 200, 30))):
            d = root / split / f"k{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
                img[8:24, 8:24] = colour
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def tiny_recipe(path: Path, **extra) -> Path:
    """A recipe that trains in about a second per epoch on one thread."""
    cfg = {
        "model": "swin_micro_patch4_window4_64",
        "model_overrides": {"img_size": 32, "embed_dim": 16, "depths": [2, 2], "num_heads": [1, 2],
                            "window_size": 4, "drop_path_rate": 0.1},
        "data": "folder", "load_size": 32, "aug": {"img_size": 32, "crop_scale": [0.5, 1.0]},
        "epochs": 3, "batch_size": 4, "lr": 2e-3, "warmup_epochs": 0.5, "min_lr": 1e-5, "threads": 1,
        "tensorboard": False, "plots": False, "progress": False, "log_every": 2, "ema_decay": 0.9,
        "report": False,  # (the end-of-run evaluation and page would only slow these runs)
    }
    cfg.update(extra)
    path.write_text(json.dumps(cfg))
    return path


def run_cli(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``python tests/integrity_driver.py ARGS`` with extra environment variables."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(DRIVER), *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=timeout)


def records(run: Path) -> list[dict]:
    """The epoch records of ``metrics.jsonl`` without their timing fields."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def weights(path: Path) -> dict[str, torch.Tensor]:
    """The model (and EMA) tensors of a checkpoint."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    out = dict(ckpt["model"])
    if ckpt.get("ema"):
        out.update({f"ema.{k}": v for k, v in ckpt["ema"]["model"].items()})
    return out


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same epoch records and bit-identical last/best weights."""
    assert records(a) == records(b)
    for name in ("last.pt", "best.pt"):
        wa, wb = weights(a / name), weights(b / name)
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), f"{name}: {k}"


def save_folder_run(run: Path, model: torch.nn.Module, model_name: str, class_names: list[str],
                    folders: list[str], data: Path, epoch: int) -> Path:
    """A minimal run folder (``run/best.pt``) as ``swinlab train`` on an image
    folder would leave it, for the inference-side tests."""
    run.mkdir(parents=True)
    torch.save(
        {
            "model": model.state_dict(),
            "model_name": model_name,
            "model_kwargs": dict(model.model_kwargs),
            "class_names": class_names,
            "classes": folders,
            "aug_config": {"img_size": 64, "eval_crop_ratio": 0.875, "interpolation": "bicubic"},
            "config": {"data": "folder", "data_root": str(data), "num_classes": None, "val_split": "val"},
            "epoch": epoch,
        },
        run / "best.pt",
    )
    return run


def tiny_imagenet_classes(zip_path: Path, n: int | None = None) -> tuple[list[str], list[str]]:
    """``(wnids, first synonyms of their words.txt names)`` of the first ``n`` classes of a Tiny ImageNet zip."""
    root = "tiny-imagenet-200"
    with zipfile.ZipFile(zip_path) as zf:
        wnids = zf.read(f"{root}/wnids.txt").decode().split()[:n]
        words = dict(line.split("\t", 1) for line in zf.read(f"{root}/words.txt").decode().splitlines() if "\t" in line)
    return wnids, [words[w].split(",")[0].strip() for w in wnids]


def save_swinv2_ref_run(run: Path, reference_dir: Path) -> Path:
    """A run folder (``run/best.pt``) holding the small reference Swin V2
    (``configs_v2.json`` -> ``swinv2_ref``: 256 px, embed 16, window 8, 10
    classes) with the weights of ``swinv2_ref_official.pth``, built as the
    zoo's ``swinv2_tiny_window8_256`` with overrides."""
    from swinlab import create_model

    cfg = json.loads((reference_dir / "configs_v2.json").read_text())["swinv2_ref"]
    model = create_model("swinv2_tiny_window8_256", pretrained=reference_dir / "swinv2_ref_official.pth",
                         **{k: v for k, v in cfg.items() if k != "patch_size"})
    names = [f"class_{i}" for i in range(cfg["num_classes"])]
    run.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "model_name": "swinv2_tiny_window8_256",
                "model_kwargs": dict(model.model_kwargs), "class_names": names, "classes": names,
                "aug_config": {"img_size": 256, "eval_crop_ratio": 0.9, "interpolation": "bicubic"}},
               run / "best.pt")
    return run
