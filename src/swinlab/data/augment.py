"""Training-time batch augmentation on uint8 batches (:class:`BatchAugment`), built on kornia.

Pipeline (official Swin Transformer ``build_transform(is_train=True)`` via timm
``create_transform``, then timm ``Mixup`` in the training loop), applied per batch on the
batch's device:

1. uint8 -> float [0, 1] (kornia expects floats in [0, 1]);
2. ``pad_crop``: RandomCrop(img, padding) (Swin's choice for <= 32 px inputs), else
   RandomResizedCrop(img, scale, ratio) (timm ``RandomResizedCropAndInterpolation``),
   else a plain resize to ``img x img``;
3. RandomHorizontalFlip(hflip);
4. RandAugment(n, m) -- kornia's op set; timm's magnitude ``m`` (0..10) is mapped to
   kornia's 0..30 scale (``3 m``, clipped to 1..29); kornia picks the ops per batch and
   has no magnitude noise (timm ``mstd0.5``); :class:`swinlab.data.DeviceAugment` (the
   graph step) draws them per image, as torchvision;
5. ColorJitter(brightness = contrast = saturation = color_jitter);
6. clamp to [0, 1], Normalize(mean, std);
7. RandomErasing(p) on the normalised tensor, erased with 0 (= the mean colour; timm's
   ``const`` mode -- Swin's default is per-pixel noise);
8. Mixup / CutMix with label smoothing (:class:`swinlab.data.Mixup`), or plain smoothed
   one-hot targets.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from kornia.augmentation.auto import RandAugment
from torch import nn

from .config import AugmentConfig, check_augment_setup
from .eval_transform import Normalize
from .mixup import Mixup, smooth_one_hot
from .resize import resize, to_float

__all__ = ["BatchAugment", "kornia_randaugment_magnitude"]


def kornia_randaugment_magnitude(m: float) -> int:
    """timm RandAugment magnitude (0..10, ``rand-m9`` = 9) -> kornia's ``m`` (open range 0..30)."""
    return int(min(29, max(1, round(3 * float(m)))))


class BatchAugment(nn.Module):
    """``(images uint8 (B, 3, H, W), labels int64 (B,))`` -> ``(float32 (B, 3, img, img), float32 (B, K))``.

    Images come out normalised with ``cfg.mean`` / ``cfg.std``; targets are soft labels
    (rows sum to 1) with Mixup/CutMix and label smoothing folded in, ready for a
    soft-target cross-entropy.  Every step is switched by ``cfg`` (module docstring lists
    the order).  Randomness comes from torch's global RNG, so ``torch.manual_seed`` (or a
    saved/restored RNG state) reproduces a batch.  Input may be on any device; floating
    input is taken as [0, 1].

    Args:
        cfg: augmentation settings.
        num_classes: number of classes K of the targets.

    Raises:
        ValueError: ``num_classes < 1``; at call time: wrong shapes, labels out of range.
    """

    def __init__(self, cfg: AugmentConfig, num_classes: int) -> None:
        super().__init__()
        num_classes = check_augment_setup(cfg, num_classes, "BatchAugment")
        if cfg.randaugment_mstd > 0:
            raise ValueError(f"aug.randaugment_mstd={cfg.randaugment_mstd}: kornia's RandAugment has no magnitude "
                             f"noise; it is drawn by the graph step's DeviceAugment (train_step='graph')")
        self.cfg = cfg
        self.num_classes = int(num_classes)
        size = (cfg.img_size, cfg.img_size)
        resample = cfg.interpolation.upper()
        geo: list[nn.Module] = []
        if cfg.pad_crop is not None:
            geo.append(K.RandomCrop(size, padding=cfg.pad_crop, fill=0.0, padding_mode="constant"))
        elif cfg.random_resized_crop:
            geo.append(
                K.RandomResizedCrop(
                    size, scale=cfg.crop_scale, ratio=cfg.crop_ratio_range, resample=resample, align_corners=False
                )
            )
        if cfg.hflip > 0:
            geo.append(K.RandomHorizontalFlip(p=cfg.hflip))
        self.geometric = nn.Sequential(*geo)
        color: list[nn.Module] = []
        if cfg.randaugment_n > 0:
            color.append(RandAugment(n=cfg.randaugment_n, m=kornia_randaugment_magnitude(cfg.randaugment_m)))
        if cfg.color_jitter > 0:
            j = float(cfg.color_jitter)
            color.append(K.ColorJitter(brightness=j, contrast=j, saturation=j, hue=0.0, p=1.0))
        self.color = nn.Sequential(*color)
        self.normalize = Normalize(cfg.mean, cfg.std)
        self.erasing = K.RandomErasing(p=cfg.random_erasing, value=0.0) if cfg.random_erasing > 0 else None
        self.mixup = (
            Mixup(
                mixup_alpha=cfg.mixup_alpha,
                cutmix_alpha=cfg.cutmix_alpha,
                prob=cfg.mixup_prob,
                switch_prob=cfg.switch_prob,
                label_smoothing=cfg.label_smoothing,
                num_classes=self.num_classes,
            )
            if cfg.mixup_active
            else None
        )

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        x = to_float(images)
        if x.ndim != 4:
            raise ValueError(f"BatchAugment expects a batch (B, 3, H, W), got {tuple(images.shape)}")
        if not isinstance(labels, torch.Tensor) or labels.shape != (x.shape[0],):
            raise ValueError(
                f"labels must be an int64 tensor of shape ({x.shape[0]},), got {getattr(labels, 'shape', labels)}"
            )
        size = (cfg.img_size, cfg.img_size)
        if cfg.pad_crop is not None or not cfg.random_resized_crop:
            x = resize(x, size, cfg.interpolation)
        with torch.no_grad():
            x = self.geometric(x)
            if cfg.interpolation == "bicubic":
                x = x.clamp(0.0, 1.0)
            x = self.color(x).clamp(0.0, 1.0)
            x = self.normalize(x)
            if self.erasing is not None:
                x = self.erasing(x)
            labels = labels.to(x.device)
            if self.mixup is not None:
                x, targets = self.mixup(x, labels)
            else:
                targets = smooth_one_hot(labels, self.num_classes, cfg.label_smoothing)
        return x.contiguous(), targets
