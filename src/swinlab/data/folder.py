"""Generic image folder: ``root/<class>/**/<image>`` (torchvision ImageFolder layout).

Images are the files whose extension is in :data:`swinlab.constants.IMAGE_EXTENSIONS`;
they are read through a :class:`~swinlab.data.sources.DirSource` (bounded reads,
names confined to the split folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..constants import IMAGE_EXTENSIONS
from ..errors import InputNotFoundError
from .base import ImageDataset, Transform, check_num_classes
from .decode import DATASET_MAX_PIXELS
from .sources import DirSource

__all__ = ["ImageFolder", "IMAGE_EXTENSIONS"]

_EXTS = tuple(sorted(IMAGE_EXTENSIONS))


class ImageFolder(ImageDataset):
    """Images in per-class sub-folders; classes sorted by folder name -> labels 0..K-1.

    If ``root/train`` (or ``root/val``) exists, ``root/<split>`` is used; otherwise
    ``root`` itself is the data for any split.  Files are found recursively inside each
    class folder (extensions case-insensitive), sorted.  Images may differ in size: use
    ``transform=ResizeUint8(size)`` before batching.

    Items: ``(uint8 (3, H, W) RGB, label)`` or ``transform(image)``.  ``image_names``
    are paths relative to the split folder (``source_path``).

    Args:
        root: the folder (holding ``<class>/`` folders, or ``train/`` / ``val/`` / ``test/``).
        split: sub-folder used when ``root`` has split folders.
        num_classes: keep only the first K classes (by folder name; labels 0..K-1).
        cache: decode every image once into memory (:meth:`build_cache`, threaded).
        cache_threads: threads for the cache build / verification (default: usable CPUs).
        skip_corrupt: decode every file once now and drop the unreadable ones
            (``.skipped``, ``.skipped_images``) instead of raising when one is read.
        transform: callable applied to the uint8 image tensor.
        max_pixels: decoded-pixel limit per image (default: Pillow's, 89,478,485).
        progress: progress bar while caching / verifying.

    Raises:
        InputNotFoundError: ``root`` / ``root/<split>`` missing, or no class folder with images.
        UsageError: bad ``num_classes``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        num_classes: int | None = None,
        cache: bool = False,
        cache_threads: int | None = None,
        skip_corrupt: bool = False,
        transform: Transform | None = None,
        max_pixels: int | None = DATASET_MAX_PIXELS,
        progress: bool = True,
    ) -> None:
        super().__init__(transform=transform, skip_corrupt=skip_corrupt, max_pixels=max_pixels)
        base = Path(root).expanduser().resolve()
        if not base.is_dir():
            raise InputNotFoundError(f"image folder not found: {base}")
        has_splits = any((base / s).is_dir() for s in ("train", "val", "test"))
        if has_splits:
            if not (base / split).is_dir():
                raise InputNotFoundError(f"split folder '{split}' not found in {base}")
            base = base / split
        self.split = split
        self.source = DirSource(base)
        self.source_path = str(self.source.path)
        classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
        names: list[str] = []
        targets: list[int] = []
        for label, cls in enumerate(classes):
            files = []
            for dirpath, dirnames, filenames in os.walk(base / cls):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                rel = Path(dirpath).relative_to(base).as_posix()
                files += [f"{rel}/{f}" for f in filenames if f.lower().endswith(_EXTS)]
            for f in sorted(files):
                names.append(f)
                targets.append(label)
        if not names:
            raise InputNotFoundError(
                f"no images ({', '.join(_EXTS)}) in class sub-folders of {base}; "
                "expected root/<class>/<image>"
            )
        if num_classes is not None:
            check_num_classes(num_classes, len(classes))
            keep = [i for i, y in enumerate(targets) if y < num_classes]
            names = [names[i] for i in keep]
            targets = [targets[i] for i in keep]
            classes = classes[:num_classes]
        self.classes = classes
        self.class_names = list(classes)
        self.image_names = names
        self.targets = targets
        self._prepare(cache, cache_threads, progress)

    def _load(self, index: int) -> torch.Tensor:
        return self._decode_member(self.source, self.image_names[index])

    def __repr__(self) -> str:
        return f"ImageFolder(root={self.source_path!r}, items={len(self)}, classes={self.num_classes})"
