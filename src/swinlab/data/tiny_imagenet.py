"""Tiny ImageNet (CS231n, 200 classes, 64x64) read from the official zip or its extracted folder.

Layout (the official ``tiny-imagenet-200.zip``): ``wnids.txt`` (class order),
``words.txt`` (wnid <TAB> names), ``train/<wnid>/images/*.JPEG`` (500 per class),
``val/images/*.JPEG`` + ``val/val_annotations.txt`` (file <TAB> wnid <TAB> box).
The unlabeled ``test/`` split is ignored.

The class list and the val annotations are validated when the data set is
built (before any training step); every problem is a
:class:`~swinlab.errors.DataError` naming the file, the line and the problem:

* ``wnids.txt``: empty; an id repeated (line of both); an id with white
  space, ``/``, ``\\`` or equal to ``.`` / ``..``.
* ``val/val_annotations.txt``: missing or empty; a line without
  ``file<TAB>wnid``; a file name that is absolute or has a ``..`` component
  (it would leave ``val/images/``); a class id not in ``wnids.txt``; a file
  annotated twice -- an error rather than a de-duplication, since a repeated
  line means the file was edited or merged wrongly and either choice of
  label could be the wrong one; an annotated image missing from the data
  (without ``skip_corrupt``; with it the file is skipped like an unreadable one).
"""

from __future__ import annotations

import os

import torch

from ..constants import IMAGE_EXTENSIONS
from ..errors import DataError, InputNotFoundError, UsageError
from .base import ImageDataset, Transform, check_num_classes
from .decode import DATASET_MAX_PIXELS
from .paths import locate
from .sources import Source, ZipSource, open_source, unsafe_name_reason

__all__ = ["TinyImageNet", "TINY_IMAGENET_URL", "TINY_IMAGENET_MD5"]

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
#: MD5 of the official archive (as published by several loaders of this data set).
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
_NAMES = ("tiny-imagenet-200.zip", "tiny-imagenet-200")
_IMAGE_EXTS = tuple(IMAGE_EXTENSIONS)


def _find_prefix(source: Source) -> str:
    """Folder prefix ('' or 'tiny-imagenet-200/') holding ``wnids.txt``.

    Raises:
        InputNotFoundError: no ``wnids.txt``.
    """
    if isinstance(source, ZipSource):
        hits = [n for n in source.names() if n == "wnids.txt" or n.endswith("/wnids.txt")]
        if hits:
            best = min(hits, key=lambda n: n.count("/"))
            return best[: -len("wnids.txt")]
    else:
        for prefix in ("", "tiny-imagenet-200/"):
            if source.exists(prefix + "wnids.txt"):
                return prefix
    raise InputNotFoundError(
        f"no Tiny ImageNet 'wnids.txt' found in {source.path}; expected the official tiny-imagenet-200.zip "
        "or its extracted 'tiny-imagenet-200' folder"
    )


