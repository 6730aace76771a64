"""Generic image folder, ResizeUint8 batching and loader ordering."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from swinlab.data import ResizeUint8, build_dataset, build_loader, epoch_seed


def _save(path: Path, size: tuple[int, int], color: tuple[int, int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, color)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path)


def make_folder(root: Path) -> None:
    _save(root / "dog" / "b.png", (20, 10), (0, 255, 0))
    _save(root / "dog" / "a.jpg", (12, 12), (255, 0, 0))
    _save(root / "cat" / "x.bmp", (8, 16), (0, 0, 255))
    _save(root / "cat" / "sub" / "y.webp", (9, 9), (10, 10, 10), mode="L")
    (root / "cat" / "notes.txt").write_text("not an image")
    _save(root / "emu" / "e.PNG", (5, 5), (1, 2, 3), mode="RGBA")


def test_image_folder(tmp_path: Path) -> None:
    make_folder(tmp_path / "imgs")
    ds = build_dataset("folder", tmp_path / "imgs")
    assert ds.classes == ["cat", "dog", "emu"] and ds.targets == [0, 0, 1, 1, 2]
    assert ds.image_names == ["cat/sub/y.webp", "cat/x.bmp", "dog/a.jpg", "dog/b.png", "emu/e.PNG"]
    img, y = ds[3]
    assert img.shape == (3, 10, 20) and y == 1 and img[1].float().mean() > 250 and img[0].max() < 5
    assert ds[0][0].shape == (3, 9, 9) and ds[4][0].shape == (3, 5, 5)
    with pytest.raises(ValueError, match="different sizes.*ResizeUint8"):
        next(iter(build_loader(ds, 5, shuffle=False)))
    fixed = build_dataset("folder", tmp_path / "imgs", transform=ResizeUint8(16), cache=True)
    xb, yb = next(iter(build_loader(fixed, 5, shuffle=False)))
    assert xb.shape == (5, 3, 16, 16) and xb.dtype == torch.uint8 and yb.tolist() == [0, 0, 1, 1, 2]
    assert build_dataset("folder", tmp_path / "imgs", num_classes=2).targets == [0, 0, 1, 1]
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        build_dataset("folder", tmp_path / "empty")


def test_image_folder_splits_and_corrupt(tmp_path: Path) -> None:
    make_folder(tmp_path / "d" / "train")
    _save(tmp_path / "d" / "val" / "cat" / "v.png", (4, 4), (9, 9, 9))
    (tmp_path / "d" / "val" / "dog").mkdir()
    (tmp_path / "d" / "val" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert len(build_dataset("folder", tmp_path / "d", "train")) == 5
    val = build_dataset("folder", tmp_path / "d", "val")
    assert val.classes == ["cat", "dog"] and len(val) == 2
    with pytest.raises(ValueError, match=r"cannot decode image '.*dog/broken.jpg'"):
        val[1]
    with pytest.raises(FileNotFoundError, match="'test'"):
        build_dataset("folder", tmp_path / "d", "test")
    with pytest.warns(RuntimeWarning, match="broken.jpg"):
        ok = build_dataset("folder", tmp_path / "d", "val", skip_corrupt=True, cache=True)
    assert len(ok) == 1 and ok.skipped == 1


def test_loader_order_reproducible() -> None:
    ds = TensorDataset(torch.zeros(50, 3, 2, 2, dtype=torch.uint8), torch.arange(50))

    def order(seed: int, epoch: int) -> list[int]:
        return torch.cat([y for _, y in build_loader(ds, 8, shuffle=True, seed=seed, epoch=epoch)]).tolist()

    a = order(0, 0)
    assert a == order(0, 0) and sorted(a) == list(range(50))
    assert a != order(0, 1) and order(0, 1) != order(0, 2) and a != order(1, 0)
    torch.manual_seed(123)  # the global RNG does not influence the order
    assert order(0, 1) == order(0, 1)
    plain = torch.cat([y for _, y in build_loader(ds, 8, shuffle=False)]).tolist()
    assert plain == list(range(50))
    batches = list(build_loader(ds, 8, shuffle=True, drop_last=True))
    assert len(batches) == 6 and batches[0][0].dtype == torch.uint8 and batches[0][1].dtype == torch.int64
    assert epoch_seed(0, 1) != epoch_seed(1, 0)
    with pytest.raises(ValueError, match="batch_size"):
        build_loader(ds, 0, shuffle=True)
