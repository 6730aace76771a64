"""The training loop on tiny synthetic data (and a short real Tiny ImageNet run):
exact resume, logs, checkpoints, curves, time budget, export."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import swinlab.models.backbone as backbone_module
from swinlab.models import registry
from swinlab.models.registry import ModelSpec
from swinlab.training.config import ConfigError
from swinlab.training.engine import soft_target_cross_entropy, train
from swinlab.training.logging import COLUMNS
from test_data_tiny_imagenet import make_tiny_zip

COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220))


def make_squares(root: Path, n_train: int = 16, n_val: int = 6, size: int = 32) -> Path:
    """root/{train,val}/c<k>/<i>.png: noise with a coloured square of class k."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, colour in enumerate(COLOURS):
            d = root / split / f"c{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                x, y = rng.integers(0, size // 2, 2)
                img[y : y + size // 2, x : x + size // 2] = colour
                Image.fromarray(img).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_squares(tmp_path_factory.mktemp("squares"))


def tiny_config(data_root: Path, out: Path, **kw: Any) -> dict[str, Any]:
    cfg = dict(
        model="swin_micro_patch4_window4_64",
        model_overrides=dict(img_size=32, embed_dim=16, depths=[2, 2], num_heads=[1, 2], window_size=4),
        data="folder", data_root=str(data_root), load_size=32,
        aug=dict(img_size=32, crop_scale=[0.5, 1.0], label_smoothing=0.1),
        epochs=2, batch_size=8, lr=2e-3, warmup_epochs=0.5, threads=1,
        progress=False, tensorboard=False, plots=False, out=str(out),
    )
    cfg.update(kw)
    return cfg


def test_soft_target_cross_entropy_matches_torch() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=g)
    y = torch.randint(0, 7, (5,), generator=g)
    eps = 0.1
    soft = F.one_hot(y, 7).float() * (1 - eps) + eps / 7
    ref = F.cross_entropy(logits, y, label_smoothing=eps)
    assert torch.allclose(soft_target_cross_entropy(logits, soft), ref, atol=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        soft_target_cross_entropy(logits, soft[:, :3])


class Killed(Exception):
    pass


def test_killed_and_resumed_run_equals_uninterrupted(squares: Path, tmp_path: Path) -> None:
    heavy = dict(
        epochs=3, accum_steps=2, clip_grad=1.0, ema_decay=0.9, drop_path_rate=0.1,
        aug=dict(img_size=32, crop_scale=[0.5, 1.0], label_smoothing=0.1, mixup_alpha=0.8, cutmix_alpha=1.0,
                 randaugment_n=2, random_erasing=0.25),
    )
    full = train(tiny_config(squares, tmp_path / "full", **heavy))

    def kill_after_first_epoch(epoch: int, record: dict) -> None:
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(tiny_config(squares, tmp_path / "part", **heavy), on_epoch_end=kill_after_first_epoch)
    assert json.loads((tmp_path / "part" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1
    resumed = train(tiny_config(squares, tmp_path / "part", resume=str(tmp_path / "part"), **heavy))

    n = len(resumed["step_losses"])
    assert n == 2 * len(full["step_losses"]) // 3 > 0
    assert resumed["step_losses"] == full["step_losses"][-n:]  # exactly, not approximately
    keys = ("epoch", "step", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "ema_val_loss", "lr")
    assert [[r[k] for k in keys] for r in resumed["history"]] == [[r[k] for k in keys] for r in full["history"]]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for name in a["ema"]["model"]:
        assert torch.equal(a["ema"]["model"][name], b["ema"]["model"][name]), name


def test_outputs_logs_checkpoints_and_curves(squares: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = train(tiny_config(squares, out, tensorboard=True, plots=True))
    assert res["epochs_completed"] == 2 and res["val_top1"] is not None
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        for k in ("train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "lr", "images_per_s",
                  "epoch_time_s"):
            assert isinstance(r[k], float), k
    with (out / "metrics.csv").open() as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 3
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "swin_micro_patch4_window4_64" and cfg["data_root"] == str(squares)

    last = torch.load(out / "last.pt", weights_only=True)
    for key in ("model", "model_name", "model_kwargs", "class_names", "classes", "aug_config", "config",
                "optimizer", "scheduler", "scaler", "ema", "rng", "epoch", "step", "best_top1", "swinlab_version"):
        assert key in last, key
    assert last["class_names"] == ["c0", "c1", "c2"] and last["epoch"] == 2
    assert len(last["rng"]) == last["world_size"] == 1 and set(last["rng"][0]) >= {"torch", "numpy", "python"}
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["best_top1"] == max(r["val_top1"] for r in records) == res["best_top1"]

    with pytest.raises(ConfigError, match="already holds a checkpoint"):
        train(tiny_config(squares, out))


def test_time_budget_stops_training_then_evaluates(squares: Path, tmp_path: Path) -> None:
    res = train(tiny_config(squares, tmp_path / "tb", epochs=50, time_budget_min=1e-6))
    assert res["stopped_by_time_budget"]
    assert res["steps"] == 1 and res["epochs_completed"] == 0  # stopped inside epoch 1
    last = res["history"][-1]
    assert res["val_top1"] is not None and last["partial_epoch"] is True and last["epoch"] == 1
    assert 0 < last["epoch_frac"] < 1


def test_export_writes_pretrained_folder(squares: Path, tmp_path: Path) -> None:
    res = train(tiny_config(squares, tmp_path / "ex", epochs=1, export=True))
    export = Path(res["export_dir"])
    assert (export / "model.safetensors").is_file()
    meta = json.loads((export / "config.json").read_text())
    assert json.dumps(meta).count("c2") >= 1  # class names travel with the weights


def test_short_real_tiny_imagenet_run_beats_chance(shared_dir: Path, tmp_path: Path) -> None:
    """10 classes of the real Tiny ImageNet (5,000 train / 500 val images), a 0.1M-param
    Swin at 32 px, 3 epochs (234 steps): val top-1 must clearly beat chance (10%)."""
    zip_path = shared_dir / "data" / "tiny-imagenet-200.zip"
    cfg = dict(
        model="swin_micro_patch4_window4_64",
        model_overrides=dict(img_size=32, embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=4,
                             drop_path_rate=0.0),
        data="tiny-imagenet", data_root=str(zip_path), num_classes=10, cache=True,
        aug=dict(img_size=32, crop_scale=[0.35, 1.0], label_smoothing=0.1),
        epochs=3, batch_size=64, lr=2e-3, warmup_epochs=0.3, min_lr=1e-5, weight_decay=0.05,
        amp="none", threads=2, progress=False, tensorboard=False, plots=False, out=str(tmp_path / "real"),
    )
    res = train(cfg)
    assert res["history"][-1]["train_images"] == 78 * 64
    assert res["val_top1"] > 25.0, res["history"]


def test_cached_train_set_gives_the_same_run_as_the_loader(tmp_path: Path) -> None:
    """With ``cache`` the batches are gathered from the decoded tensor (no DataLoader): the run
    must be exactly the one the DataLoader gives, with and without a hold-out split."""
    arc = tmp_path / "tiny-imagenet-200.zip"
    make_tiny_zip(arc)
    for holdout in (None, 0.25):
        runs = []
        for cache in (False, True):
            cfg = tiny_config(arc, tmp_path / f"run_{cache}_{holdout}", data="tiny-imagenet", load_size=None, cache=cache, holdout_fraction=holdout,
                              batch_size=2, epochs=2)
            runs.append(train(cfg))
        assert len(runs[0]["step_losses"]) > 2
        assert runs[0]["step_losses"] == runs[1]["step_losses"], holdout


def test_grad_checkpointing_checkpoints_every_block_and_keeps_the_losses(
        squares: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``grad_checkpointing``: the same seed gives the same per-step losses (stochastic depth on:
    the recomputation draws the same masks), and every block of every training forward runs
    under ``torch.utils.checkpoint`` (none without the switch, none in evaluation)."""
    calls: list[str] = []
    real = backbone_module.checkpoint

    def counting(fn: Any, *args: Any, **kw: Any) -> Any:
        calls.append(type(fn).__name__)
        return real(fn, *args, **kw)

    monkeypatch.setattr(backbone_module, "checkpoint", counting)
    runs = {}
    for on in (False, True):
        calls.clear()
        runs[on] = train(tiny_config(squares, tmp_path / f"gc_{on}", epochs=1, drop_path_rate=0.2,
                                     grad_checkpointing=on))
        runs[on]["calls"] = list(calls)
    assert runs[False]["calls"] == []
    steps = len(runs[True]["step_losses"])
    assert steps == 6 and runs[True]["calls"] == ["SwinTransformerBlock"] * 4 * steps  # 2 + 2 blocks per step
    np.testing.assert_allclose(runs[True]["step_losses"], runs[False]["step_losses"], rtol=0, atol=1e-5)
    saved = json.loads((tmp_path / "gc_True" / "config.json").read_text())
    assert saved["grad_checkpointing"] is True


class _NoCheckpointing(torch.nn.Module):
    """A plug-in model without ``set_grad_checkpointing``."""

    def __init__(self, num_classes: int = 3, img_size: int = 32, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


def test_grad_checkpointing_names_a_model_without_it(squares: Path, tmp_path: Path) -> None:
    registry.register_model(ModelSpec("test_no_checkpointing", _NoCheckpointing, dict(img_size=32)))
    try:
        cfg = tiny_config(squares, tmp_path / "nogc", model="test_no_checkpointing", model_overrides={},
                          grad_checkpointing=True)
        with pytest.raises(ConfigError, match="model 'test_no_checkpointing' .*has no set_grad_checkpointing"):
            train(cfg)
    finally:
        registry.unregister_model("test_no_checkpointing")
