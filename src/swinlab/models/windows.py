"""Window geometry of the Swin Transformer (Liu et al. 2021, Sec. 3.2):
window partition and reverse, the cyclic shift, the SW-MSA attention mask
and the relative position index.

Everything here depends on Python integers only (map size, window, shift),
so the masks and index tensors are built once per size and cached (on the
CPU, then per device), and a traced or exported graph gets them as
constants for its input size.

The shift and partition here are the official ``torch.roll`` + reshape;
the one-gather form that replaces them in a model with
``SpeedOptions.one_gather_shift`` is :func:`swinlab.models.fast.shift_and_partition`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from .layers import is_building_graph

__all__ = [
    "MASK_FILL",
    "window_partition",
    "window_reverse",
    "shift_and_partition",
    "merge_and_unshift",
    "relative_position_index",
    "relative_coords_table",
    "shift_attention_mask",
    "expand_window_mask",
]

#: the value the model puts between tokens of different regions of the shifted
#: map. The official code uses -100: its masked softmax weights, e^-100 ~ 4e-44,
#: are float32 *denormals*, which make the softmax backward and the matmuls that
#: read the probabilities several times slower on x86 CPUs. -1e4 gives weights of
#: exactly 0; outputs differ from the official ones by ~e^-100 relative, far below
#: float32 resolution (the reference logits match to < 1e-6).
MASK_FILL = -1.0e4


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Split a map into non-overlapping square windows (official ``window_partition``).

    Args:
        x: ``(B, H, W, C)`` with H and W multiples of ``window_size``.
        window_size: window side M in tokens.

    Returns:
        ``(B * num_windows, M * M, C)``, windows in row-major order per image.
    """
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, C)


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, M * M, C) -> (B, H, W, C)``
    for a padded map of ``H x W`` tokens (multiples of M)."""
    C = windows.shape[-1]
    x = windows.view(-1, H // window_size, W // window_size, window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def shift_and_partition(x: torch.Tensor, window_size: int, shift_size: int) -> torch.Tensor:
    """Cyclic shift by ``-shift_size`` then window partition (paper Fig. 4).

    Args:
        x: ``(B, H, W, C)`` with H, W multiples of ``window_size``.

    Returns:
        ``(B * nW, M * M, C)``.
    """
    if shift_size:
        x = torch.roll(x, shifts=(-shift_size, -shift_size), dims=(1, 2))
    return window_partition(x, window_size)


def merge_and_unshift(windows: torch.Tensor, window_size: int, shift_size: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`shift_and_partition`: window reverse then the reverse
    cyclic shift. ``(B * nW, M * M, C) -> (B, H, W, C)``."""
    x = window_reverse(windows, window_size, H, W)
    return torch.roll(x, shifts=(shift_size, shift_size), dims=(1, 2)) if shift_size else x


@torch.inference_mode(False)
def _build_relative_position_index(window_size: int, T: int, device: torch.device) -> torch.Tensor:
    ar = torch.arange(window_size, device=device)  # on the model's device (see fast._build_window_order)
    coords = torch.stack(torch.meshgrid(ar, ar, indexing="ij")).flatten(1)  # (2, M*M)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (T - 1)  # (N, N, 2)
    return rel[..., 0] * (2 * T - 1) + rel[..., 1]


_cached_relative_position_index = lru_cache(maxsize=64)(_build_relative_position_index)


def relative_position_index(window_size: int, table_window_size: int | None = None,
                            device: torch.device | str = "cpu") -> torch.Tensor:
    """Index into a relative position bias table for an M x M window.

    Paper Sec. 3.2, "Relative position bias": offsets along each axis lie in
    [-M+1, M-1], so the table has (2M-1)^2 rows. With ``table_window_size`` T >=
    M, the index points into a table built for a T x T window (its rows for
    the offsets a smaller window uses).

    Returns:
        ``(M*M, M*M)`` int64 tensor on ``device`` (cached per window, table and
        device; do not modify).

    Raises:
        ValueError: if ``table_window_size`` is smaller than ``window_size``.
    """
    T = window_size if table_window_size is None else table_window_size
    if T < window_size:
        raise ValueError(f"table window {T} is smaller than window {window_size}")
    build = _build_relative_position_index if is_building_graph() else _cached_relative_position_index
    return build(window_size, T, torch.device(device))


