"""Augmentation / preprocessing configuration (:class:`AugmentConfig`).

The defaults and field meanings follow the official Swin Transformer training
recipe (microsoft/Swin-Transformer ``config.py`` ``AUG`` / ``DATA`` sections and
``data/build.py``), which itself uses timm's ``create_transform`` and ``Mixup``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..constants import DEFAULT_CROP_RATIO, DEFAULT_INTERPOLATION, IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS
from ..errors import ConfigError

__all__ = ["AugmentConfig", "INTERPOLATIONS", "check_augment_setup"]

_PAIR_FIELDS = ("crop_scale", "crop_ratio_range")
_TRIPLE_FIELDS = ("mean", "std")


def _check_prob(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
        raise ConfigError(f"AugmentConfig.{name} must be a probability in [0, 1], got {value!r}")


def _check_nonneg(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(float(value)) and float(value) >= 0.0):
        raise ConfigError(f"AugmentConfig.{name} must be a finite number >= 0, got {value!r}")


@dataclass
class AugmentConfig:
    """Training augmentation and eval preprocessing settings.

    Every augmentation can be switched off independently (``0`` / ``False`` /
    ``None``).  Used by :class:`swinlab.data.BatchAugment` (training) and
    :class:`swinlab.data.EvalTransform` (evaluation / prediction).

    Fields (units in brackets):
        img_size: output side length [pixels]; outputs are ``(B, 3, img_size, img_size)``.
            None (in a training config): the model's input size, filled in when the run starts.
        random_resized_crop: use RandomResizedCrop(``crop_scale``, ``crop_ratio_range``)
            (Szegedy et al. 2015 "Inception" crop, as in timm / Swin).
        crop_scale: (min, max) area fraction of the crop [fraction of the image area].
        crop_ratio_range: (min, max) aspect ratio w/h of the crop.
        pad_crop: if set (e.g. 4), random crop of ``img_size`` after zero padding by
            this many pixels instead of RandomResizedCrop (official Swin code for
            ``img_size <= 32``, i.e. CIFAR-size inputs).
        hflip: probability of a horizontal flip.
        randaugment_n: number of RandAugment ops per batch (0 = off).
        randaugment_m: RandAugment magnitude on timm's 0..10 scale (``rand-m9`` = 9);
            times 3 on kornia's and torchvision's 0..30 scale.
        randaugment_mstd: per-image Gaussian noise (std, timm's 0..10 scale) on the
            RandAugment magnitude, timm's ``mstd``; 0 = torchvision's fixed magnitude.
            Only :class:`swinlab.data.DeviceAugment` (the graph step) draws it.
        color_jitter: brightness/contrast/saturation jitter strength (0 = off); timm /
            Swin apply it only when RandAugment is off, here both are honoured if set.
        random_erasing: probability of random erasing (Zhong et al. 2017) per image.
        mixup_alpha: Beta(alpha, alpha) parameter of Mixup (Zhang et al. 2018), 0 = off.
        cutmix_alpha: Beta(alpha, alpha) parameter of CutMix (Yun et al. 2019), 0 = off.
        mixup_prob: probability of applying Mixup or CutMix to a batch.
        switch_prob: probability of CutMix instead of Mixup when both are enabled.
        label_smoothing: label smoothing epsilon folded into the soft targets.
        mean, std: per-channel normalisation of [0, 1] RGB values (ImageNet defaults).
        eval_crop_ratio: eval resize-then-centre-crop ratio (0.875 = 224/256 as in Swin's
            ``TEST.CROP``); 1.0 = plain resize to ``img_size``.
        interpolation: ``"bicubic"`` (Swin default), ``"bilinear"`` or ``"nearest"``.

    Raises:
        ConfigError: (a ``ValueError``) on any out-of-range value (the message
            names the field and the value).
    """

    img_size: int | None = None
    random_resized_crop: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio_range: tuple[float, float] = (3 / 4, 4 / 3)
    pad_crop: int | None = None
    hflip: float = 0.5
    randaugment_n: int = 0
    randaugment_m: float = 9
    randaugment_mstd: float = 0.0
    color_jitter: float = 0.0
    random_erasing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mixup_prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    eval_crop_ratio: float = DEFAULT_CROP_RATIO
    interpolation: str = DEFAULT_INTERPOLATION

    def __post_init__(self) -> None:
        for name in _PAIR_FIELDS + _TRIPLE_FIELDS:
            value = getattr(self, name)
            want = 2 if name in _PAIR_FIELDS else 3
            if not isinstance(value, (list, tuple)) or len(value) != want:
                raise ConfigError(f"AugmentConfig.{name} must be a sequence of {want} numbers, got {value!r}")
            try:
                setattr(self, name, tuple(float(v) for v in value))
            except (TypeError, ValueError):
                raise ConfigError(f"AugmentConfig.{name} must contain numbers, got {value!r}") from None
        if self.img_size is not None and (
            isinstance(self.img_size, bool) or not isinstance(self.img_size, int) or self.img_size < 1
        ):
            raise ConfigError(f"AugmentConfig.img_size must be a positive int (or null: the model's), "
                              f"got {self.img_size!r}")
        lo, hi = self.crop_scale
        if not (0.0 < lo <= hi <= 1.0):
            raise ConfigError(f"AugmentConfig.crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale!r}")
        lo, hi = self.crop_ratio_range
        if not (0.0 < lo <= hi):
            raise ConfigError(
                f"AugmentConfig.crop_ratio_range must satisfy 0 < min <= max, got {self.crop_ratio_range!r}"
            )
        if self.pad_crop is not None and (
            isinstance(self.pad_crop, bool) or not isinstance(self.pad_crop, int) or self.pad_crop < 0
        ):
            raise ConfigError(f"AugmentConfig.pad_crop must be None or an int >= 0, got {self.pad_crop!r}")
        for name in ("hflip", "random_erasing", "mixup_prob", "switch_prob"):
            _check_prob(name, getattr(self, name))
        if not (0.0 <= float(self.label_smoothing) < 1.0):
            raise ConfigError(f"AugmentConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        for name in ("color_jitter", "mixup_alpha", "cutmix_alpha", "randaugment_mstd"):
            _check_nonneg(name, getattr(self, name))
        if isinstance(self.randaugment_n, bool) or not isinstance(self.randaugment_n, int) or not (
            0 <= self.randaugment_n <= 14
        ):
            raise ConfigError(f"AugmentConfig.randaugment_n must be an int in [0, 14], got {self.randaugment_n!r}")
        if not (isinstance(self.randaugment_m, (int, float)) and 0.0 <= float(self.randaugment_m) <= 10.0):
            raise ConfigError(
                f"AugmentConfig.randaugment_m must be in [0, 10] (timm scale), got {self.randaugment_m!r}"
            )
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"AugmentConfig.std must be positive, got {self.std!r}")
        if not (0.0 < float(self.eval_crop_ratio) <= 1.0):
            raise ConfigError(f"AugmentConfig.eval_crop_ratio must be in (0, 1], got {self.eval_crop_ratio!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"AugmentConfig.interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}"
            )

    @property
    def mixup_active(self) -> bool:
        """True when Mixup or CutMix can change a batch."""
        return self.mixup_prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AugmentConfig":
        """Build a config from a mapping (e.g. parsed JSON); lists become tuples.

        Raises:
            ConfigError: ``d`` is not a mapping, has unknown keys (each named,
                with the closest valid key) or bad values.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"aug must be an object of augmentation settings, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            hints = "; ".join(f"{k!r}: did you mean {c[0]!r}?" if (c := difflib.get_close_matches(k, known, n=1))
                              else f"{k!r}" for k in unknown)
            raise ConfigError(f"unknown aug key(s): {hints} (valid keys: {', '.join(known)})")
        return cls(**dict(d))

    def with_size(self, img_size: int) -> "AugmentConfig":
        """A copy with ``img_size`` set (the model's input size, or a
        progressive-resizing phase)."""
        return dataclasses.replace(self, img_size=int(img_size))

    def eval_preprocessing(self) -> dict[str, Any]:
        """The evaluation preprocessing in the keys of a model's
        ``pretrained_cfg`` preprocessing (``save_pretrained``, export
        metadata): ``mean``, ``std``, ``input_size`` ``[H, W]``, ``crop_ratio``
        (this config's ``eval_crop_ratio``), ``interpolation``."""
        return {"mean": list(self.mean), "std": list(self.std), "input_size": [self.img_size, self.img_size],
                "crop_ratio": self.eval_crop_ratio, "interpolation": self.interpolation}

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict (tuples as lists) that :meth:`from_dict` reads back."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


def check_augment_setup(cfg: AugmentConfig, num_classes: int, who: str) -> int:
    """``num_classes`` as an int, for the batch augmentation ``who`` built from ``cfg``.

    Raises:
        ValueError: ``num_classes < 1`` or ``cfg.img_size`` unset.
    """
    if isinstance(num_classes, bool) or int(num_classes) < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if cfg.img_size is None:
        raise ValueError(f"{who} needs AugmentConfig.img_size (the training input size in pixels)")
    return int(num_classes)
