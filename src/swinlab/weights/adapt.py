"""Adapt a checkpoint's state dict to a model of another resolution, window
or class count (fine-tuning transfer).

Follows ``load_pretrained`` in ``utils.py`` of microsoft/Swin-Transformer:

* classifier: when the class counts differ the head is dropped so that the
  model keeps its own fresh initialisation, except ImageNet-22k (21,841
  classes) -> ImageNet-1k (1,000), which selects the 1,000 rows named by the
  shipped ``map22kto1k.txt`` (line k = the 22k index of 1k class k);
* ``relative_position_bias_table`` ``(L1, nH)``: viewed as
  ``(1, nH, S1, S1)`` and bicubic-interpolated (``align_corners=False``) to
  ``(S2, S2)``, then back to ``(L2, nH)``;
* ``absolute_pos_embed`` ``(1, S1*S1, C)``: bicubic resize of its grid to the
  model's patch grid;
* ViT ``pos_embed`` ``(1, prefix + S1*S1, C)``: the same resize of the patch
  part, prefix (class) tokens kept as they are (as timm's
  ``resample_abs_pos_embed``, without anti-aliasing so that it matches the
  run-time resize of :class:`~swinlab.models.vit.VisionTransformer`).

Tensors whose shapes cannot be adapted are left alone so that the loader
reports them as mis-shaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from .layouts import _BUFFER_SUFFIXES

__all__ = [
    "AdaptReport",
    "IN22K_CLASSES",
    "adapt_state_dict",
    "load_map22kto1k",
    "resize_abs_pos_embed",
    "resize_relative_position_bias_table",
    "resize_vit_pos_embed",
]

IN22K_CLASSES = 21841
IN1K_CLASSES = 1000

#: buffers some layouts save; never loaded (the model rebuilds them).
BUFFER_SUFFIXES = _BUFFER_SUFFIXES + ("relative_coords_table",)


@dataclass
class AdaptReport:
    """What :func:`adapt_state_dict` changed.

    Attributes:
        adapted: human-readable lines, one per changed tensor
            (``"layers.0.blocks.0.attn.relative_position_bias_table: (169, 1) -> (529, 1) bicubic"``).
        reinitialized: model keys deliberately left at the model's fresh
            initialisation (a dropped head); not "missing" for the loader.
        dropped: checkpoint keys removed (buffers, dropped head).
    """

    adapted: list[str] = field(default_factory=list)
    reinitialized: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


@lru_cache(maxsize=1)
def load_map22kto1k() -> tuple[int, ...]:
    """The 1,000 ImageNet-22k row indices of the ImageNet-1k classes, from the
    list shipped with the package (``swinlab/weights/map22kto1k.txt``, the
    official ``data/map22kto1k.txt``).

    Raises:
        ValueError: the shipped file is damaged (not 1,000 integers in
            ``[0, 21841)``).
    """
    text = resources.files(__package__).joinpath("map22kto1k.txt").read_text(encoding="utf-8")
    try:
        rows = tuple(int(line) for line in text.split())
    except ValueError as err:
        raise ValueError(f"map22kto1k.txt: expected one integer per line ({err})") from None
    if len(rows) != IN1K_CLASSES or not all(0 <= r < IN22K_CLASSES for r in rows):
        raise ValueError(
            f"map22kto1k.txt: expected {IN1K_CLASSES} indices in [0, {IN22K_CLASSES}), got {len(rows)} "
            f"(range {min(rows, default=None)}..{max(rows, default=None)})"
        )
    return rows


def _square_side(n: int, what: str) -> int:
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{what}: {n} positions do not form a square grid")
    return side


def resize_relative_position_bias_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """Resize a relative position bias table ``(L1, nH)`` -> ``(L2, nH)``.

    ``L = (2M-1)^2`` for window M. The table is viewed as ``(1, nH, S1, S1)``,
    resized with ``F.interpolate(mode="bicubic", align_corners=False)`` to
    ``(S2, S2)`` and returned as ``(S2*S2, nH)`` (official Swin fine-tuning,
    ``utils.load_pretrained``). Computed in float32, returned in the input dtype.

    Raises:
        ValueError: ``L1`` or ``L2`` is not a perfect square.
    """
    L1, nH = table.shape
    s1 = _square_side(L1, "relative_position_bias_table")
    s2 = _square_side(length, "relative_position_bias_table target")
    grid = table.float().permute(1, 0).reshape(1, nH, s1, s1)
    grid = F.interpolate(grid, size=(s2, s2), mode="bicubic", align_corners=False)
    return grid.reshape(nH, s2 * s2).permute(1, 0).contiguous().to(table.dtype)


def _resize_grid(tokens: torch.Tensor, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    """``(1, h1*w1, C)`` -> ``(1, h2*w2, C)`` by bicubic resize of the grid."""
    C = tokens.shape[-1]
    grid = tokens.float().reshape(1, src[0], src[1], C).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=dst, mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, dst[0] * dst[1], C).to(tokens.dtype)


def resize_abs_pos_embed(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize Swin's ``absolute_pos_embed`` ``(1, S*S, C)`` to ``(1, gh*gw, C)``
    (bicubic, ``align_corners=False``; official ``utils.load_pretrained``).

    Raises:
        ValueError: the source positions do not form a square grid.
    """
    side = _square_side(pos.shape[1], "absolute_pos_embed")
    return _resize_grid(pos, (side, side), grid)


