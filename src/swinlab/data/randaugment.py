"""RandAugment with the operations and magnitudes drawn per image, for a whole batch at once.

Follows torchvision's ``transforms.RandAugment(num_ops, magnitude, num_magnitude_bins=31)``
(Cubuk et al. 2020, "RandAugment", Sec. 3; reference 003 uses torchvision's defaults, 2
operations of magnitude 9): for every image and every one of the ``num_ops`` layers, one of
the 14 operations of :data:`RANDAUGMENT_OPS` is drawn uniformly (with replacement), and
signed operations get a random sign.  Magnitudes are on torchvision's 0..30 scale and map to
the same parameters as torchvision's ``_augmentation_space`` (ShearX/Y factor ``0.3 m/30``,
TranslateX/Y ``150/331`` of the side times ``m/30`` pixels, truncated; Rotate ``m`` degrees;
Brightness/Color/Contrast/Sharpness factor ``1 +- 0.9 m/30``; Posterize ``8 - round(m/7.5)``
bits; Solarize threshold ``1 - m/30``); the geometric operations use nearest-neighbour
sampling and black fill, like torchvision's defaults.  An optional Gaussian noise on the
magnitude per image (timm's ``mstd``) is clipped to [0, 30].

Why not kornia's ``RandAugment``: it draws the operations once per batch (every image of a
batch gets the same two operations) and its draws run on the host.  Here every operation
is computed for the whole batch and each image keeps the result of its own operation
(``torch.where`` on the per-image operation index): a fixed set of tensor operations with
static shapes, no host synchronisation, compilable as part of one graph.  The five
geometric operations share one batched resampling (one affine matrix per image).  kornia
still does the colour operations (``kornia.enhance``: saturation, contrast, sharpness,
posterize, solarize, equalize), which take per-image factors and compile.
"""

from __future__ import annotations

import math

import kornia.enhance as KE
import torch
import torch.nn.functional as F

__all__ = ["RANDAUGMENT_OPS", "SIGNED_OPS", "draw_randaugment", "randaugment", "geometric_theta"]

#: torchvision's RandAugment operations, in the order of its ``_augmentation_space``.
RANDAUGMENT_OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
                   "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
#: the operations whose magnitude gets a random sign (torchvision's ``signed`` flag).
SIGNED_OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
              "Sharpness")
_OP = {name: i for i, name in enumerate(RANDAUGMENT_OPS)}
_GEOMETRIC = (_OP["ShearX"], _OP["ShearY"], _OP["TranslateX"], _OP["TranslateY"], _OP["Rotate"])
MAX_MAGNITUDE = 30.0  # torchvision: num_magnitude_bins=31, bins 0..30


