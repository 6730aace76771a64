"""Evaluation preprocessing (:class:`EvalTransform`): resize, centre crop, normalise.

Follows the official Swin Transformer ``data/build.py`` test transform:
``Resize(int(img_size / crop_ratio), bicubic)`` + ``CenterCrop(img_size)`` when
``TEST.CROP`` (crop ratio 224/256 = 0.875), else ``Resize((img_size, img_size))``.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import AugmentConfig
from .resize import center_crop, resize, resize_shorter, to_float

__all__ = ["EvalTransform", "Normalize"]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel on float ``(B, 3, H, W)`` in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


class EvalTransform(nn.Module):
    """uint8 ``(B, 3, H, W)`` (or ``(3, H, W)``) -> float32 normalised ``(B, 3, img, img)``.

    Shorter side resized to ``int(img_size / eval_crop_ratio)`` (``cfg.interpolation``,
    antialiased when shrinking), then the central ``img_size`` square is cropped;
    ``eval_crop_ratio == 1.0`` resizes straight to ``img_size x img_size``.  Floating input
    is taken as [0, 1].  Runs on the input's device.

    Raises:
        TypeError / ValueError: input not a uint8/float tensor of shape (B, 3, H, W).
    """

    def __init__(self, cfg: AugmentConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or AugmentConfig(img_size=224)
        if self.cfg.img_size is None:
            raise ValueError("EvalTransform needs AugmentConfig.img_size (the evaluation input size in pixels)")
        self.normalize = Normalize(self.cfg.mean, self.cfg.std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        x = to_float(images)
        size = (cfg.img_size, cfg.img_size)
        if cfg.eval_crop_ratio >= 1.0:
            x = resize(x, size, cfg.interpolation)
        else:
            x = resize_shorter(x, int(cfg.img_size / cfg.eval_crop_ratio), cfg.interpolation)
            x = center_crop(x, size)
        return self.normalize(x.contiguous())