def resize_vit_pos_embed(pos: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int) -> torch.Tensor:
    """Resize a ViT ``pos_embed`` ``(1, prefix + S*S, C)`` to
    ``(1, prefix + gh*gw, C)``: the first ``num_prefix_tokens`` (class token)
    entries are kept, the patch grid is bicubic-resized.

    Raises:
        ValueError: the patch positions do not form a square grid.
    """
    prefix, patches = pos[:, :num_prefix_tokens], pos[:, num_prefix_tokens:]
    side = _square_side(patches.shape[1], "pos_embed (patch part)")
    return torch.cat([prefix, _resize_grid(patches, (side, side), grid)], dim=1)


def _adapt_head(sd: dict[str, torch.Tensor], target: dict[str, torch.Tensor], report: AdaptReport) -> None:
    w_key, b_key = "head.weight", "head.bias"
    if w_key not in sd:
        return
    if w_key not in target:  # model without a classifier (num_classes=0)
        for k in (w_key, b_key):
            if k in sd:
                del sd[k]
                report.dropped.append(k)
        report.adapted.append("head: dropped (the model has no classifier)")
        return
    w, tw = sd[w_key], target[w_key]
    if w.ndim != 2 or tw.ndim != 2 or w.shape[1] != tw.shape[1] or w.shape[0] == tw.shape[0]:
        return  # same class count, or a different architecture: the loader decides
    n_ckpt, n_model = w.shape[0], tw.shape[0]
    if n_ckpt == IN22K_CLASSES and n_model == IN1K_CLASSES:
        rows = torch.tensor(load_map22kto1k(), dtype=torch.long)
        sd[w_key] = w[rows].contiguous()
        if b_key in sd:
            sd[b_key] = sd[b_key][rows].contiguous()
        report.adapted.append(f"head: {IN22K_CLASSES} -> {IN1K_CLASSES} classes via map22kto1k.txt")
        return
    for k in (w_key, b_key):
        if k in sd:
            del sd[k]
            report.dropped.append(k)
        if k in target:
            report.reinitialized.append(k)
    report.adapted.append(f"head: {n_ckpt} -> {n_model} classes, re-initialised")


def adapt_state_dict(
    state_dict: dict[str, torch.Tensor], model: nn.Module
) -> tuple[dict[str, torch.Tensor], AdaptReport]:
    """Adapt ``state_dict`` (swinlab/official key names) to ``model``.

    Args:
        state_dict: parameter name -> tensor, already in swinlab names
            (see :func:`swinlab.weights.to_swinlab`). Not modified.
        model: the target :class:`~swinlab.models.swin.SwinTransformer` or
            :class:`~swinlab.models.vit.VisionTransformer` (any module works;
            only the tensors named above are touched).

    Returns:
        ``(new_state_dict, report)``; see the module docstring for the rules
        (source: ``load_pretrained`` of microsoft/Swin-Transformer).

    Raises:
        ValueError: a position table or embedding whose positions do not form
            a square grid while its size differs from the model's.
    """
    sd = dict(state_dict)
    report = AdaptReport()
    target = model.state_dict()

    for k in list(sd):
        if k.rsplit(".", 1)[-1] in BUFFER_SUFFIXES and k not in target:
            del sd[k]
            report.dropped.append(k)

    _adapt_head(sd, target, report)

    for k, v in list(sd.items()):
        if k not in target:
            continue
        t = target[k]
        if tuple(v.shape) == tuple(t.shape):
            continue
        leaf = k.rsplit(".", 1)[-1]
        if leaf == "relative_position_bias_table" and v.ndim == 2 and t.ndim == 2 and v.shape[1] == t.shape[1]:
            sd[k] = resize_relative_position_bias_table(v, t.shape[0])
        elif leaf == "absolute_pos_embed" and v.ndim == 3 and t.ndim == 3 and v.shape[2] == t.shape[2]:
            grid = tuple(getattr(model, "patches_resolution", ()))
            if len(grid) != 2 or grid[0] * grid[1] != t.shape[1]:
                grid = (_square_side(t.shape[1], f"{k} of the model"),) * 2
            sd[k] = resize_abs_pos_embed(v, grid)  # type: ignore[arg-type]
        elif k == "pos_embed" and v.ndim == 3 and t.ndim == 3 and v.shape[2] == t.shape[2]:
            prefix = int(getattr(model, "num_prefix_tokens", 0))
            grid = tuple(getattr(model, "grid_size", ()))
            if len(grid) != 2 or grid[0] * grid[1] != t.shape[1] - prefix:
                grid = (_square_side(t.shape[1] - prefix, f"{k} of the model"),) * 2
            sd[k] = resize_vit_pos_embed(v, grid, prefix)  # type: ignore[arg-type]
        else:
            continue
        report.adapted.append(f"{k}: {tuple(v.shape)} -> {tuple(sd[k].shape)} bicubic")
    return sd, report
