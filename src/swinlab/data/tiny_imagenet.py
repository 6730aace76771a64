"""Tiny ImageNet (CS231n, 200 classes, 64x64) read from the official zip or its extracted folder.

Layout (the official ``tiny-imagenet-200.zip``): ``wnids.txt`` (class order),
``words.txt`` (wnid <TAB> names), ``train/<wnid>/images/*.JPEG`` (500 per class),
``val/images/*.JPEG`` + ``val/val_annotations.txt`` (file <TAB> wnid <TAB> box).
The unlabeled ``test/`` split is ignored.
"""

from __future__ import annotations

import os

import torch

from .base import ImageDataset, Transform, check_num_classes
from .decode import CorruptImageError, decode_image
from .paths import locate
from .sources import Source, ZipSource, open_source

__all__ = ["TinyImageNet", "TINY_IMAGENET_URL", "TINY_IMAGENET_MD5"]

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
#: MD5 of the official archive (as published by several loaders of this data set).
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
_NAMES = ("tiny-imagenet-200.zip", "tiny-imagenet-200")
_IMAGE_EXTS = (".jpeg", ".jpg", ".png")


def _find_prefix(source: Source) -> str:
    """Folder prefix ('' or 'tiny-imagenet-200/') holding ``wnids.txt``."""
    if isinstance(source, ZipSource):
        hits = [n for n in source.names() if n == "wnids.txt" or n.endswith("/wnids.txt")]
        if hits:
            best = min(hits, key=lambda n: n.count("/"))
            return best[: -len("wnids.txt")]
    else:
        for prefix in ("", "tiny-imagenet-200/"):
            if source.exists(prefix + "wnids.txt"):
                return prefix
    raise FileNotFoundError(
        f"no Tiny ImageNet 'wnids.txt' found in {source.path}; expected the official tiny-imagenet-200.zip "
        "or its extracted 'tiny-imagenet-200' folder"
    )


def _text(source: Source, name: str) -> str:
    try:
        return source.read(name).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"'{name}' in {source.path} is not UTF-8 text: {exc}") from exc


class TinyImageNet(ImageDataset):
    """Tiny ImageNet-200 classification data set (train 100,000 / val 10,000 images).

    Items: ``(uint8 (3, 64, 64) RGB, label)`` (grayscale JPEGs converted to RGB), or
    ``transform(image)``.  Labels follow the order of ``wnids.txt``; ``class_names``
    come from ``words.txt``; val labels from ``val/val_annotations.txt``.
    Source: the CS231n release http://cs231n.stanford.edu/tiny-imagenet-200.zip.

    Args:
        root: the zip file, the extracted ``tiny-imagenet-200`` folder or a folder holding
            either; None = search (see :mod:`swinlab.data.paths`).
        split: ``"train"`` or ``"val"``.
        num_classes: keep only the first K classes of ``wnids.txt`` (labels 0..K-1).
        cache: decode every image once into memory (:meth:`build_cache`, threaded).
        cache_threads: threads for the cache build (default: usable CPUs).
        skip_corrupt: skip undecodable files (counted in ``.skipped``) instead of raising.
        transform: callable applied to the uint8 image tensor.
        download: fetch the official archive when not found (into ``root`` or the cache dir).
        url, md5: download location and checksum (overridable for mirrors / tests).

    Raises:
        FileNotFoundError: data not found (message lists where it looked) or a required
            file (``wnids.txt``, ``val/val_annotations.txt``) missing.
        ValueError: bad ``split`` / ``num_classes``, malformed annotation lines (file and
            line named), or an unreadable zip.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        *,
        num_classes: int | None = None,
        cache: bool = False,
        cache_threads: int | None = None,
        skip_corrupt: bool = False,
        transform: Transform | None = None,
        download: bool = False,
        url: str = TINY_IMAGENET_URL,
        md5: str | None = TINY_IMAGENET_MD5,
    ) -> None:
        super().__init__(transform=transform, skip_corrupt=skip_corrupt)
        if split not in ("train", "val"):
            raise ValueError(f"Tiny ImageNet split must be 'train' or 'val', got {split!r}")
        self.split = split
        path = locate("Tiny ImageNet", _NAMES, root, download=download, url=url, md5=md5)
        self.source = open_source(path)
        self.source_path = str(self.source.path)
        self._prefix = _find_prefix(self.source)
        p = self._prefix
        wnids = [w.strip() for w in _text(self.source, p + "wnids.txt").splitlines() if w.strip()]
        all_wnids = set(wnids)  # val annotations may name any class, kept or not
        if len(all_wnids) != len(wnids):
            raise ValueError(f"duplicate class ids in '{p}wnids.txt' of {self.source_path}")
        if num_classes is not None:
            check_num_classes(num_classes, len(wnids))
            wnids = wnids[:num_classes]
        self.classes = wnids
        index = {w: i for i, w in enumerate(wnids)}
        words: dict[str, str] = {}
        if self.source.exists(p + "words.txt"):
            for line in _text(self.source, p + "words.txt").splitlines():
                wnid, _, name = line.partition("\t")
                if wnid in index:
                    words[wnid] = name.strip()
        self.class_names = [words.get(w, w) for w in wnids]

        names: list[str] = []
        targets: list[int] = []
        if split == "train":
            start = p + "train/"
            for n in self.source.names(p + "train"):
                if not n.startswith(start) or not n.lower().endswith(_IMAGE_EXTS):
                    continue
                parts = n[len(start):].split("/")
                if len(parts) == 3 and parts[1] == "images" and parts[0] in index:
                    names.append(n)
                    targets.append(index[parts[0]])
            order = sorted(range(len(names)), key=lambda i: (targets[i], names[i]))
            names = [names[i] for i in order]
            targets = [targets[i] for i in order]
        else:
            ann = p + "val/val_annotations.txt"
            if not self.source.exists(ann):
                raise FileNotFoundError(f"'{ann}' not found in {self.source_path}")
            for lineno, line in enumerate(_text(self.source, ann).splitlines(), 1):
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) < 2:
                    raise ValueError(
                        f"'{ann}' line {lineno} in {self.source_path}: expected 'file<TAB>wnid<TAB>...', got {line!r}"
                    )
                fname, wnid = fields[0].strip(), fields[1].strip()
                if wnid not in all_wnids:
                    raise ValueError(f"'{ann}' line {lineno} in {self.source_path}: unknown class id {wnid!r}")
                if wnid in index:
                    names.append(f"{p}val/images/{fname}")
                    targets.append(index[wnid])
        self.image_names = names
        self.targets = targets
        if cache:
            self.build_cache(cache_threads, progress=True)

    def _load(self, index: int) -> torch.Tensor:
        name = self.image_names[index]
        try:
            data = self.source.read(name)
        except FileNotFoundError as exc:
            raise CorruptImageError(f"cannot decode image '{name}' in {self.source_path}: file missing") from exc
        except ValueError as exc:
            raise CorruptImageError(f"cannot decode image '{name}' in {self.source_path}: {exc}") from exc
        return decode_image(data, name, self.source_path)

    def __repr__(self) -> str:
        kind = "zip" if isinstance(self.source, ZipSource) else "folder"
        return (
            f"TinyImageNet(split={self.split!r}, items={len(self)}, classes={self.num_classes}, "
            f"{kind}={self.source_path!r}, cached={self.cached})"
        )
