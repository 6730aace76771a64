"""Classification metrics: top-k accuracy and a streaming accumulator
(top-k, loss, per-class accuracy, confusion matrix). The evaluation loop is
:mod:`.evaluation`; the reports of ``swinlab evaluate`` are
:mod:`swinlab.inference.reports`.

Conventions follow the ImageNet evaluation of the official Swin code
(``main.py: validate``, top-1 / top-5 in percent, cross-entropy on the hard
labels) and timm's ``accuracy`` helper (a sample counts for top-k when its
target is among the k largest logits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F


__all__ = [
    "topk_accuracy",
    "topk_correct",
    "MetricAccumulator",
    "soft_target_cross_entropy",
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


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``sum_c -targets[b, c] * log_softmax(logits)[b, c]``.

    ``logits``, ``targets``: ``(B, C)``; targets are rows of class
    probabilities (mixup / cutmix / label smoothing). timm's
    ``SoftTargetCrossEntropy`` (used by the official Swin code).

    Raises:
        ValueError: shapes differ.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and soft targets {tuple(targets.shape)} differ in shape")
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
