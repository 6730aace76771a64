"""Mixup / CutMix with soft, label-smoothed targets (timm ``Mixup`` semantics, batch mode).

Follows ``timm.data.mixup.Mixup`` (used by the official Swin Transformer training):
one ``lam ~ Beta(alpha, alpha)`` per batch, images mixed with the batch flipped
(``x.flip(0)``), with probability ``prob`` per batch; when both are enabled CutMix is
chosen with probability ``switch_prob``; the CutMix box is centred uniformly, its side
``sqrt(1 - lam)`` of the image side, clipped at the border, and ``lam`` is corrected to
the actual pasted area; targets are ``lam * smooth(y) + (1 - lam) * smooth(y.flip(0))``
with ``smooth`` = one-hot ``1 - eps + eps/K`` / ``eps/K``.

Own implementation rather than kornia's ``RandomMixUpV2`` / ``RandomCutMixV2`` because
those return ``(label, label_perm, lam)`` triples per sample (no soft targets, no label
smoothing), draw ``lam`` per sample, and have no mixup/cutmix switch; this class gives
the exact timm/Swin recipe.  Randomness: torch's global RNG only.
"""

from __future__ import annotations

import torch

__all__ = ["Mixup", "smooth_one_hot", "cutmix_box"]


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """int64 ``(B,)`` -> float32 ``(B, num_classes)``: ``1 - eps + eps/K`` on the label, ``eps/K`` elsewhere.

    Raises:
        ValueError: labels not 1-D integer, or outside ``0 .. num_classes-1``.
    """
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor (B,), got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must be in 0..{num_classes - 1}, got values {int(labels.min())}..{int(labels.max())}"
        )
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    out = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device)
    return out.scatter_(1, labels.long().unsqueeze(1), on)


def cutmix_box(height: int, width: int, lam: float) -> tuple[int, int, int, int]:
    """timm ``rand_bbox``: box ``(y0, y1, x0, x1)`` of side ratio ``sqrt(1 - lam)``, random centre.

    Centre drawn with ``torch.randint`` (global RNG); the box is clipped to the image.
    """
    ratio = (1.0 - lam) ** 0.5
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(0, height, ()).item())
    cx = int(torch.randint(0, width, ()).item())
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y0, y1, x0, x1


class Mixup:
    """Batch Mixup / CutMix with label smoothing.

    Call: ``(images float (B, C, H, W), labels int64 (B,))`` ->
    ``(mixed images float (B, C, H, W), targets float32 (B, num_classes))``; each target
    row sums to 1.  The input images are not modified.  After a call, ``last_lam`` and
    ``last_mode`` (``"none"`` / ``"mixup"`` / ``"cutmix"``) describe what was done.

    Args:
        mixup_alpha, cutmix_alpha: Beta parameters (0 disables that method).
        prob: probability of mixing a batch at all.
        switch_prob: probability of CutMix when both are enabled.
        label_smoothing: epsilon of the smoothed one-hot targets.
        num_classes: number of classes K.
        correct_lam: recompute ``lam`` from the clipped CutMix box (timm default True).

    Raises:
        ValueError: negative alphas, probabilities outside [0, 1], ``num_classes < 1``.
    """

    def __init__(
        self,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        num_classes: int = 1000,
        correct_lam: bool = True,
    ) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha / cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        for name, p in (("prob", prob), ("switch_prob", switch_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"Mixup {name} must be in [0, 1], got {p}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.prob = float(prob)
        self.switch_prob = float(switch_prob)
        self.label_smoothing = float(label_smoothing)
        self.num_classes = int(num_classes)
        self.correct_lam = correct_lam
        self.last_lam = 1.0
        self.last_mode = "none"

    @staticmethod
    def _beta(alpha: float) -> float:
        a = torch.tensor([alpha], dtype=torch.float64)
        return float(torch.distributions.Beta(a, a).sample().item())

    def _params(self) -> tuple[float, bool]:
        lam, use_cutmix = 1.0, False
        enabled = self.mixup_alpha > 0 or self.cutmix_alpha > 0
        if enabled and float(torch.rand(())) < self.prob:
            if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
                use_cutmix = float(torch.rand(())) < self.switch_prob
                lam = self._beta(self.cutmix_alpha if use_cutmix else self.mixup_alpha)
            elif self.mixup_alpha > 0:
                lam = self._beta(self.mixup_alpha)
            else:
                use_cutmix = True
                lam = self._beta(self.cutmix_alpha)
        return lam, use_cutmix

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(f"Mixup expects float images (B, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape[:1] != images.shape[:1]:
            raise ValueError(f"Mixup: {labels.shape[0]} labels for {images.shape[0]} images")
        lam, use_cutmix = self._params()
        mode = "none"
        if lam < 1.0:
            if use_cutmix:
                H, W = images.shape[-2:]
                y0, y1, x0, x1 = cutmix_box(H, W, lam)
                images = images.clone()
                images[:, :, y0:y1, x0:x1] = images.flip(0)[:, :, y0:y1, x0:x1]
                if self.correct_lam:
                    lam = 1.0 - (y1 - y0) * (x1 - x0) / float(H * W)
                mode = "cutmix"
            else:
                images = images * lam + images.flip(0) * (1.0 - lam)
                mode = "mixup"
        y = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        targets = y * lam + y.flip(0) * (1.0 - lam) if lam < 1.0 else y
        self.last_lam, self.last_mode = lam, mode
        return images, targets

    def __repr__(self) -> str:
        return (
            f"Mixup(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, prob={self.prob}, "
            f"switch_prob={self.switch_prob}, label_smoothing={self.label_smoothing}, num_classes={self.num_classes})"
        )
