"""CIFAR-10/100 from synthetic archives in the exact official python-pickle format, and download."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from swinlab.data import build_dataset
from swinlab.io.download import download_file

FINE = [f"fine{i}".encode() for i in range(100)]
COARSE = [f"coarse{i}".encode() for i in range(20)]
C10 = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def _images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    # image 0: planes R=10, G=20, B=30 with one marked red pixel at row 1, col 2
    data[0, :1024], data[0, 1024:2048], data[0, 2048:] = 10, 20, 30
    data[0, 1 * 32 + 2] = 200
    return data


def _add(tar: tarfile.TarFile, name: str, obj: object) -> None:
    raw = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    tar.addfile(info, io.BytesIO(raw))


def make_cifar100(path: Path, n_train: int = 30, n_test: int = 10) -> dict:
    rng = np.random.default_rng(1)
    batches = {}
    for split, n in (("train", n_train), ("test", n_test)):
        fine = [int(x) for x in rng.integers(0, 100, n)]
        fine[0], fine[1] = 3, 99
        batches[split] = {
            b"filenames": [f"{split}_img_{i}.png".encode() for i in range(n)],
            b"batch_label": f"{split} batch 1 of 1".encode(),
            b"fine_labels": fine,
            b"coarse_labels": [f // 5 for f in fine],
            b"data": _images(n, 2 if split == "train" else 3),
        }
    meta = {b"fine_label_names": FINE, b"coarse_label_names": COARSE}
    with tarfile.open(path, "w:gz") as tar:
        for split, d in batches.items():
            _add(tar, f"cifar-100-python/{split}", d)
        _add(tar, "cifar-100-python/meta", meta)
    return batches


def make_cifar10(path: Path, per_batch: int = 6) -> dict:
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        batches[name] = {
            b"batch_label": f"{name} of 5".encode(),
            b"labels": [(k + i) % 10 for i in range(per_batch)],
            b"data": _images(per_batch, 10 + k),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
    meta = {b"num_cases_per_batch": per_batch, b"label_names": C10, b"num_vis": 3072}
    with tarfile.open(path, "w:gz") as tar:
        for name, d in batches.items():
            _add(tar, f"cifar-10-batches-py/{name}", d)
        _add(tar, "cifar-10-batches-py/batches.meta", meta)
    return batches


def test_cifar100_archive_parsing(tmp_path: Path) -> None:
    arc = tmp_path / "cifar-100-python.tar.gz"
    batches = make_cifar100(arc)
    ds = build_dataset("cifar100", arc, "train")
    assert len(ds) == 30 and ds.num_classes == 100
    assert ds.class_names[:2] == ["fine0", "fine1"] and ds.classes == ds.class_names
    assert ds.targets == batches["train"][b"fine_labels"]
    assert ds.image_names[1] == "train_img_1.png"
    img, label = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32) and label == 3
    assert img[0, 1, 2] == 200 and img[0, 0, 0] == 10 and int(img[1].max()) == 20 and int(img[2].min()) == 30
    expect = torch.from_numpy(batches["train"][b"data"][5].reshape(3, 32, 32))
    assert torch.equal(ds[5][0], expect)
    test = build_dataset("cifar100", arc, "val")  # val maps to the test split
    assert len(test) == 10 and test.targets == batches["test"][b"fine_labels"]
    coarse = build_dataset("cifar100", arc, "test", label_type="coarse")
    assert coarse.num_classes == 20 and coarse.class_names[0] == "coarse0"
    assert coarse.targets == batches["test"][b"coarse_labels"]


def test_cifar100_extracted_folder_and_subset(tmp_path: Path) -> None:
    arc = tmp_path / "cifar-100-python.tar.gz"
    batches = make_cifar100(arc)
    with tarfile.open(arc) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    for root in (tmp_path / "x", tmp_path / "x" / "cifar-100-python"):
        ds = build_dataset("cifar100", root, "train")
        assert ds.targets == batches["train"][b"fine_labels"]
    sub = build_dataset("cifar100", arc, "train", num_classes=50)
    want = [y for y in batches["train"][b"fine_labels"] if y < 50]
    assert sub.targets == want and sub.num_classes == 50 and len(sub) == len(want)


def test_cifar10_archive(tmp_path: Path) -> None:
    arc = tmp_path / "cifar-10-python.tar.gz"
    batches = make_cifar10(arc)
    ds = build_dataset("cifar10", arc, "train")
    assert len(ds) == 30 and ds.class_names == [c.decode() for c in C10]
    want = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert ds.targets == want
    assert torch.equal(ds[6][0], torch.from_numpy(batches["data_batch_2"][b"data"][0].reshape(3, 32, 32)))
    test = build_dataset("cifar10", arc, "test")
    assert test.targets == batches["test_batch"][b"labels"] and test.image_names[0] == "test_batch_0.png"
    with pytest.raises(ValueError, match="coarse"):
        build_dataset("cifar10", arc, "train", label_type="coarse")


def test_cifar_bad_inputs(tmp_path: Path) -> None:
    arc = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(arc, "w:gz") as tar:
        _add(tar, "cifar-100-python/meta", {b"fine_label_names": FINE, b"coarse_label_names": COARSE})
        _add(tar, "cifar-100-python/train", {b"fine_labels": [1, 2]})  # no b'data'
    with pytest.raises(ValueError, match=r"'train' in .*has no key b'data'"):
        build_dataset("cifar100", arc, "train")
    with pytest.raises(FileNotFoundError, match="'test' not found"):
        build_dataset("cifar100", arc, "test")
    with pytest.raises(ValueError, match="split"):
        build_dataset("cifar100", arc, "validation")
    with pytest.raises(FileNotFoundError, match="not found"):
        build_dataset("cifar100", tmp_path / "missing.tar.gz")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil" / "cifar-100-python.tar.gz"
    evil.parent.mkdir()
    with tarfile.open(evil, "w:gz") as tar:
        _add(tar, "cifar-100-python/meta", Evil())
    with pytest.raises(ValueError, match="not allowed"):
        build_dataset("cifar100", evil, "train")


class _Server:
    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def served(tmp_path: Path):
    srv_dir = tmp_path / "srv"
    srv_dir.mkdir()
    batches = make_cifar100(srv_dir / "cifar-100-python.tar.gz")
    md5 = hashlib.md5((srv_dir / "cifar-100-python.tar.gz").read_bytes()).hexdigest()
    server = _Server(srv_dir)
    try:
        yield server.url + "/cifar-100-python.tar.gz", md5, batches
    finally:
        server.close()


def test_download_good_md5(served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, md5, batches = served
    dest_dir = tmp_path / "dl"
    ds = build_dataset("cifar100", dest_dir, "train", download=True, url=url, md5=md5)
    assert (dest_dir / "cifar-100-python.tar.gz").is_file()
    assert ds.targets == batches["train"][b"fine_labels"]
    assert sorted(p.name for p in dest_dir.iterdir()) == ["cifar-100-python.tar.gz"]  # no temp files left
    # no root: downloads into $SWINLAB_CACHE
    cache = tmp_path / "cache"
    monkeypatch.setenv("SWINLAB_CACHE", str(cache))
    monkeypatch.delenv("SWINLAB_DATA", raising=False)
    ds2 = build_dataset("cifar100", None, "test", download=True, url=url, md5=md5)
    assert (cache / "cifar-100-python.tar.gz").is_file() and len(ds2) == 10


def test_download_bad_md5_removes_file(served, tmp_path: Path) -> None:
    url, md5, _ = served
    dest = tmp_path / "bad" / "cifar-100-python.tar.gz"
    with pytest.raises(ValueError, match="MD5 mismatch") as err:
        download_file(url, dest, md5="0" * 32)
    assert url in str(err.value)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    with pytest.raises(ValueError, match="MD5 mismatch"):
        build_dataset("cifar100", tmp_path / "bad2", download=True, url=url, md5="f" * 32)
    assert list((tmp_path / "bad2").iterdir()) == []
    with pytest.raises(OSError, match="cannot download"):
        download_file(url.replace("cifar-100", "nothing-here"), tmp_path / "x.tar.gz")
