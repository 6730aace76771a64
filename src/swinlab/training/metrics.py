"""Classification metrics: top-k accuracy, a streaming accumulator
(top-k, loss, per-class accuracy, confusion matrix), a full evaluation loop
and the reports written by ``swinlab evaluate``.

Conventions follow the ImageNet evaluation of the official Swin code
(``main.py: validate``, top-1 / top-5 in percent, cross-entropy on the hard
labels) and timm's ``accuracy`` helper (a sample counts for top-k when its
target is among the k largest logits).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .plots import save_figure

__all__ = [
    "topk_accuracy",
    "topk_correct",
    "MetricAccumulator",
    "evaluate_model",
    "save_per_class_csv",
    "plot_confusion_matrix",
]


def _check_logits_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must be (B, C), got shape {tuple(logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must be (B,) with B={logits.shape[0]} matching the logits, got shape {tuple(targets.shape)}"
        )
    if logits.shape[1] == 0:
        raise ValueError("logits have no classes (C == 0)")
    if targets.numel() and (targets.min() < 0 or targets.max() >= logits.shape[1]):
        raise ValueError(
            f"targets must lie in [0, {logits.shape[1] - 1}], got values in "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """Number of samples whose target is among the k highest logits, per k.

    Args:
        logits: ``(B, C)`` scores (any float dtype).
        targets: ``(B,)`` integer class indices in ``[0, C)``.
        ks: the k values (each >= 1); a k larger than C is clipped to C
            (every sample is then correct), the key stays the k asked for.

    Returns:
        ``{k: count}``.

    Raises:
        ValueError: bad shapes, out-of-range targets or a k < 1.
    """
    _check_logits_targets(logits, targets)
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {tuple(ks)}")
    if not ks:
        return {}
    num_classes = logits.shape[1]
    maxk = min(max(int(k) for k in ks), num_classes)
    top = logits.topk(maxk, dim=1).indices  # (B, maxk), best first
    hits = top.eq(targets.to(top.device).view(-1, 1))  # (B, maxk)
    cum = hits.cumsum(dim=1).clamp_(max=1)  # (B, maxk): hit within the first j+1
    return {int(k): int(cum[:, min(int(k), num_classes) - 1].sum()) for k in ks}


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy in percent.

    Args:
        logits: ``(B, C)``, B >= 1. targets: ``(B,)`` class indices.
        ks: k values; k > C is clipped to C (100 %).

    Returns:
        ``{k: percent}`` with percent in [0, 100].

    Raises:
        ValueError: empty batch, bad shapes or targets, k < 1.
    """
    if logits.ndim == 2 and logits.shape[0] == 0:
        raise ValueError("top-k accuracy of an empty batch is undefined")
    counts = topk_correct(logits, targets, ks)
    batch = logits.shape[0]
    return {k: 100.0 * c / batch for k, c in counts.items()}


class MetricAccumulator:
    """Streaming classification metrics over batches.

    Keeps top-k hit counts, the summed cross-entropy, per-class correct/total
    (top-1) and the confusion matrix ``(C, C)`` int64 (row: true class,
    column: predicted class), all on the CPU.

    Args:
        num_classes: C.
        ks: the top-k values to track (clipped to C when computed).

    Raises:
        ValueError: ``num_classes < 1``.
    """

    def __init__(self, num_classes: int, ks: Sequence[int] = (1, 5)) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ks = tuple(int(k) for k in ks)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.count = 0
        self.loss_sum = 0.0
        self.topk_hits = {k: 0 for k in self.ks}
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss_sum: float | None = None) -> None:
        """Add one batch.

        Args:
            logits: ``(B, C)``. targets: ``(B,)`` hard labels in ``[0, C)``.
            loss_sum: the batch's summed loss; default: cross-entropy of the
                logits on the targets (summed over the batch, float32).

        Raises:
            ValueError: shapes, class count or targets out of range.
        """
        _check_logits_targets(logits, targets)
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"logits have {logits.shape[1]} classes, the accumulator {self.num_classes}")
        if logits.shape[0] == 0:
            return
        logits = logits.detach()
        targets = targets.detach().to(device=logits.device, dtype=torch.long)
        if loss_sum is None:
            loss_sum = float(F.cross_entropy(logits.float(), targets, reduction="sum"))
        self.loss_sum += float(loss_sum)
        for k, c in topk_correct(logits, targets, self.ks).items():
            self.topk_hits[k] += c
        pred = logits.argmax(dim=1)
        flat = (targets * self.num_classes + pred).cpu()
        self.confusion += torch.bincount(flat, minlength=self.num_classes**2).view(self.num_classes, -1)
        self.count += logits.shape[0]

    @property
    def per_class_total(self) -> torch.Tensor:
        """``(C,)`` int64: samples seen per true class."""
        return self.confusion.sum(dim=1)

    @property
    def per_class_correct(self) -> torch.Tensor:
        """``(C,)`` int64: top-1 hits per true class."""
        return self.confusion.diagonal().clone()

    def per_class_accuracy(self) -> list[float]:
        """Top-1 accuracy per class in percent; NaN for a class never seen."""
        total = self.per_class_total.tolist()
        correct = self.per_class_correct.tolist()
        return [100.0 * c / t if t else math.nan for c, t in zip(correct, total)]

    def compute(self) -> dict[str, Any]:
        """The metrics so far.

        Returns:
            dict with ``top{k}`` (percent) for every tracked k, ``loss`` (mean
            cross-entropy, nats), ``num_images``, ``per_class_acc`` (list of
            C floats, percent, NaN where a class had no sample),
            ``per_class_count`` (list of C ints) and ``confusion``
            (``(C, C)`` int64 tensor, rows true, columns predicted).

        Raises:
            ValueError: nothing has been added.
        """
        if self.count == 0:
            raise ValueError("no samples were accumulated; the data set or loader is empty")
        out: dict[str, Any] = {f"top{k}": 100.0 * h / self.count for k, h in self.topk_hits.items()}
        out["loss"] = self.loss_sum / self.count
        out["num_images"] = self.count
        out["per_class_acc"] = self.per_class_accuracy()
        out["per_class_count"] = self.per_class_total.tolist()
        out["confusion"] = self.confusion.clone()
        return out


