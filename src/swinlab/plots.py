"""Figures (matplotlib, Agg backend): training curves, confusion matrices and
attention overlays -- the one plotting module, used by training, evaluation,
predict and serve. Imports nothing of swinlab; matplotlib is imported when a
figure is drawn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["save_figure", "plot_curves", "plot_confusion_matrix", "attention_overlay", "save_attention_figure"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out ``fig`` (``tight_layout``), create the parent folders of
    ``path`` and save it there at 100 dpi (format from the suffix, e.g. PNG).

    The figure is not closed; callers close it (``plt.close(fig)``) in a
    ``finally``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: the folder or the file cannot be written.
    """
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _series(records: Sequence[dict[str, Any]], key: str, x_key: str = "epoch_frac") -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        v, x = r.get(key), r.get(x_key, r.get("epoch"))
        if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(x, (int, float)):
            xs.append(float(x))
            ys.append(float(v))
    return xs, ys


def plot_curves(records: Sequence[dict[str, Any]], path: str | Path, title: str | None = None,
                steps: Sequence[dict[str, Any]] = ()) -> Path:
    """Write the training curves of a run to ``path`` (PNG): loss, learning
    rate and accuracy against the (fractional) epoch.

    Args:
        records: per-epoch dicts (:mod:`swinlab.training.logging`) with
            ``epoch_frac`` (else ``epoch``) and any of ``train_loss``,
            ``val_loss``, ``ema_val_loss``, ``train_acc``, ``val_top1``,
            ``val_top5``, ``ema_val_top1``, ``lr``; validation points are drawn
            at the epoch they were taken (a budget-stopped epoch at e.g. 3.45).
        path: the output file.
        title: optional figure title.
        steps: per-step dicts with ``epoch_frac``, ``train_loss``, ``lr``
            (``metrics_steps.csv``): drawn as lines, so a one-epoch run shows
            its whole loss curve.

    Returns:
        ``path``.

    Raises:
        ValueError: no records and no steps.
    """
    if not records and not steps:
        raise ValueError(f"no metric records to plot into {path}")
    plt = _pyplot()
    fig, (ax_loss, ax_lr, ax_acc) = plt.subplots(1, 3, figsize=(15, 4))
    try:
        xs, ys = _series(steps, "train_loss")
        if xs:
            ax_loss.plot(xs, ys, lw=0.8, alpha=0.8, label="train (per step)")
        for key, label in (("train_loss", "train (epoch mean)"), ("val_loss", "val"), ("ema_val_loss", "val (EMA)")):
            xs, ys = _series(records, key)
            if xs:
                ax_loss.plot(xs, ys, marker="o", markersize=4, ls="--" if key == "train_loss" else "-", label=label)
        xs, ys = _series(steps, "lr") if steps else _series(records, "lr")
        if xs:
            ax_lr.plot(xs, ys, color="tab:purple", marker=None if steps else "o")
        for key, label in (("train_acc", "train top-1"), ("val_top1", "val top-1"), ("val_top5", "val top-5"),
                           ("ema_val_top1", "val top-1 (EMA)")):
            xs, ys = _series(records, key)
            if xs:
                ax_acc.plot(xs, ys, marker="o", markersize=4, label=label)
        ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
        ax_lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
        ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
        for ax in (ax_loss, ax_lr, ax_acc):
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        if title:
            fig.suptitle(title)
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_confusion_matrix(
    path: str | Path,
    confusion: torch.Tensor | np.ndarray,
    class_names: Sequence[str] | None = None,
    max_labeled_classes: int = 30,
    title: str = "Confusion matrix (row-normalized)",
    subset: Sequence[int] | None = None,
) -> Path:
    """Save a row-normalized confusion matrix as a PNG (matplotlib, Agg).

    Args:
        path: output file. confusion: ``(C, C)`` counts (row: true class).
        class_names: C tick labels; ticks are left out when the matrix drawn
            has more than ``max_labeled_classes`` rows (or no names are given).
        subset: class indices: draw only their rows and columns (each row
            still normalized by all the images of its class), every cell with
            its count.

    Raises:
        ValueError: a non-square matrix, a wrong number of names or a subset
            index out of range.
    """
    m = confusion.detach().cpu().numpy() if isinstance(confusion, torch.Tensor) else np.asarray(confusion)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion must be a square (C, C) matrix, got shape {m.shape}")
    if class_names is not None and len(class_names) != m.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {m.shape[0]}x{m.shape[0]} confusion matrix")
    rows = m.sum(axis=1, keepdims=True).astype(np.float64)
    norm = np.divide(m, rows, out=np.zeros(m.shape, dtype=np.float64), where=rows > 0)
    idx = list(range(m.shape[0])) if subset is None else [int(i) for i in subset]
    if any(not 0 <= i < m.shape[0] for i in idx):
        raise ValueError(f"subset {idx} has indices outside 0..{m.shape[0] - 1}")
    m, norm = m[np.ix_(idx, idx)], norm[np.ix_(idx, idx)]
    names = [class_names[i] for i in idx] if class_names is not None else None
    return _draw_confusion(path, m, norm, names if len(idx) <= max_labeled_classes else None, title)


