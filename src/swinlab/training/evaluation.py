"""The evaluation loop: top-1 / top-5 / loss of a classifier over a loader.

Follows the official Swin ``main.py: validate`` (eval mode, no gradients,
cross-entropy on the hard labels, top-1 / top-5 in percent). With
``tta_hflip`` each batch is also run mirrored and the logits are averaged
(horizontal-flip test-time augmentation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from ..errors import DataError
from ..io.progress import progress_bar
from .metrics import MetricAccumulator

__all__ = ["evaluate_model", "predict_batch"]


def predict_batch(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tta_hflip: bool = False) -> torch.Tensor:
    """Logits ``(B, C)`` float32 of a preprocessed batch ``(B, 3, S, S)``;
    with ``tta_hflip`` the mean of the logits of ``x`` and of ``x`` mirrored."""
    return _logits(model, x, tta_hflip)[1]


def _logits(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            tta_hflip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits of x, logits used)`` ``(B, C)`` float32: the used ones are the
    flip average with ``tta_hflip`` (so both are measured in one pass), else the same."""
    plain = model(x).float()
    return plain, (plain + model(x.flip(-1)).float()) / 2 if tta_hflip else plain


class _Results:
    """What one evaluation accumulates: the metrics of the logits used, those
    of the plain logits (with ``tta_hflip``) and, when kept, every image's
    top-1 class and probability in loader order."""

    def __init__(self, num_classes: int | None, tta_hflip: bool, keep_predictions: bool) -> None:
        self.num_classes, self.tta_hflip, self.keep = num_classes, tta_hflip, keep_predictions
        self.acc = self.plain_acc = None
        self.classes: list[torch.Tensor] = []
        self.probs: list[torch.Tensor] = []

    def add(self, plain: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        if self.acc is None:
            if logits.ndim != 2:
                raise ValueError(f"the model returned shape {tuple(logits.shape)}, expected (B, C) logits")
            c = self.num_classes or logits.shape[1]
            self.acc = MetricAccumulator(c)
            self.plain_acc = MetricAccumulator(c) if self.tta_hflip else None
        self.acc.update(logits, targets)
        if self.plain_acc is not None:
            self.plain_acc.update(plain, targets)
        if self.keep:
            prob, cls = logits.softmax(dim=1).max(dim=1)
            self.classes.append(cls.cpu())
            self.probs.append(prob.cpu())

    def result(self) -> dict[str, Any]:
        if self.acc is None or self.acc.count == 0:
            raise DataError("the data split holds no images (or every one was skipped); nothing to evaluate")
        out = self.acc.compute()
        if self.plain_acc is not None:
            plain = self.plain_acc.compute()
            out["no_flip"] = {k: plain[k] for k in ("top1", "top5", "loss")}
        if self.keep:
            out.update(predictions=torch.cat(self.classes), confidence=torch.cat(self.probs))
        return out


def _length(loader: Any, max_batches: int | None) -> int | None:
    try:
        total = len(loader)
    except TypeError:
        return max_batches
    return min(total, max_batches) if max_batches is not None else total


def evaluate_model(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    eval_transform: Callable[[torch.Tensor], torch.Tensor] | None,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    max_batches: int | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    tta_hflip: bool = False,
    keep_predictions: bool = False,
) -> dict[str, Any]:
    """Evaluate a classifier on a loader (eval mode, ``torch.inference_mode``).

    Args:
        model: maps ``(B, 3, S, S)`` float images to ``(B, C)`` logits (an
            ``nn.Module``, or any callable such as an ONNX Runtime session wrapper).
        loader: yields ``(images, targets)``: uint8 ``(B, 3, H, W)`` (or
            float when ``eval_transform`` is None) and int64 ``(B,)``.
        eval_transform: uint8 ``(B, 3, H, W)`` -> normalized float
            ``(B, 3, S, S)`` (e.g. :class:`swinlab.data.EvalTransform`),
            applied on ``device``; None: images go to the model as they are.
        device: where to run. amp_dtype: autocast dtype or None (full precision).
        max_batches: stop after this many batches (None: all).
        progress: show a tqdm bar.
        num_classes: C; default: the width of the first logits.
        tta_hflip: average the logits of each image and its mirror image; the
            metrics without the average are measured in the same pass.
        keep_predictions: also return every image's top-1 class and probability.

    Returns:
        :meth:`MetricAccumulator.compute`'s dict with ``top1``, ``top5``
        (percent), ``loss`` (nats), ``num_images``, ``per_class_acc``,
        ``per_class_count``, ``confusion``; with ``tta_hflip`` also
        ``no_flip``: ``{"top1", "top5", "loss"}`` of the plain logits; with
        ``keep_predictions`` also ``predictions`` (int64 ``(N,)``) and
        ``confidence`` (float32 ``(N,)``, softmax probability), in loader order.

    Raises:
        ValueError: an empty loader, logits of the wrong shape, targets out of
            range, or ``max_batches < 1``.
    """
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be >= 1, got {max_batches}")
    device = torch.device(device)
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    results = _Results(num_classes, tta_hflip, keep_predictions)
    autocast = torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    bar = progress_bar(progress, total=_length(loader, max_batches), desc="evaluate", unit="batch", leave=False)
    try:
        with torch.inference_mode(), autocast:
            for i, (images, targets) in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                images = images.to(device, non_blocking=True)
                x = eval_transform(images) if eval_transform is not None else images
                results.add(*_logits(model, x, tta_hflip), torch.as_tensor(targets).to(device=device, dtype=torch.long))
                bar.update(1)
    finally:
        bar.close()
        if isinstance(model, nn.Module):
            model.train(was_training)
    return results.result()
