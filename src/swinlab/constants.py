"""Constants shared by every layer (one place for each): normalisation
statistics, evaluation crop defaults, interpolation names and the image file
extensions swinlab reads. Imports nothing."""

from __future__ import annotations

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DEFAULT_CROP_RATIO",
    "DEFAULT_INTERPOLATION",
    "INTERPOLATIONS",
    "IMAGE_EXTENSIONS",
]

#: ImageNet RGB mean and std of [0, 1] pixel values (torchvision / timm / official Swin).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: evaluation resize-then-centre-crop ratio below 384 px (official Swin ``TEST.CROP``: 224 / 256).
DEFAULT_CROP_RATIO = 0.875
#: resize mode of the official Swin evaluation.
DEFAULT_INTERPOLATION = "bicubic"
#: resize modes accepted everywhere (torch / kornia names).
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
#: file extensions treated as images when a folder or archive is listed (lower case).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm"}
)
