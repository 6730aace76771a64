"""Attention maps per block, mapped back onto the token grid, and a figure.

Swin (Liu et al. 2021): each block's probabilities come per window of the
(cyclically shifted, padded) map, ``(B, nW, heads, N, N)``. The map of a
block is the attention each token *receives* -- averaged over heads and over
the queries of its window -- put back in place by undoing, in this order, the
window partition (``window_reverse``), the cyclic shift (roll by
``+shift``) and the padding (crop), i.e. exactly the inverse of the steps of
:meth:`swinlab.models.swin.SwinTransformerBlock.forward`.

ViT (Dosovitskiy et al. 2020): the class token's attention over the patch
tokens, averaged over heads (the "CLS attention" maps of Caron et al. 2021);
for models without a class token, the attention each patch receives,
averaged over heads and queries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..models.swin import SwinTransformer, window_reverse
from ..models.vit import VisionTransformer

__all__ = ["windows_to_map", "swin_attention_maps", "vit_attention_maps", "attention_maps", "last_stage_map",
           "denormalize"]


def windows_to_map(received: torch.Tensor, H: int, W: int, window_size: int, shift_size: int) -> torch.Tensor:
    """Put per-window token values back on the ``H x W`` token grid.

    Args:
        received: ``(nW, N)`` values per window token (windows in
            :func:`swinlab.models.swin.window_partition` order of the padded,
            shifted map; N = window_size**2).
        H, W: the block's (unpadded) token grid.
        window_size: M used by the block at this size. shift_size: its cyclic
            shift (0 for W-MSA blocks).

    Returns:
        ``(H, W)``.

    Raises:
        ValueError: ``received`` does not match the grid and window.
    """
    M = window_size
    Hp, Wp = math.ceil(H / M) * M, math.ceil(W / M) * M
    nW = (Hp // M) * (Wp // M)
    if received.shape != (nW, M * M):
        raise ValueError(
            f"expected ({nW}, {M * M}) window values for a {H}x{W} grid with window {M}, got {tuple(received.shape)}"
        )
    grid = window_reverse(received.unsqueeze(-1), M, Hp, Wp)[0, :, :, 0]  # (Hp, Wp)
    if shift_size > 0:
        grid = torch.roll(grid, shifts=(shift_size, shift_size), dims=(0, 1))
    return grid[:H, :W]


def _swin_grids(model: SwinTransformer, H: int, W: int) -> list[tuple[int, int]]:
    """Token grid of every block for an ``H x W`` input."""
    p = model.patch_size
    h, w = math.ceil(H / p), math.ceil(W / p)
    grids = []
    for layer in model.layers:
        grids.extend([(h, w)] * len(layer.blocks))
        if layer.downsample is not None:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
    return grids


def swin_attention_maps(model: SwinTransformer, attentions: Sequence[torch.Tensor], image_hw: tuple[int, int]) -> list[torch.Tensor]:
    """Received-attention maps of a Swin model, one ``(h, w)`` per block.

    Args:
        model: the model that produced ``attentions``.
        attentions: ``forward_attention``'s list of ``(B, nW, heads, N, N)``
            (softmax over the last axis: queries x keys); batch item 0 is used.
        image_hw: the input's ``(H, W)`` in pixels.

    Returns:
        per block, ``(h, w)`` float32 on the CPU: the mean over heads and
        queries of the attention each token gets as a key.

    Raises:
        ValueError: the attentions do not match the model's blocks.
    """
    blocks = [blk for layer in model.layers for blk in layer.blocks]
    grids = _swin_grids(model, *image_hw)
    if len(attentions) != len(blocks):
        raise ValueError(f"{len(attentions)} attention tensors for {len(blocks)} blocks")
    maps = []
    for blk, (h, w), a in zip(blocks, grids, attentions):
        ws, shift = blk.window_and_shift(h, w)
        received = a[0].float().mean(dim=1).mean(dim=1)  # (nW, heads, Nq, Nk) -> (nW, Nk)
        maps.append(windows_to_map(received.cpu(), h, w, ws, shift))
    return maps


def vit_attention_maps(model: VisionTransformer, attentions: Sequence[torch.Tensor], image_hw: tuple[int, int]) -> list[torch.Tensor]:
    """Per block, the class token's attention over the patches ``(gh, gw)``
    (mean over heads); without a class token, the attention each patch
    receives (mean over heads and queries). Batch item 0 is used.

    Raises:
        ValueError: token counts that do not match the patch grid.
    """
    if model.resize_to:
        gh, gw = model.grid_size
    else:
        gh, gw = image_hw[0] // model.patch_size, image_hw[1] // model.patch_size
    prefix = model.num_prefix_tokens
    maps = []
    for a in attentions:
        a = a[0].float().mean(dim=0)  # (T, T)
        if a.shape[-1] != prefix + gh * gw:
            raise ValueError(f"attention over {a.shape[-1]} tokens, expected {prefix} + {gh}x{gw}")
        row = a[0, prefix:] if prefix else a.mean(dim=0)
        maps.append(row.reshape(gh, gw).cpu())
    return maps


@torch.inference_mode()
def attention_maps(model: nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """Attention maps of every block for one preprocessed image.

    Args:
        model: a :class:`SwinTransformer` or :class:`VisionTransformer`.
        image: normalized float ``(3, H, W)`` (or ``(1, 3, H, W)``).

    Returns:
        one ``(h, w)`` float32 CPU tensor per block (token-grid resolution;
        Swin maps shrink stage by stage). See the module docstring.

    Raises:
        TypeError: another model type. ValueError: a bad image shape.
    """
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise ValueError(f"expected one image (3, H, W), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"expected a normalized float image, got dtype {image.dtype}")
    model.eval()
    p = next(model.parameters(), None)
    if p is not None:
        image = image.to(p.device)
    hw = (int(image.shape[-2]), int(image.shape[-1]))
    if isinstance(model, SwinTransformer):
        to_maps = swin_attention_maps
    elif isinstance(model, VisionTransformer):
        to_maps = vit_attention_maps
    else:
        raise TypeError(f"attention maps need a SwinTransformer or VisionTransformer, got {type(model).__name__}")
    _, attns = model.forward_attention(image)
    return to_maps(model, attns, hw)


def last_stage_map(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The attention map of the last stage for one preprocessed image: for
    Swin, the mean of the maps of the last stage's blocks (all on its token
    grid); for ViT, the last block's map.

    Args:
        model, image: as :func:`attention_maps` (normalized float ``(3, H, W)``).

    Returns:
        ``(h, w)`` float32 on the CPU.

    Raises:
        TypeError / ValueError: as :func:`attention_maps`.
    """
    maps = attention_maps(model, image)
    n_last = len(model.layers[-1].blocks) if isinstance(model, SwinTransformer) else 1
    return torch.stack(maps[-n_last:]).mean(dim=0)


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Undo normalisation: float ``(3, H, W)`` -> uint8 ``(3, H, W)``."""
    m = torch.tensor(list(mean), dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(3, 1, 1)
    return ((x.detach().float().cpu() * s + m).clamp(0, 1) * 255).round().to(torch.uint8)
