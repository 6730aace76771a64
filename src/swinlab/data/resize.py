"""Resizing / cropping helpers on image tensors, and :class:`ResizeUint8` for batching.

Semantics follow torchvision's ``Resize(int)`` (shorter side to ``size``, longer side
``int(size * long / short)``) and ``CenterCrop`` (offset ``int(round((H - h) / 2))``);
downscaling uses antialiasing like PIL / torchvision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["resize", "resize_shorter", "center_crop", "to_float", "ResizeUint8"]


def to_float(images: torch.Tensor, what: str = "images") -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; floating input is taken as [0, 1] already.

    Raises:
        TypeError: not a tensor, or an unsupported dtype.
        ValueError: not ``(B, 3, H, W)`` / ``(3, H, W)``.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"{what} must have shape (B, 3, H, W) or (3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if images.is_floating_point():
        return images.float()
    raise TypeError(f"{what} must be uint8 (0..255) or floating point (0..1), got {images.dtype}")


def resize(images: torch.Tensor, size: tuple[int, int], interpolation: str = "bicubic") -> torch.Tensor:
    """Resize float images ``(B, C, H, W)`` to ``size = (h, w)`` (antialiased when shrinking).

    Bicubic overshoot is clamped to [0, 1].  Returns the input itself when the size matches.
    """
    h, w = size
    if images.shape[-2:] == (h, w):
        return images
    squeeze = images.ndim == 3
    x = images.unsqueeze(0) if squeeze else images
    if interpolation == "nearest":
        out = F.interpolate(x, size=(h, w), mode="nearest")
    else:
        shrink = h < x.shape[-2] or w < x.shape[-1]
        out = F.interpolate(x, size=(h, w), mode=interpolation, align_corners=False, antialias=shrink)
        if interpolation == "bicubic":
            out = out.clamp_(0.0, 1.0)
    return out.squeeze(0) if squeeze else out


def resize_shorter(images: torch.Tensor, size: int, interpolation: str = "bicubic") -> torch.Tensor:
    """Resize so the shorter side is ``size`` (torchvision ``Resize(int)`` rule)."""
    h, w = images.shape[-2:]
    if h <= w:
        new = (size, int(size * w / h))
    else:
        new = (int(size * h / w), size)
    return resize(images, new, interpolation)


def center_crop(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Central ``size = (h, w)`` crop (torchvision ``CenterCrop`` offsets).

    Raises:
        ValueError: the image is smaller than the crop.
    """
    h, w = size
    H, W = images.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"cannot centre-crop {h}x{w} from an image of {H}x{W}")
    top = int(round((H - h) / 2.0))
    left = int(round((W - w) / 2.0))
    return images[..., top : top + h, left : left + w]


class ResizeUint8:
    """Per-image transform giving every image the same size so it can be batched.

    uint8 ``(3, H, W)`` -> uint8 ``(3, size, size)`` (or ``(3, h, w)`` for a pair).  With
    ``crop=True`` (default) the shorter side goes to ``size`` and the centre is cropped
    (no distortion); with ``crop=False`` the image is resized to the size directly.
    Pickles cleanly (usable in DataLoader workers).

    Raises:
        ValueError: non-positive size.  TypeError: input not uint8.
    """

    def __init__(self, size: int | tuple[int, int], *, crop: bool = True, interpolation: str = "bicubic") -> None:
        pair = (size, size) if isinstance(size, int) else tuple(size)
        if len(pair) != 2 or any(int(s) < 1 for s in pair):
            raise ValueError(f"ResizeUint8 size must be a positive int or (h, w), got {size!r}")
        self.size = (int(pair[0]), int(pair[1]))
        self.crop = crop
        self.interpolation = interpolation

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
            raise TypeError(f"ResizeUint8 expects a uint8 tensor (3, H, W), got {getattr(image, 'dtype', type(image))}")
        if image.shape[-2:] == self.size:
            return image
        x = to_float(image, "image")
        if self.crop:
            x = resize_shorter(x, max(self.size), self.interpolation)
            x = center_crop(x, self.size)
        else:
            x = resize(x, self.size, self.interpolation)
        return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)

    def __repr__(self) -> str:
        return f"ResizeUint8(size={self.size}, crop={self.crop}, interpolation={self.interpolation!r})"