@torch.inference_mode(False)
def _build_relative_coords_table(window_size: int, pretrained_window_size: int, device: torch.device) -> torch.Tensor:
    offsets = torch.arange(-(window_size - 1), window_size, dtype=torch.float32, device=device)
    norm = (pretrained_window_size if pretrained_window_size > 0 else window_size) - 1
    if norm > 0:
        offsets = offsets / norm
    offsets = offsets * 8  # the normalised offsets span [-8, 8]
    log_spaced = torch.sign(offsets) * torch.log2(offsets.abs() + 1.0) / math.log2(8)
    grid = torch.stack(torch.meshgrid(log_spaced, log_spaced, indexing="ij"), dim=-1)  # (2M-1, 2M-1, 2)
    return grid.reshape(-1, 2)


_cached_relative_coords_table = lru_cache(maxsize=64)(_build_relative_coords_table)


def relative_coords_table(window_size: int, pretrained_window_size: int = 0,
                          device: torch.device | str = "cpu") -> torch.Tensor:
    """Log-spaced relative coordinates of Swin V2's continuous position bias
    (Liu et al. 2022, Sec. 3.3, Eq. 4; official ``relative_coords_table``).

    Each offset ``d`` in [-(M-1), M-1] along an axis is divided by ``P - 1``
    (``P = pretrained_window_size``, or M when it is 0: coordinates
    normalised by the pre-training window, so that a model fine-tuned at a
    larger window sees the offsets it was trained on at the same values),
    scaled to [-8, 8] and log-spaced: ``sign(x) * log2(1 + |x|) / log2(8)``.

    Returns:
        ``((2M-1)^2, 2)`` float32 (row ``(dh + M-1) * (2M-1) + (dw + M-1)``,
        the rows :func:`relative_position_index` points to; cached per
        window, pre-training window and device: do not modify).

    Raises:
        ValueError: ``window_size < 1``, or ``pretrained_window_size`` that is
            negative or 1 (a 1-token window has no offsets to normalise by).
    """
    if window_size < 1:
        raise ValueError(f"window_size must be >= 1, got {window_size}")
    if pretrained_window_size < 0 or pretrained_window_size == 1:
        raise ValueError(f"pretrained_window_size must be 0 (none) or >= 2, got {pretrained_window_size}")
    build = _build_relative_coords_table if is_building_graph() else _cached_relative_coords_table
    return build(int(window_size), int(pretrained_window_size), torch.device(device))


@torch.inference_mode(False)
def _build_shift_mask(H: int, W: int, window_size: int, shift_size: int, fill: float,
                      device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    img_mask = torch.zeros((1, H, W, 1), device=device)  # on the model's device (see fast._build_window_order)
    regions = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    for cnt, (h, w) in enumerate((h, w) for h in regions for w in regions):
        img_mask[:, h, w, :] = cnt
    mask_windows = window_partition(img_mask, window_size).squeeze(-1)  # (nW, N)
    mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
    mask = mask.masked_fill(mask != 0, fill).masked_fill(mask == 0, 0.0)
    return mask.to(dtype=dtype)


_cached_shift_mask = lru_cache(maxsize=128)(_build_shift_mask)


def shift_attention_mask(H: int, W: int, window_size: int, shift_size: int, device: torch.device | str = "cpu",
                         dtype: torch.dtype | None = None, fill: float = -100.0) -> torch.Tensor:
    """Additive attention mask of SW-MSA (paper Sec. 3.2, "Efficient batch
    computation for shifted configuration"): ``fill`` between tokens that
    came from different regions of the cyclically shifted map, 0 elsewhere.
    The official code uses ``fill=-100``; the model uses :data:`MASK_FILL`.

    Args:
        H, W: padded map size in tokens (multiples of ``window_size``).
        window_size: M. shift_size: the cyclic shift, 0 < shift < M.

    Returns:
        ``(num_windows, M*M, M*M)`` (cached per size, device and dtype; do not modify).
    """
    build = _build_shift_mask if is_building_graph() else _cached_shift_mask
    return build(H, W, window_size, shift_size, float(fill), torch.device(device), dtype or torch.float32)


def expand_window_mask(mask: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat a per-window mask for every image: ``(nW, h, N, N) ->
    (batch*nW, h, N, N)`` (a copy: PyTorch's fused attention kernels take 4-D
    masks that broadcast only over size-1 dimensions)."""
    return mask.unsqueeze(0).expand(batch, *mask.shape).reshape(-1, *mask.shape[1:])
