"""The evaluation loop: top-1 / top-5 / loss of a classifier over a loader.

Follows the official Swin ``main.py: validate`` (eval mode, no gradients,
cross-entropy on the hard labels, top-1 / top-5 in percent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .metrics import MetricAccumulator

__all__ = ["evaluate_model"]


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