def draw_randaugment(batch: int, num_ops: int, magnitude: float, magnitude_std: float = 0.0,
                     device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The per-image draws of RandAugment: ``(ops int64 (B, n), magnitudes float32 (B, n))``.

    ``ops[b, k]`` indexes :data:`RANDAUGMENT_OPS`, uniform and independent per image and
    layer; ``magnitudes[b, k]`` is on torchvision's 0..30 scale: ``magnitude`` (plus
    ``N(0, magnitude_std)`` per image and layer, clipped to [0, 30]), negated with
    probability 1/2 for :data:`SIGNED_OPS`.  Drawn with torch's generator of ``device``.

    Raises:
        ValueError: ``magnitude`` outside [0, 30] or a negative ``magnitude_std``.
    """
    if not 0.0 <= magnitude <= MAX_MAGNITUDE or magnitude_std < 0:
        raise ValueError(f"RandAugment magnitude must be in [0, 30] (torchvision's scale) with std >= 0, got "
                         f"{magnitude}, std {magnitude_std}")
    ops = torch.randint(0, len(RANDAUGMENT_OPS), (batch, num_ops), device=device)
    mag = torch.full((batch, num_ops), float(magnitude), device=device)
    if magnitude_std > 0:
        mag = (mag + magnitude_std * torch.randn(batch, num_ops, device=device)).clamp(0.0, MAX_MAGNITUDE)
    signed = (ops >= _OP["ShearX"]) & (ops <= _OP["Sharpness"])  # SIGNED_OPS (no index list: no host copy)
    flip = (torch.rand(batch, num_ops, device=device) < 0.5) & signed
    return ops, torch.where(flip, -mag, mag)


def randaugment(images: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
    """Apply the layers of :func:`draw_randaugment` in order: float ``(B, 3, H, W)`` in [0, 1]
    -> ``(B, 3, H, W)`` in [0, 1]; image ``b`` gets operation ``ops[b, k]`` in layer ``k``."""
    x = images
    for k in range(ops.shape[1]):
        op, mag = ops[:, k], magnitudes[:, k]
        x = _colour(_geometric(x, op, mag), x, op, mag)
    return x


def _select(op: torch.Tensor, ids: int | tuple[int, ...]) -> torch.Tensor:
    """``(B, 1, 1, 1)`` bool: the images whose operation is one of ``ids``."""
    ids = (ids,) if isinstance(ids, int) else ids
    hit = op == ids[0]
    for i in ids[1:]:
        hit = hit | (op == i)
    return hit.view(-1, 1, 1, 1)


def geometric_theta(op: torch.Tensor, mag: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, 2, 3)`` ``affine_grid`` matrices (``align_corners=False``) of the geometric
    operations (the identity for the others), torchvision's parameters: shear about the
    top-left corner, rotation about the centre, translation in whole pixels."""
    zero, one = torch.zeros_like(mag), torch.ones_like(mag)
    rad = torch.where(op == _OP["Rotate"], mag * (math.pi / 180.0), zero)
    cos, sin = torch.cos(rad), torch.sin(rad)
    shear_x = torch.where(op == _OP["ShearX"], 0.3 * mag / MAX_MAGNITUDE, zero)
    shear_y = torch.where(op == _OP["ShearY"], 0.3 * mag / MAX_MAGNITUDE, zero)
    # forward map in pixels: p_out = M (p_in - c) + c + t  (y down; only one of the ops is active per image)
    m = torch.stack([torch.stack([cos, sin - shear_x], -1), torch.stack([-sin - shear_y, cos], -1)], -2)
    frac = 150.0 / 331.0 / MAX_MAGNITUDE
    t = torch.stack([torch.where(op == _OP["TranslateX"], torch.trunc(frac * width * mag), zero),
                     torch.where(op == _OP["TranslateY"], torch.trunc(frac * height * mag), zero)], -1)
    centre = torch.where((op == _OP["Rotate"]).unsqueeze(-1), torch.stack([one * width / 2, one * height / 2], -1),
                         torch.stack([zero, zero], -1))
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    i00, i01, i10, i11 = m[:, 1, 1] / det, -m[:, 0, 1] / det, -m[:, 1, 0] / det, m[:, 0, 0] / det
    # inverse in pixels: p_in = inv p_out + b, b = c - inv (c + t); in [-1, 1] coordinates p = s (n + 1)
    cx, cy = centre[:, 0] + t[:, 0], centre[:, 1] + t[:, 1]
    bx, by = centre[:, 0] - (i00 * cx + i01 * cy), centre[:, 1] - (i10 * cx + i11 * cy)
    sx, sy = width / 2.0, height / 2.0
    ox = (i00 * sx + i01 * sy + bx - sx) / sx
    oy = (i10 * sx + i11 * sy + by - sy) / sy
    return torch.stack([torch.stack([i00, i01 * sy / sx, ox], -1), torch.stack([i10 * sx / sy, i11, oy], -1)], -2)


def _geometric(x: torch.Tensor, op: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """The geometric operations of one layer: one nearest-neighbour resampling, black fill."""
    theta = geometric_theta(op, mag, x.shape[-2], x.shape[-1])
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return torch.where(_select(op, _GEOMETRIC), warped, x)


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """torchvision ``F.autocontrast``: each channel of each image stretched to [0, 1]
    (unchanged where it is constant). ``(B, C, H, W)`` in and out."""
    lo, hi = x.amin((-2, -1), keepdim=True), x.amax((-2, -1), keepdim=True)
    flat = hi <= lo
    scale = torch.where(flat, torch.ones_like(hi), 1.0 / (hi - lo).clamp_min(1e-12))
    return ((x - torch.where(flat, torch.zeros_like(lo), lo)) * scale).clamp(0.0, 1.0)


def _colour(out: torch.Tensor, x: torch.Tensor, op: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """The colour operations of one layer on ``x``, written into ``out`` for their images."""
    factor = 1.0 + 0.9 * mag / MAX_MAGNITUDE
    bits = (8 - torch.round(mag.abs() / 7.5)).to(torch.int64)
    candidates = {
        "Brightness": (x * factor.view(-1, 1, 1, 1)).clamp(0.0, 1.0),
        "Color": KE.adjust_saturation_with_gray_subtraction(x, factor),
        "Contrast": KE.adjust_contrast_with_mean_subtraction(x, factor),
        "Sharpness": KE.sharpness(x, factor),
        "Posterize": KE.posterize(x, bits),
        "Solarize": KE.solarize(x, 1.0 - mag.abs() / MAX_MAGNITUDE),
        "AutoContrast": autocontrast(x),
        "Equalize": KE.equalize(x),
    }
    for name, y in candidates.items():
        out = torch.where(_select(op, _OP[name]), y, out)
    return out
