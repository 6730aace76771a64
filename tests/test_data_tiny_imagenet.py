"""Tiny ImageNet: synthetic archive in the official layout, and a slice of the real zip."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from swinlab.data import CorruptImageError, build_dataset, build_loader, cached_batches

WNIDS = ["n02124075", "n04067472", "n04540053"]
WORDS = {"n02124075": "Egyptian cat", "n04067472": "reel", "n04540053": "volleyball", "n00000001": "unused"}
TRAIN_PER_CLASS = 4


def _jpeg(color: tuple[int, int, int], mode: str = "RGB") -> bytes:
    img = Image.new("RGB", (64, 64), color)
    if mode == "L":
        img = img.convert("L")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _color(c: int, k: int) -> tuple[int, int, int]:
    return (40 * c + 20, 10 * k, 200 - 30 * c)


def make_tiny_zip(path: Path, corrupt: bool = False, prefix: str = "tiny-imagenet-200/") -> dict:
    """Official layout: wnids.txt, words.txt, train/<wnid>/images/*.JPEG + boxes, val/."""
    val = [("val_0.JPEG", WNIDS[2]), ("val_1.JPEG", WNIDS[0]), ("val_2.JPEG", WNIDS[1]), ("val_3.JPEG", WNIDS[0])]
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(prefix + "wnids.txt", "\n".join(WNIDS) + "\n")
        z.writestr(prefix + "words.txt", "".join(f"{w}\t{n}\n" for w, n in WORDS.items()))
        for c, w in enumerate(WNIDS):
            z.writestr(f"{prefix}train/{w}/{w}_boxes.txt", "")
            for k in range(TRAIN_PER_CLASS):
                mode = "L" if (c, k) == (1, 2) else "RGB"
                z.writestr(f"{prefix}train/{w}/images/{w}_{k}.JPEG", _jpeg(_color(c, k), mode))
        if corrupt:
            z.writestr(f"{prefix}train/{WNIDS[0]}/images/{WNIDS[0]}_9.JPEG", b"\xff\xd8 not really a jpeg")
        z.writestr(
            prefix + "val/val_annotations.txt", "".join(f"{f}\t{w}\t0\t0\t63\t63\n" for f, w in val)
        )
        for i, (f, w) in enumerate(val):
            z.writestr(f"{prefix}val/images/{f}", _jpeg((i * 50, 100, 100)))
        z.writestr(prefix + "test/images/test_0.JPEG", _jpeg((1, 2, 3)))
    return {"val": val}


def test_synthetic_zip_train_and_val(tmp_path: Path) -> None:
    arc = tmp_path / "tiny-imagenet-200.zip"
    info = make_tiny_zip(arc)
    ds = build_dataset("tiny-imagenet", arc, "train")
    assert ds.classes == WNIDS and ds.class_names == ["Egyptian cat", "reel", "volleyball"]
    assert ds.num_classes == 3 and len(ds) == 3 * TRAIN_PER_CLASS
    assert ds.targets == [c for c in range(3) for _ in range(TRAIN_PER_CLASS)]
    assert ds.image_names[0] == f"tiny-imagenet-200/train/{WNIDS[0]}/images/{WNIDS[0]}_0.JPEG"
    for i in range(len(ds)):
        img, label = ds[i]
        assert img.dtype == torch.uint8 and img.shape == (3, 64, 64)
        c, k = label, int(ds.image_names[i].rsplit("_", 1)[1].split(".")[0])
        if (c, k) != (1, 2):  # colour survives JPEG roughly
            mean = img.float().mean(dim=(1, 2))
            assert torch.allclose(mean, torch.tensor(_color(c, k), dtype=torch.float32), atol=4)
    gray = ds.image_names.index(f"tiny-imagenet-200/train/{WNIDS[1]}/images/{WNIDS[1]}_2.JPEG")
    img, _ = ds[gray]
    assert img.shape == (3, 64, 64) and torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    val = build_dataset("tiny-imagenet", arc, "val")
    assert val.targets == [WNIDS.index(w) for _, w in info["val"]]
    assert val.image_names[1] == "tiny-imagenet-200/val/images/val_1.JPEG"
    assert val[3][0].shape == (3, 64, 64)
    sub = build_dataset("tiny-imagenet", arc, "val", num_classes=2)
    assert sub.targets == [0, 1, 0] and sub.classes == WNIDS[:2]
    with pytest.raises(ValueError, match="num_classes"):
        build_dataset("tiny-imagenet", arc, "val", num_classes=4)


def test_extracted_folder_matches_zip(tmp_path: Path) -> None:
    arc = tmp_path / "tiny-imagenet-200.zip"
    make_tiny_zip(arc)
    with zipfile.ZipFile(arc) as z:
        z.extractall(tmp_path / "x")
    a = build_dataset("tiny-imagenet", arc, "train")
    for root in (tmp_path / "x", tmp_path / "x" / "tiny-imagenet-200"):
        b = build_dataset("tiny-imagenet", root, "train")
        assert b.targets == a.targets and len(b) == len(a)
        assert [n.split("/")[-1] for n in b.image_names] == [n.split("/")[-1] for n in a.image_names]
        assert torch.equal(b[5][0], a[5][0])
    v = build_dataset("tiny-imagenet", tmp_path / "x", "val")
    assert v.targets == build_dataset("tiny-imagenet", arc, "val").targets


def test_corrupt_image_named_and_skipped(tmp_path: Path) -> None:
    arc = tmp_path / "tiny-imagenet-200.zip"
    make_tiny_zip(arc, corrupt=True)
    ds = build_dataset("tiny-imagenet", arc, "train")
    bad = ds.image_names.index(f"tiny-imagenet-200/train/{WNIDS[0]}/images/{WNIDS[0]}_9.JPEG")
    with pytest.raises(ValueError, match=rf"cannot decode image '.*{WNIDS[0]}_9.JPEG' in .*tiny-imagenet-200.zip"):
        ds[bad]
    assert isinstance(pytest.raises(CorruptImageError, ds.__getitem__, bad).value, ValueError)
    # skip_corrupt: the unreadable file is dropped from the index at construction (exact count,
    # never substituted by a neighbour), with its reason
    with pytest.warns(RuntimeWarning, match=f"skipped 1 unreadable image.*{WNIDS[0]}_9.JPEG"):
        skip = build_dataset("tiny-imagenet", arc, "train", skip_corrupt=True)
    assert skip.skipped == 1 and len(skip) == len(ds) - 1
    assert [s.input for s in skip.skipped_images] == [ds.image_names[bad]]
    assert "cannot decode image" in skip.skipped_images[0].error
    assert ds.image_names[bad] not in skip.image_names
    assert [skip[i][1] for i in range(len(skip))] == [y for i, y in enumerate(ds.targets) if i != bad]
    assert skip.verify() == 1 and skip.skipped == 1  # verified once, not counted twice
    with pytest.raises(ValueError, match="cannot decode image"):
        build_dataset("tiny-imagenet", arc, "train", cache=True)
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable"):
        cached = build_dataset("tiny-imagenet", arc, "train", cache=True, skip_corrupt=True)
    assert cached.skipped == 1 and len(cached) == len(ds) - 1 and cached.cached
    assert all("_9.JPEG" not in n for n in cached.image_names)
    assert cached.targets == skip.targets and cached.image_names == skip.image_names
    assert cached.skipped_images == skip.skipped_images


def test_cache_equals_lazy_decode(tmp_path: Path) -> None:
    arc = tmp_path / "tiny-imagenet-200.zip"
    make_tiny_zip(arc)
    lazy = build_dataset("tiny-imagenet", arc, "train")
    cached = build_dataset("tiny-imagenet", arc, "train", cache=True)
    assert cached.cached and not lazy.cached
    for i in range(len(lazy)):
        assert torch.equal(lazy[i][0], cached[i][0]) and lazy[i][1] == cached[i][1]


def test_loader_workers_reopen_zip(tmp_path: Path) -> None:
    arc = tmp_path / "tiny-imagenet-200.zip"
    make_tiny_zip(arc)
    ds = build_dataset("tiny-imagenet", arc, "train")
    ds[0]  # open the handle in the parent before forking
    batches = list(build_loader(ds, 5, shuffle=False, num_workers=2))
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    assert images.shape == (len(ds), 3, 64, 64) and labels.tolist() == ds.targets
    assert torch.equal(images[7], ds[7][0])


def test_missing_and_malformed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        build_dataset("tiny-imagenet", tmp_path / "nope.zip")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("readme.txt", "x")
    with pytest.raises(FileNotFoundError, match="wnids.txt"):
        build_dataset("tiny-imagenet", empty)
    (tmp_path / "notzip.zip").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="notzip.zip"):
        build_dataset("tiny-imagenet", tmp_path / "notzip.zip")
    bad = tmp_path / "bad" / "tiny-imagenet-200.zip"
    bad.parent.mkdir()
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "n1\nn2\n")
        z.writestr("tiny-imagenet-200/val/val_annotations.txt", "val_0.JPEG\tn1\t0\t0\t1\t1\nval_1.JPEG\tn9\t0\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt' line 2.*'n9'"):
        build_dataset("tiny-imagenet", bad, "val")
    with pytest.raises(ValueError, match="split"):
        build_dataset("tiny-imagenet", bad, "test")
    # nothing anywhere: the error lists the places searched
    monkeypatch.setenv("SWINLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SWINLAB_DATA", str(tmp_path / "nodata"))
    monkeypatch.delenv("SWINLAB_SHARED", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"looked for: .*tiny-imagenet-200.zip.*download=True"):
        build_dataset("tiny-imagenet")
    # $SWINLAB_DATA pointing at a folder holding the archive is found
    (tmp_path / "nodata").mkdir()
    make_tiny_zip(tmp_path / "nodata" / "tiny-imagenet-200.zip")
    assert len(build_dataset("tiny-imagenet", split="val")) == 4


# --- the real archive ----------------------------------------------------------------------------

def _shared() -> Path:
    env = os.environ.get("SWINLAB_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


REAL = _shared() / "data" / "tiny-imagenet-200.zip"
needs_real = pytest.mark.skipif(not REAL.is_file(), reason=f"real Tiny ImageNet zip not at {REAL}")


@needs_real
def test_real_zip_structure_and_decoding() -> None:
    val = build_dataset("tiny-imagenet", REAL, "val")
    assert val.num_classes == 200 and len(val.class_names) == 200 and len(val) == 10_000
    counts = np.bincount(np.asarray(val.targets), minlength=200)
    assert counts.min() == counts.max() == 50
    # first annotation line: val_0.JPEG n03444034
    assert val.image_names[0].endswith("val/images/val_0.JPEG")
    assert val.classes[val.targets[0]] == "n03444034"
    assert val.classes[0] == "n02124075" and val.class_names[0] == "Egyptian cat"
    gray = val.image_names.index("tiny-imagenet-200/val/images/val_10.JPEG")  # a grayscale JPEG
    img, _ = val[gray]
    assert img.shape == (3, 64, 64) and img.dtype == torch.uint8
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    for i in (0, 1, 9_999):
        x, y = val[i]
        assert x.shape == (3, 64, 64) and 0 <= y < 200 and x.float().std() > 0

    train = build_dataset("tiny-imagenet", REAL, "train")
    assert len(train) == 100_000 and train.num_classes == 200
    assert np.bincount(np.asarray(train.targets), minlength=200).tolist() == [500] * 200
    for i in (0, 12_345, 99_999):
        x, y = train[i]
        assert x.shape == (3, 64, 64) and train.classes[y] in train.image_names[i]
    sub = build_dataset("tiny-imagenet", REAL, "val", num_classes=10)
    assert len(sub) == 500 and sub.num_classes == 10 and max(sub.targets) == 9


def test_download_from_local_server_and_pickle(tmp_path: Path) -> None:
    import functools
    import hashlib
    import http.server
    import pickle
    import threading

    srv = tmp_path / "srv"
    srv.mkdir()
    make_tiny_zip(srv / "tiny-imagenet-200.zip")
    md5 = hashlib.md5((srv / "tiny-imagenet-200.zip").read_bytes()).hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(srv)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/tiny-imagenet-200.zip"
        with pytest.raises(ValueError, match="MD5 mismatch"):
            build_dataset("tiny-imagenet", tmp_path / "bad", "val", download=True, url=url, md5="1" * 32)
        assert not (tmp_path / "bad" / "tiny-imagenet-200.zip").exists()
        ds = build_dataset("tiny-imagenet", tmp_path / "dl", "val", download=True, url=url, md5=md5)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert (tmp_path / "dl" / "tiny-imagenet-200.zip").is_file() and len(ds) == 4
    first = ds[0][0]
    clone = pickle.loads(pickle.dumps(ds))  # spawn-style workers: the zip handle is reopened
    assert torch.equal(clone[0][0], first) and clone.targets == ds.targets


def test_cached_batches_equal_the_loader(tmp_path: Path) -> None:
    arc = tmp_path / "tiny-imagenet-200.zip"
    make_tiny_zip(arc)
    lazy = build_dataset("tiny-imagenet", arc, "train")
    cached = build_dataset("tiny-imagenet", arc, "train", cache=True)
    assert lazy.cached_tensors() is None  # nothing decoded: the DataLoader path
    images, labels = cached.cached_tensors()
    assert images.dtype == torch.uint8 and images.shape == (len(cached), 3, 64, 64)
    assert labels.dtype == torch.int64 and labels.tolist() == cached.targets
    order = torch.randperm(len(cached), generator=torch.Generator().manual_seed(1)).tolist()[:-3]
    fast = list(cached_batches(images, labels, order, 4))
    slow = list(build_loader(torch.utils.data.Subset(lazy, order), 4, shuffle=False))
    assert len(fast) == len(slow) == -(-len(order) // 4)
    assert fast[-1][0].shape[0] == (len(order) % 4 or 4)
    for (xa, ya), (xb, yb) in zip(fast, slow):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="batch_size"):
        next(cached_batches(images, labels, order, 0))
    cached.transform = lambda im: im  # a transform makes items differ from the cache rows
    assert cached.cached_tensors() is None