def _draw_confusion(path: str | Path, counts: np.ndarray, norm: np.ndarray, names: Sequence[str] | None,
                    title: str) -> Path:
    """The figure of :func:`plot_confusion_matrix`: ``norm`` as colours; with
    ``names``, tick labels and the ``counts`` written in the non-zero cells."""
    plt = _pyplot()
    C = counts.shape[0]
    size = min(4.0 + 0.25 * C, 16.0) if names is None else min(4.0 + 0.4 * C, 16.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    try:
        im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title, fontsize=9)
        if names is not None:
            ax.set_xticks(range(C), labels=list(names), rotation=90, fontsize=7)
            ax.set_yticks(range(C), labels=list(names), fontsize=7)
            for (i, j), v in np.ndenumerate(counts):
                if v:
                    ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def _unit_map(attn_map: torch.Tensor, H: int, W: int) -> np.ndarray:
    """``(h, w)`` map upsampled (bilinear) to ``(H, W)`` and min-max scaled to [0, 1]."""
    m = attn_map.detach().float().cpu()
    up = F.interpolate(m[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0].numpy()
    lo, hi = float(up.min()), float(up.max())
    return (up - lo) / (hi - lo) if hi > lo else np.zeros_like(up)


def attention_overlay(image_uint8: torch.Tensor, attn_map: torch.Tensor, alpha: float = 0.55,
                      cmap: str = "jet") -> np.ndarray:
    """An attention map blended over its image, as pixels (no figure: fast).

    Args:
        image_uint8: ``(3, H, W)`` uint8. attn_map: ``(h, w)`` (upsampled
            bilinearly to ``H x W``, min-max scaled). alpha: overlay opacity.
        cmap: matplotlib colour map of the overlay.

    Returns:
        ``(H, W, 3)`` uint8.

    Raises:
        ValueError: a bad image.
    """
    if image_uint8.dtype != torch.uint8 or image_uint8.ndim != 3 or image_uint8.shape[0] != 3:
        raise ValueError(f"image must be uint8 (3, H, W), got {image_uint8.dtype} {tuple(image_uint8.shape)}")
    import matplotlib

    H, W = image_uint8.shape[-2:]
    colours = matplotlib.colormaps[cmap](_unit_map(attn_map, H, W))[..., :3]  # (H, W, 3) in [0, 1]
    img = image_uint8.permute(1, 2, 0).cpu().numpy().astype(np.float64) / 255.0
    return np.round(((1 - alpha) * img + alpha * colours) * 255).clip(0, 255).astype(np.uint8)


def save_attention_figure(
    path: str | Path,
    image_uint8: torch.Tensor,
    maps: Sequence[torch.Tensor],
    ncols: int = 4,
    titles: Sequence[str] | None = None,
    alpha: float = 0.55,
    cmap: str = "jet",
    suptitle: str | None = None,
) -> Path:
    """Save a PNG: the image, then each map upsampled (bilinear) to the image
    size, min-max scaled and overlaid on it.

    Args:
        path: output PNG. image_uint8: ``(3, H, W)`` uint8 (the model input,
            e.g. :func:`denormalize` of it). maps: ``(h, w)`` each.
        ncols: panels per row. titles: one per map (default ``block k``).
        alpha, cmap: overlay opacity and colour map. suptitle: figure title.

    Raises:
        ValueError: a bad image, no maps, or a wrong number of titles.
    """
    if image_uint8.dtype != torch.uint8 or image_uint8.ndim != 3 or image_uint8.shape[0] != 3:
        raise ValueError(f"image must be uint8 (3, H, W), got {image_uint8.dtype} {tuple(image_uint8.shape)}")
    if not maps:
        raise ValueError("no attention maps to draw")
    if titles is not None and len(titles) != len(maps):
        raise ValueError(f"{len(titles)} titles for {len(maps)} maps")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    plt = _pyplot()
    H, W = image_uint8.shape[-2:]
    img = image_uint8.permute(1, 2, 0).cpu().numpy()
    panels = len(maps) + 1
    cols = min(ncols, panels)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.5 * rows), squeeze=False)
    try:
        for ax in axes.flat:
            ax.axis("off")
        axes.flat[0].imshow(img)
        axes.flat[0].set_title("input", fontsize=8)
        for k, m in enumerate(maps):
            ax = axes.flat[k + 1]
            ax.imshow(img)
            ax.imshow(_unit_map(m, H, W), cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
            ax.set_title(titles[k] if titles is not None else f"block {k} ({m.shape[0]}x{m.shape[1]})", fontsize=8)
        if suptitle:
            fig.suptitle(suptitle, fontsize=9)
        return save_figure(fig, path)
    finally:
        plt.close(fig)
