"""Data sets, preprocessing / augmentation, Mixup/CutMix and loaders.

Main entry points: :func:`build_dataset`, :class:`AugmentConfig`, :class:`BatchAugment`,
:class:`DeviceAugment` (per-image draws, no host synchronisation),
:class:`EvalTransform`, :func:`build_loader`, :class:`Mixup`, :class:`ResizeUint8`.
"""

from ..constants import IMAGE_EXTENSIONS
from .augment import BatchAugment, kornia_randaugment_magnitude
from .base import ImageDataset
from .build import DATASETS, build_dataset
from .cifar import CIFAR, CIFAR10, CIFAR100
from .config import AugmentConfig
from .device_augment import DeviceAugment
from .decode import DATASET_MAX_PIXELS, DEFAULT_MAX_PIXELS, CorruptImageError, decode_image
from .eval_transform import EvalTransform, Normalize
from .folder import ImageFolder
from .images import SkippedInput, expand_inputs, open_image
from .loader import build_loader, cached_batches, collate_images, epoch_seed
from .mixup import Mixup, cutmix_box, smooth_one_hot
from .randaugment import RANDAUGMENT_OPS, draw_randaugment, randaugment
from .resize import ResizeUint8, center_crop, resize, resize_shorter
from .sources import DEFAULT_MAX_BYTES
from .tiny_imagenet import TinyImageNet

__all__ = [
    "AugmentConfig",
    "BatchAugment",
    "CIFAR",
    "CIFAR10",
    "CIFAR100",
    "CorruptImageError",
    "DATASETS",
    "DATASET_MAX_PIXELS",
    "DeviceAugment",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "EvalTransform",
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "ImageFolder",
    "Mixup",
    "Normalize",
    "RANDAUGMENT_OPS",
    "ResizeUint8",
    "SkippedInput",
    "TinyImageNet",
    "build_dataset",
    "build_loader",
    "cached_batches",
    "center_crop",
    "collate_images",
    "cutmix_box",
    "decode_image",
    "draw_randaugment",
    "epoch_seed",
    "expand_inputs",
    "kornia_randaugment_magnitude",
    "open_image",
    "randaugment",
    "resize",
    "resize_shorter",
    "smooth_one_hot",
]