def _lines(source: Source, name: str) -> list[tuple[int, str]]:
    """``(line number, stripped line)`` of the non-blank lines of a UTF-8 text member.

    Raises:
        DataError: missing, unreadable or not UTF-8 text.
    """
    try:
        text = source.read(name).decode("utf-8-sig")
    except InputNotFoundError:
        raise DataError(f"'{name}' not found in {source.path}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"'{name}' in {source.path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:
        raise DataError(f"cannot read '{name}': {exc}") from None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def _at(source: Source, name: str, lineno: int) -> str:
    """``'<name>' line <lineno> in <container>`` for messages."""
    return f"'{name}' line {lineno} in {source.path}"


def _read_wnids(source: Source, name: str) -> list[str]:
    """The class ids of ``wnids.txt`` in order.

    Raises:
        DataError: empty, a malformed or repeated id (file and line named).
    """
    where = f"'{name}' in {source.path}"
    lines = _lines(source, name)
    if not lines:
        raise DataError(f"{where} is empty: expected one WordNet id (e.g. n01443537) a line")
    seen: dict[str, int] = {}
    for lineno, wnid in lines:
        if any(c.isspace() for c in wnid) or "/" in wnid or "\\" in wnid or wnid in (".", ".."):
            raise DataError(f"{_at(source, name, lineno)}: {wnid[:80]!r} is not a class id (one id a line, no spaces)")
        if wnid in seen:
            raise DataError(f"{_at(source, name, lineno)}: class id {wnid!r} repeats line {seen[wnid]}")
        seen[wnid] = lineno
    return [w for _, w in lines]


def _read_val_annotations(source: Source, name: str, known: set[str]) -> list[tuple[str, str]]:
    """``(file name, wnid)`` of every line of ``val_annotations.txt``, in order.

    Raises:
        DataError: empty; a malformed line, an unsafe file name, an unknown class or a
            repeated file (file and line named).
    """
    where = f"'{name}' in {source.path}"
    lines = _lines(source, name)
    if not lines:
        raise DataError(f"{where} is empty: expected one 'file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1' line per image")
    seen: dict[str, int] = {}
    out: list[tuple[str, str]] = []
    for lineno, line in lines:
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise DataError(f"{_at(source, name, lineno)}: expected 'file<TAB>wnid<TAB>...', got {line[:80]!r}")
        fname, wnid = fields[0], fields[1]
        reason = unsafe_name_reason(fname)
        if reason is not None:
            raise DataError(f"{_at(source, name, lineno)}: file name {fname[:80]!r} is refused: {reason}")
        if wnid not in known:
            raise DataError(f"{_at(source, name, lineno)}: unknown class id {wnid!r} (not in wnids.txt)")
        if fname in seen:
            raise DataError(
                f"{_at(source, name, lineno)}: {fname!r} is annotated again (first on line {seen[fname]}); "
                "remove the repeated line"
            )
        seen[fname] = lineno
        out.append((fname, wnid))
    return out


def _class_names(source: Source, name: str, wnids: list[str]) -> list[str]:
    """Names of ``words.txt`` (``wnid<TAB>names``) for ``wnids`` (the id when absent)."""
    index = set(wnids)
    words: dict[str, str] = {}
    if source.exists(name):
        for _, line in _lines(source, name):
            wnid, _, text = line.partition("\t")
            if wnid in index:
                words[wnid] = text.strip()
    return [words.get(w, w) for w in wnids]


def _train_items(source: Source, prefix: str, index: dict[str, int]) -> tuple[list[str], list[int]]:
    """``train/<wnid>/images/<file>`` members of the kept classes, sorted by (label, name)."""
    start = prefix + "train/"
    items = []
    for n in source.names(prefix + "train"):
        if not n.startswith(start) or not n.lower().endswith(_IMAGE_EXTS):
            continue
        parts = n[len(start):].split("/")
        if len(parts) == 3 and parts[1] == "images" and parts[0] in index:
            items.append((index[parts[0]], n))
    items.sort()
    return [n for _, n in items], [y for y, _ in items]


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
        cache_threads: threads for the cache build / verification (default: usable CPUs).
        skip_corrupt: decode every file once now and drop the unreadable ones
            (``.skipped``, ``.skipped_images``) instead of raising when one is read.
        transform: callable applied to the uint8 image tensor.
        download: fetch the official archive when not found (into ``root`` or the cache dir).
        url, md5: download location and checksum (overridable for mirrors / tests).
        max_pixels: decoded-pixel limit per image (default: Pillow's, 89,478,485).
        progress: progress bar while caching / verifying.

    Raises:
        InputNotFoundError: data not found (message lists where it looked), or no ``wnids.txt``.
        DataError: a malformed ``wnids.txt`` / ``val/val_annotations.txt`` (see the module
            docstring; file and line named), or annotated images missing.
        UsageError: bad ``split`` / ``num_classes``.
        InvalidInputError: an unreadable zip.
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
        max_pixels: int | None = DATASET_MAX_PIXELS,
        progress: bool = True,
    ) -> None:
        super().__init__(transform=transform, skip_corrupt=skip_corrupt, max_pixels=max_pixels)
        if split not in ("train", "val"):
            raise UsageError(f"Tiny ImageNet split must be 'train' or 'val', got {split!r}")
        self.split = split
        path = locate("Tiny ImageNet", _NAMES, root, download=download, url=url, md5=md5)
        self.source = open_source(path)
        self.source_path = str(self.source.path)
        self._prefix = p = _find_prefix(self.source)
        all_wnids = _read_wnids(self.source, p + "wnids.txt")
        wnids = all_wnids
        if num_classes is not None:
            check_num_classes(num_classes, len(all_wnids))
            wnids = all_wnids[:num_classes]
        self.classes = wnids
        self.class_names = _class_names(self.source, p + "words.txt", wnids)
        index = {w: i for i, w in enumerate(wnids)}
        if split == "train":
            self.image_names, self.targets = _train_items(self.source, p, index)
        else:
            ann = p + "val/val_annotations.txt"
            pairs = _read_val_annotations(self.source, ann, set(all_wnids))  # any class, kept or not
            kept = [(f"{p}val/images/{f}", index[w]) for f, w in pairs if w in index]
            self.image_names = [n for n, _ in kept]
            self.targets = [y for _, y in kept]
            if not skip_corrupt:
                self._check_present(ann)
        self._prepare(cache, cache_threads, progress)

    def _check_present(self, ann: str) -> None:
        """Raise :class:`DataError` when annotated images are missing from the data."""
        missing = [n for n in self.image_names if not self.source.exists(n)]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise DataError(
                f"{len(missing)} image(s) annotated in '{ann}' are missing from {self.source_path}: "
                f"{', '.join(repr(m) for m in missing[:3])}{more} (use skip_corrupt / --skip-corrupt to skip them)"
            )

    def _load(self, index: int) -> torch.Tensor:
        return self._decode_member(self.source, self.image_names[index])

    def __repr__(self) -> str:
        kind = "zip" if isinstance(self.source, ZipSource) else "folder"
        return (
            f"TinyImageNet(split={self.split!r}, items={len(self)}, classes={self.num_classes}, "
            f"{kind}={self.source_path!r}, cached={self.cached})"
        )
