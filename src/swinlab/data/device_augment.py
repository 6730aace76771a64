"""Training augmentation with per-image randomness and no host work (:class:`DeviceAugment`).

The same pipeline and settings as :class:`swinlab.data.BatchAugment` (``AugmentConfig``),
written so that a GPU runs it without waiting for the host: every random draw is a tensor
on the batch's device, every shape is fixed by the batch and the config, nothing is read
back (no ``.item()``, no branching on tensor values), so the whole augmentation can be part
of one compiled graph (:mod:`swinlab.training.graph_step`).  Per image, as torchvision's
per-image transforms of reference 003 draw them:

1. uint8 -> float [0, 1];
2. RandomResizedCrop (torchvision ``get_params``: 10 tries of area ``crop_scale`` and
   log-uniform aspect ``crop_ratio_range``, the first that fits, else the central crop of
   the clamped aspect) or ``pad_crop`` (random crop of the zero-padded image), and the
   horizontal flip, as one affine matrix per image: one batched resampling
   (``affine_grid`` + ``grid_sample``, ``cfg.interpolation``; no antialiasing, so a crop
   larger than the output aliases: reference 003's crops are upsampled); without
   RandomResizedCrop the batch is first resized (antialiased) to the output size;
3. RandAugment(n, m) with operations and magnitudes per image
   (:mod:`swinlab.data.randaugment`; ``m`` is timm's 0..10 scale of the config, times 3 on
   torchvision's 0..30 scale, ``randaugment_mstd`` its per-image noise);
4. ColorJitter(brightness = contrast = saturation = ``color_jitter``): factors uniform in
   ``[1 - j, 1 + j]`` and the order of the three drawn per image (torchvision's blends);
5. Normalize(mean, std), then RandomErasing(p) per image (torchvision ``get_params``:
   scale (0.02, 0.33), ratio (0.3, 3.3), 10 tries, erased with 0);
6. Mixup / CutMix with label smoothing, one ``lam`` per batch (timm ``Mixup`` batch mode,
   as :class:`swinlab.data.Mixup`; the mixup-or-cutmix choice and the box are tensors).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import AugmentConfig, check_augment_setup
from .eval_transform import Normalize
from .randaugment import draw_randaugment, randaugment
from .resize import resize

__all__ = ["DeviceAugment", "crop_theta", "first_fit_boxes", "colour_jitter", "random_erase", "mix_batch",
           "smooth_targets"]

_TRIES = 10  # torchvision's attempts at a box that fits


def first_fit_boxes(batch: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                    device: torch.device, strict: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchvision's box draws (``RandomResizedCrop`` / ``RandomErasing.get_params``) for a batch.

    Per image 10 tries of area ``U(scale) * H * W`` and aspect ``w / h`` log-uniform in
    ``ratio``; the first try that fits (``strict``: ``h < H`` and ``w < W``, else ``<=``)
    is kept.

    Returns:
        ``(h, w)`` float ``(B,)`` whole-pixel sizes (0 where no try fits) and ``found``
        bool ``(B,)``.
    """
    area = height * width * torch.empty(batch, _TRIES, device=device).uniform_(*scale)
    aspect = torch.exp(torch.empty(batch, _TRIES, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (h < height) & (w < width) if strict else (h <= height) & (w <= width)
    fits = fits & (h > 0) & (w > 0)
    first = fits.to(torch.int8).argmax(1, keepdim=True)  # the first True (0 when none)
    found = fits.any(1)
    zero = torch.zeros(batch, device=device)
    return (torch.where(found, h.gather(1, first).squeeze(1), zero),
            torch.where(found, w.gather(1, first).squeeze(1), zero), found)


def _offsets(h: torch.Tensor, w: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners uniform over the whole-pixel positions (``randint(0, H - h + 1)``)."""
    top = torch.floor(torch.rand_like(h) * (height - h + 1))
    left = torch.floor(torch.rand_like(w) * (width - w + 1))
    return top, left


def _central_box(batch: int, height: int, width: int, ratio: tuple[float, float],
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's fallback crop size: the whole image at the aspect clamped to ``ratio``."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        h, w = round(width / ratio[0]), width
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return torch.full((batch,), float(h), device=device), torch.full((batch,), float(w), device=device)


def crop_theta(top: torch.Tensor, left: torch.Tensor, h: torch.Tensor, w: torch.Tensor, flip: torch.Tensor,
               height: int, width: int) -> torch.Tensor:
    """``(B, 2, 3)`` ``affine_grid`` matrices (``align_corners=False``) that resample the
    pixel boxes ``[top, top + h) x [left, left + w)`` of a ``height x width`` image to the
    whole output, mirrored where ``flip``. All arguments ``(B,)``."""
    sx = torch.where(flip, -w / width, w / width)
    tx = (2 * left + w) / width - 1
    sy = h / height
    ty = (2 * top + h) / height - 1
    zero = torch.zeros_like(sx)
    return torch.stack([torch.stack([sx, zero, tx], -1), torch.stack([zero, sy, ty], -1)], -2)


def colour_jitter(x: torch.Tensor, strength: float) -> torch.Tensor:
    """torchvision ``ColorJitter(b, c, s)`` with ``b = c = s = strength``, per image: float
    ``(B, 3, H, W)`` in [0, 1] -> same; factors ``U[max(0, 1 - s), 1 + s]``, the order of
    brightness / contrast / saturation a random permutation per image."""
    batch = x.shape[0]
    factor = torch.empty(batch, 3, device=x.device).uniform_(max(0.0, 1.0 - strength), 1.0 + strength)
    order = torch.rand(batch, 3, device=x.device).argsort(dim=1)
    f = factor.view(batch, 3, 1, 1, 1).unbind(1)  # brightness, contrast, saturation: (B, 1, 1, 1) each
    for slot in range(3):
        gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        brightness = _blend(x, torch.zeros_like(gray), f[0])
        contrast = _blend(x, gray.mean((-2, -1), keepdim=True), f[1])
        saturation = _blend(x, gray, f[2])
        which = order[:, slot].view(-1, 1, 1, 1)
        x = torch.where(which == 0, brightness, torch.where(which == 1, contrast, saturation))
    return x


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision ``_blend``: ``factor * x + (1 - factor) * other``, clamped to [0, 1]."""
    return (factor * x + (1.0 - factor) * other).clamp(0.0, 1.0)


def random_erase(x: torch.Tensor, p: float) -> torch.Tensor:
    """torchvision ``RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)`` per
    image, on ``(B, C, H, W)``; an image whose 10 tries all miss is left unchanged."""
    batch, _, height, width = x.shape
    # torchvision's RandomErasing takes the aspect as h / w (RandomResizedCrop: w / h): sides swapped
    w, h, found = first_fit_boxes(batch, width, height, (0.02, 0.33), (0.3, 3.3), x.device, strict=True)
    top, left = _offsets(h, w, height, width)
    rows = torch.arange(height, device=x.device).view(1, -1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, -1)
    inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + h).view(-1, 1, 1))
              & (cols >= left.view(-1, 1, 1)) & (cols < (left + w).view(-1, 1, 1)))
    erase = found & (torch.rand(batch, device=x.device) < p)
    return torch.where((inside & erase.view(-1, 1, 1)).unsqueeze(1), torch.zeros_like(x), x)


