"""``build_dataset``: one entry point for every supported data set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from .base import ImageDataset, Transform
from .cifar import CIFAR
from .decode import DATASET_MAX_PIXELS
from .folder import ImageFolder
from .tiny_imagenet import TINY_IMAGENET_MD5, TINY_IMAGENET_URL, TinyImageNet

__all__ = ["build_dataset", "DATASETS"]

#: names accepted by :func:`build_dataset`.
DATASETS = ("tiny-imagenet", "cifar10", "cifar100", "folder")


def build_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "train",
    *,
    num_classes: int | None = None,
    cache: bool = False,
    skip_corrupt: bool = False,
    transform: Transform | None = None,
    download: bool = False,
    url: str | None = None,
    md5: str | None = None,
    label_type: str = "fine",
    cache_threads: int | None = None,
    max_pixels: int | None = DATASET_MAX_PIXELS,
    progress: bool = True,
) -> ImageDataset:
    """Build a classification data set; items ``(uint8 (3, H, W) RGB, int label)``.

    Args:
        name: ``"tiny-imagenet"``, ``"cifar10"``, ``"cifar100"`` or ``"folder"``.
        root: archive / folder (see each class); None searches ``$SWINLAB_DATA``,
            ``../shared/data`` and the download cache (``folder`` requires a root).
        split: ``"train"`` / ``"val"`` (CIFAR also ``"test"``; its ``"val"`` is the test split).
        num_classes: keep the first K classes only (labels 0..K-1).
        cache: decode all images once into memory (threaded; no-op for CIFAR, already in memory).
        skip_corrupt: decode every image once at construction and drop the unreadable ones
            (``.skipped``, ``.skipped_images`` + one warning) instead of raising when read.
        transform: callable on the uint8 image tensor.
        download: fetch the official archive if missing (tiny-imagenet, cifar).
        url, md5: override the download location / checksum.
        label_type: CIFAR-100 ``"fine"`` or ``"coarse"``.
        cache_threads: threads for the cache build / verification (default: usable CPUs).
        max_pixels: decoded-pixel limit per image (Tiny ImageNet, folder); default
            Pillow's 89,478,485; None = Pillow's own guard only.
        progress: progress bar while caching / verifying (Tiny ImageNet, folder).

    Returns:
        An :class:`~swinlab.data.base.ImageDataset` (``.classes``, ``.class_names``,
        ``.num_classes``, ``.targets``, ``.image_names``, ``.samples``, ``.skipped``,
        ``.skipped_images``).

    Raises:
        UsageError: unknown name / split / option.
        InputNotFoundError: data not found (the message says where it looked).
        DataError: malformed data-set files (see each class).
    """
    key = name.lower().replace("_", "-")
    # options common to the data sets decoded from image files (Tiny ImageNet, image folder)
    image_file_options: dict[str, Any] = dict(
        num_classes=num_classes, cache=cache, cache_threads=cache_threads, skip_corrupt=skip_corrupt,
        transform=transform, max_pixels=max_pixels, progress=progress,
    )
    if key in ("tiny-imagenet", "tinyimagenet", "tiny-imagenet-200"):
        return TinyImageNet(
            root,
            split,
            download=download,
            url=url or TINY_IMAGENET_URL,
            md5=md5 if url else (md5 or TINY_IMAGENET_MD5),
            **image_file_options,
        )
    if key in ("cifar10", "cifar-10", "cifar100", "cifar-100"):
        return CIFAR(key.replace("-", ""), root, split, num_classes=num_classes, label_type=label_type,
                     transform=transform, download=download, url=url, md5=md5)
    if key in ("folder", "imagefolder", "image-folder"):
        if root is None:
            raise UsageError("build_dataset('folder') needs root=<folder with one sub-folder per class>")
        if download:
            raise UsageError("download=True is not supported for an image folder")
        return ImageFolder(root, split, **image_file_options)
    raise UsageError(f"unknown data set {name!r}; expected one of {DATASETS}")
