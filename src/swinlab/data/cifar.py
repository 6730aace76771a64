"""CIFAR-10 / CIFAR-100 from the official python-pickle archives (Krizhevsky 2009).

``cifar-10-python.tar.gz`` -> ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``;
``cifar-100-python.tar.gz`` -> ``cifar-100-python/{train, test, meta}``.  Each batch is a
Python-2 pickle of a dict with bytes keys (``b'data'``: uint8 (N, 3072), channel-major
R, G, B planes of 32x32; ``b'labels'`` or ``b'fine_labels'``/``b'coarse_labels'``;
``b'filenames'``).  Read from the tar.gz directly or from the extracted folder.  Pickles
are loaded with a restricted unpickler that only admits numpy array reconstruction.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .base import ImageDataset, Transform, check_num_classes
from .paths import locate

__all__ = ["CIFAR", "CIFAR10", "CIFAR100", "CIFAR_SPECS"]

CIFAR_SPECS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "archive": "cifar-10-python.tar.gz",
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "archive": "cifar-100-python.tar.gz",
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
    },
}

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler admitting only the globals that numpy arrays need (no code execution)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch")


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ValueError(f"cannot read CIFAR batch {where}: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR batch {where}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _key(d: dict, key: str, where: str) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    have = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d)
    raise ValueError(f"CIFAR batch {where} has no key b'{key}' (keys: {have})")


def _str(x: Any) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


class _Reader:
    """Reads batch files from the tar.gz or the extracted folder.

    From a tar.gz only the members named in ``wanted`` (base names) are kept in memory.
    """

    def __init__(self, path: Path, folder: str, wanted: Sequence[str]) -> None:
        self.path = path
        self.files: dict[str, bytes] = {}
        if path.is_dir():
            base = path / folder if (path / folder).is_dir() else path
            self.base: Path | None = base
        else:
            self.base = None
            try:
                with tarfile.open(path, "r:*") as tar:
                    for m in tar.getmembers():
                        if m.isfile() and m.name.split("/")[-1] in wanted:
                            f = tar.extractfile(m)
                            if f is not None:
                                self.files[m.name.split("/")[-1]] = f.read()
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ValueError(f"cannot read CIFAR archive {path}: {exc}") from exc

    def read(self, name: str) -> tuple[bytes, str]:
        if self.base is not None:
            p = self.base / name
            if not p.is_file():
                raise FileNotFoundError(f"CIFAR file '{name}' not found in {self.base}")
            return p.read_bytes(), f"'{p}'"
        if name not in self.files:
            raise FileNotFoundError(f"CIFAR member '{name}' not found in archive {self.path}")
        return self.files[name], f"'{name}' in {self.path}"


class CIFAR(ImageDataset):
    """CIFAR-10 or CIFAR-100 (50,000 train / 10,000 test images of 32x32).

    Items: ``(uint8 (3, 32, 32) RGB, label)`` or ``transform(image)``; all images are
    held in memory as one uint8 tensor ``(N, 3, 32, 32)``.
    Source: https://www.cs.toronto.edu/~kriz/cifar.html (python version).

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: the ``.tar.gz``, the extracted folder, or a folder holding either;
            None = search (see :mod:`swinlab.data.paths`).
        split: ``"train"``, ``"test"`` or ``"val"`` (= ``"test"``).
        num_classes: keep only labels < K.
        label_type: CIFAR-100 only: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
        transform: callable applied to the uint8 image tensor.
        download: fetch the official archive when not found; ``url``/``md5`` override it.

    Raises:
        FileNotFoundError: archive / batch file not found.
        ValueError: bad arguments, corrupt archive, or a batch missing a key (named).
    """

    def __init__(
        self,
        name: str,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        *,
        num_classes: int | None = None,
        label_type: str = "fine",
        transform: Transform | None = None,
        download: bool = False,
        url: str | None = None,
        md5: str | None = None,
    ) -> None:
        super().__init__(transform=transform, skip_corrupt=False)
        if name not in CIFAR_SPECS:
            raise ValueError(f"unknown CIFAR variant {name!r}; expected one of {sorted(CIFAR_SPECS)}")
        if split not in ("train", "test", "val"):
            raise ValueError(f"CIFAR split must be 'train', 'test' or 'val' (= test), got {split!r}")
        if label_type not in ("fine", "coarse"):
            raise ValueError(f"label_type must be 'fine' or 'coarse', got {label_type!r}")
        if name == "cifar10" and label_type != "fine":
            raise ValueError("label_type='coarse' exists only for CIFAR-100")
        spec = CIFAR_SPECS[name]
        self.name, self.split, self.label_type = name, ("test" if split == "val" else split), label_type
        path = locate(
            name.upper(),
            (spec["archive"], spec["folder"]),
            root,
            download=download,
            url=url or spec["url"],
            md5=md5 if url else (md5 or spec["md5"]),
        )
        self.source_path = str(path)
        reader = _Reader(path, spec["folder"], (spec["meta"], *spec[self.split]))

        meta_bytes, meta_where = reader.read(spec["meta"])
        meta = _unpickle(meta_bytes, meta_where)
        if name == "cifar10":
            label_key, names_key = "labels", "label_names"
        else:
            label_key, names_key = f"{label_type}_labels", f"{label_type}_label_names"
        class_names = [_str(x) for x in _key(meta, names_key, meta_where)]

        datas, labels, filenames = [], [], []
        for batch in spec[self.split]:
            raw, where = reader.read(batch)
            d = _unpickle(raw, where)
            data = np.asarray(_key(d, "data", where))
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise ValueError(
                    f"CIFAR batch {where}: b'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}"
                )
            lab = [int(x) for x in _key(d, label_key, where)]
            if len(lab) != len(data):
                raise ValueError(f"CIFAR batch {where}: {len(lab)} labels for {len(data)} images")
            bad = [x for x in lab if not 0 <= x < len(class_names)]
            if bad:
                raise ValueError(f"CIFAR batch {where}: label {bad[0]} outside 0..{len(class_names) - 1}")
            fn = d.get(b"filenames", d.get("filenames"))
            fns = [_str(x) for x in fn] if fn is not None else [f"{batch}/{i}" for i in range(len(data))]
            datas.append(data)
            labels.extend(lab)
            filenames.extend(fns)
        images = torch.from_numpy(np.concatenate(datas)).view(-1, 3, 32, 32)
        k = len(class_names)
        if num_classes is not None:
            check_num_classes(num_classes, k)
            keep = [i for i, y in enumerate(labels) if y < num_classes]
            images = images[torch.tensor(keep, dtype=torch.long)]
            labels = [labels[i] for i in keep]
            filenames = [filenames[i] for i in keep]
            class_names = class_names[:num_classes]
        self.classes = list(class_names)
        self.class_names = list(class_names)
        self.targets = labels
        self.image_names = filenames
        self._cache = images.contiguous()

    def _load(self, index: int) -> torch.Tensor:
        return self._cache[index]  # type: ignore[index]

    def __repr__(self) -> str:
        return f"CIFAR(name={self.name!r}, split={self.split!r}, items={len(self)}, classes={self.num_classes})"


def CIFAR10(root: str | os.PathLike[str] | None = None, split: str = "train", **kwargs: Any) -> CIFAR:  # noqa: N802
    """CIFAR-10 data set; see :class:`CIFAR`."""
    return CIFAR("cifar10", root, split, **kwargs)


def CIFAR100(root: str | os.PathLike[str] | None = None, split: str = "train", **kwargs: Any) -> CIFAR:  # noqa: N802
    """CIFAR-100 data set; see :class:`CIFAR`."""
    return CIFAR("cifar100", root, split, **kwargs)