def evaluate_model(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    eval_transform: Callable[[torch.Tensor], torch.Tensor] | None,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    max_batches: int | None = None,
    progress: bool = True,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Evaluate a classifier on a loader.

    The model is put in eval mode and run under ``torch.inference_mode``;
    the loss is cross-entropy on the hard labels (official Swin
    ``validate``).

    Args:
        model: maps ``(B, 3, S, S)`` float images to ``(B, C)`` logits.
        loader: yields ``(images, targets)``: uint8 ``(B, 3, H, W)`` (or
            float when ``eval_transform`` is None) and int64 ``(B,)``.
        eval_transform: uint8 ``(B, 3, H, W)`` -> normalized float
            ``(B, 3, S, S)`` (e.g. :class:`swinlab.data.EvalTransform`),
            applied on ``device``; None: images go to the model as they are.
        device: where to run. amp_dtype: autocast dtype (``torch.bfloat16``,
            ``torch.float16``) or None for full precision.
        max_batches: stop after this many batches (None: all).
        progress: show a tqdm bar.
        num_classes: C; default: the width of the first logits.

    Returns:
        :meth:`MetricAccumulator.compute`'s dict with ``top1``, ``top5``,
        ``loss``, ``num_images``, ``per_class_acc``, ``per_class_count``,
        ``confusion``.

    Raises:
        ValueError: an empty loader, logits of the wrong shape, targets out of
            range, or ``max_batches < 1``.
    """
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be >= 1, got {max_batches}")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    acc: MetricAccumulator | None = MetricAccumulator(num_classes) if num_classes else None
    total = None
    try:
        total = len(loader)  # type: ignore[arg-type]
        if max_batches is not None:
            total = min(total, max_batches)
    except TypeError:
        pass
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="evaluate", unit="batch", disable=not progress, leave=False)
        autocast = (
            torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
        )
        with torch.inference_mode():
            for i, (images, targets) in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                images = images.to(device, non_blocking=True)
                targets = torch.as_tensor(targets).to(device=device, dtype=torch.long)
                with autocast:
                    x = eval_transform(images) if eval_transform is not None else images
                    logits = model(x)
                logits = logits.float()
                if acc is None:
                    if logits.ndim != 2:
                        raise ValueError(f"the model returned shape {tuple(logits.shape)}, expected (B, C) logits")
                    acc = MetricAccumulator(logits.shape[1])
                acc.update(logits, targets)
                bar.update(1)
                if progress and acc.count:
                    bar.set_postfix(top1=f"{100.0 * acc.topk_hits[1] / acc.count:.2f}")
        bar.close()
    finally:
        model.train(was_training)
    if acc is None or acc.count == 0:
        raise ValueError("the loader yielded no samples; nothing to evaluate")
    return acc.compute()


def save_per_class_csv(
    path: str | Path,
    class_names: Sequence[str],
    per_class_acc: Sequence[float],
    counts: Sequence[int],
) -> Path:
    """Write ``index,class_name,accuracy,count`` rows (accuracy in percent,
    empty for a class without samples).

    Raises:
        ValueError: the three sequences differ in length.
    """
    if not (len(class_names) == len(per_class_acc) == len(counts)):
        raise ValueError(
            f"class_names ({len(class_names)}), per_class_acc ({len(per_class_acc)}) and counts "
            f"({len(counts)}) must have the same length"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "class_name", "accuracy", "count"])
        for i, (name, a, n) in enumerate(zip(class_names, per_class_acc, counts)):
            w.writerow([i, name, "" if a is None or math.isnan(a) else f"{a:.4f}", int(n)])
    return path


def plot_confusion_matrix(
    path: str | Path,
    confusion: torch.Tensor | np.ndarray,
    class_names: Sequence[str] | None = None,
    max_labeled_classes: int = 30,
    title: str = "Confusion matrix (row-normalized)",
) -> Path:
    """Save a row-normalized confusion matrix as a PNG (matplotlib, Agg).

    Args:
        path: output file. confusion: ``(C, C)`` counts (row: true class).
        class_names: C tick labels; ticks are left out when C exceeds
            ``max_labeled_classes`` (or no names are given).

    Raises:
        ValueError: a non-square matrix or a wrong number of names.
    """
    m = confusion.detach().cpu().numpy() if isinstance(confusion, torch.Tensor) else np.asarray(confusion)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion must be a square (C, C) matrix, got shape {m.shape}")
    C = m.shape[0]
    if class_names is not None and len(class_names) != C:
        raise ValueError(f"{len(class_names)} class names for a {C}x{C} confusion matrix")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = m.sum(axis=1, keepdims=True).astype(np.float64)
    norm = np.divide(m, rows, out=np.zeros(m.shape, dtype=np.float64), where=rows > 0)
    size = min(4.0 + 0.25 * C, 16.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    try:
        im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title)
        if class_names is not None and C <= max_labeled_classes:
            ax.set_xticks(range(C), labels=list(class_names), rotation=90, fontsize=7)
            ax.set_yticks(range(C), labels=list(class_names), fontsize=7)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        return save_figure(fig, path)
    finally:
        plt.close(fig)