def smooth_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """int64 ``(B,)`` -> float32 ``(B, K)`` smoothed one-hot rows (``1 - eps + eps/K`` on the
    label), as :func:`swinlab.data.smooth_one_hot` without its range check (which reads the
    labels back to the host)."""
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter(1, labels.long().unsqueeze(1), 1.0 - smoothing + off)


def _beta(alpha: float, device: torch.device) -> torch.Tensor:
    """One draw of Beta(alpha, alpha), a 0-d tensor on ``device`` (1.0 when alpha is 0)."""
    if alpha <= 0:
        return torch.ones((), device=device)
    conc = torch.full((2,), float(alpha), device=device)
    g = torch.distributions.Gamma(conc, torch.ones_like(conc), validate_args=False).sample()
    return g[0] / g.sum()


def mix_batch(x: torch.Tensor, targets: torch.Tensor, mixup_alpha: float, cutmix_alpha: float, prob: float,
              switch_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """timm ``Mixup`` (batch mode, ``correct_lam``) on the device: ``(x (B, C, H, W), soft
    targets (B, K))`` mixed with the batch flipped, one ``lam ~ Beta`` per batch, CutMix
    instead of Mixup with probability ``switch_prob`` (when both alphas are set), nothing
    with probability ``1 - prob``; the CutMix box has side ``sqrt(1 - lam)``, a uniform
    centre, is clipped to the image, and ``lam`` becomes its uncovered share."""
    device, (height, width) = x.device, x.shape[-2:]
    apply = torch.rand((), device=device) < prob
    if mixup_alpha > 0 and cutmix_alpha > 0:
        cut = torch.rand((), device=device) < switch_prob
    else:
        cut = torch.full((), cutmix_alpha > 0, device=device)
    lam = torch.where(cut, _beta(cutmix_alpha, device), _beta(mixup_alpha, device))
    ratio = torch.sqrt(1.0 - lam)
    half_h, half_w = torch.floor(height * ratio) // 2, torch.floor(width * ratio) // 2
    cy = torch.randint(0, height, (), device=device)
    cx = torch.randint(0, width, (), device=device)
    y0, y1 = (cy - half_h).clamp(0, height), (cy + half_h).clamp(0, height)
    x0, x1 = (cx - half_w).clamp(0, width), (cx + half_w).clamp(0, width)
    rows = torch.arange(height, device=device).view(-1, 1)
    cols = torch.arange(width, device=device).view(1, -1)
    box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    other = x.flip(0)
    lam = torch.where(apply, torch.where(cut, 1.0 - (y1 - y0) * (x1 - x0) / float(height * width), lam),
                      torch.ones_like(lam))
    mixed = torch.where(cut, torch.where(box, other, x), x * lam + other * (1.0 - lam))
    x = torch.where(apply, mixed, x)
    return x, targets * lam + targets.flip(0) * (1.0 - lam)


class DeviceAugment(nn.Module):
    """``(images uint8 (B, 3, H, W), labels int64 (B,))`` -> ``(float32 (B, 3, img, img),
    float32 (B, K))``, on the images' device, with no host synchronisation (module docstring).

    The device counterpart of :class:`swinlab.data.BatchAugment` (same ``AugmentConfig``,
    same order, the same kind of output: normalised images and soft targets whose rows sum
    to 1), with torchvision's per-image draws where kornia draws per batch (RandAugment's
    operations, ColorJitter's order), so the two do not give the same batches.  Randomness comes from
    torch's generator of the images' device; the shapes of every intermediate depend only on
    ``B, H, W`` and ``cfg``.

    Args:
        cfg: augmentation settings (``img_size`` set).
        num_classes: number of classes K of the targets.

    Raises:
        ValueError: ``num_classes < 1`` or no ``img_size``; at call time: not a batch ``(B, 3, H, W)``.
    """

    def __init__(self, cfg: AugmentConfig, num_classes: int) -> None:
        super().__init__()
        num_classes = check_augment_setup(cfg, num_classes, "DeviceAugment")
        self.cfg, self.num_classes = cfg, int(num_classes)
        self.normalize = Normalize(cfg.mean, cfg.std)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        if images.ndim != 4 or images.shape[1] != 3 or labels.shape != images.shape[:1]:
            raise ValueError(f"DeviceAugment expects images (B, 3, H, W) and labels (B,), got "
                             f"{tuple(images.shape)} and {tuple(labels.shape)}")
        with torch.no_grad():
            x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
            x = self._geometric(x)
            if cfg.randaugment_n > 0:
                ops, mags = draw_randaugment(x.shape[0], cfg.randaugment_n, 3.0 * float(cfg.randaugment_m),
                                             3.0 * float(cfg.randaugment_mstd), x.device)
                x = randaugment(x, ops, mags)
            if cfg.color_jitter > 0:
                x = colour_jitter(x, float(cfg.color_jitter))
            x = self.normalize(x)
            if cfg.random_erasing > 0:
                x = random_erase(x, float(cfg.random_erasing))
            targets = smooth_targets(labels.to(x.device), self.num_classes, cfg.label_smoothing)
            if cfg.mixup_active:
                x, targets = mix_batch(x, targets, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mixup_prob,
                                       cfg.switch_prob)
        return x.contiguous(), targets

    def _geometric(self, x: torch.Tensor) -> torch.Tensor:
        """Crop (random-resized, padded or none) and flip as one resampling to ``img x img``."""
        cfg, (batch, _, height, width) = self.cfg, x.shape
        size = cfg.img_size
        if cfg.pad_crop is not None or not cfg.random_resized_crop:  # resized first, as BatchAugment
            x, height, width = resize(x, (size, size), cfg.interpolation), size, size
        flip = torch.rand(batch, device=x.device) < cfg.hflip
        if cfg.pad_crop is not None:  # a size x size window of the zero-padded image
            h = w = torch.full((batch,), float(size), device=x.device)
            pad = cfg.pad_crop
            top, left = (torch.floor(torch.rand(2, batch, device=x.device) * (2 * pad + 1)) - pad).unbind(0)
        elif cfg.random_resized_crop:
            h, w, found = first_fit_boxes(batch, height, width, cfg.crop_scale, cfg.crop_ratio_range, x.device,
                                          strict=False)
            ch, cw = _central_box(batch, height, width, cfg.crop_ratio_range, x.device)
            h, w = torch.where(found, h, ch), torch.where(found, w, cw)
            top, left = _offsets(h, w, height, width)
            top = torch.where(found, top, torch.floor((height - h) / 2))
            left = torch.where(found, left, torch.floor((width - w) / 2))
        else:
            h, w = torch.full((batch,), float(height), device=x.device), torch.full((batch,), float(width),
                                                                                     device=x.device)
            top = left = torch.zeros(batch, device=x.device)
        theta = crop_theta(top, left, h, w, flip, height, width)
        grid = F.affine_grid(theta, [batch, 3, size, size], align_corners=False)
        padding = "zeros" if cfg.pad_crop is not None else "border"
        x = F.grid_sample(x, grid, mode=cfg.interpolation, padding_mode=padding, align_corners=False)
        return x.clamp(0.0, 1.0)
