"""Training curves as a PNG (matplotlib, Agg backend).

Two panels from the per-epoch records of :mod:`swinlab.training.logging`:
loss (train, val, EMA val) and accuracy in percent (train, val top-1, top-5,
EMA val top-1) against the epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

__all__ = ["plot_curves", "save_figure"]


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


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            xs.append(float(r.get("epoch", len(xs) + 1)))
            ys.append(float(v))
    return xs, ys


def plot_curves(records: Sequence[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Write loss and accuracy curves of ``records`` to ``path`` (PNG).

    Args:
        records: per-epoch dicts with ``epoch`` and any of ``train_loss``,
            ``val_loss``, ``ema_val_loss``, ``train_acc``, ``val_top1``,
            ``val_top5``, ``ema_val_top1``.
        path: the output file.
        title: optional figure title.

    Returns:
        ``path``.

    Raises:
        ValueError: no records.
    """
    if not records:
        raise ValueError(f"no metric records to plot into {path}")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        for key, label in (("train_loss", "train"), ("val_loss", "val"), ("ema_val_loss", "val (EMA)")):
            xs, ys = _series(records, key)
            if xs:
                ax_loss.plot(xs, ys, marker="o", markersize=3, label=label)
        for key, label in (("train_acc", "train top-1"), ("val_top1", "val top-1"), ("val_top5", "val top-5"),
                           ("ema_val_top1", "val top-1 (EMA)")):
            xs, ys = _series(records, key)
            if xs:
                ax_acc.plot(xs, ys, marker="o", markersize=3, label=label)
        ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
        ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
        for ax in (ax_loss, ax_acc):
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
        if title:
            fig.suptitle(title)
        return save_figure(fig, path)
    finally:
        plt.close(fig)
