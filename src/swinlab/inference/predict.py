"""Top-k class predictions for images (files, zip members or tensors)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Union

import torch
from torch import nn

from .images import open_image
from .loading import ModelInfo, eval_transform_for

__all__ = ["ImageLike", "Prediction", "preprocess_images", "iter_batches", "predict_logits", "predict"]

#: an image spec (path or ``ARCHIVE.zip::MEMBER``) or a uint8 ``(3, H, W)`` tensor.
ImageLike = Union[str, os.PathLike, torch.Tensor]
#: ``(class_index, class_name, probability)``.
Prediction = tuple[int, str, float]


def _as_uint8(image: ImageLike, index: int) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"image {index}: expected a uint8 tensor of shape (3, H, W), got {image.dtype} {tuple(image.shape)}"
            )
        return image
    return open_image(image)


def preprocess_images(
    images: Sequence[ImageLike], transform: Callable[[torch.Tensor], torch.Tensor], device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Decode and preprocess images one by one (their sizes may differ).

    Args:
        images: specs or uint8 ``(3, H, W)`` tensors.
        transform: uint8 ``(1, 3, H, W)`` -> float ``(1, 3, S, S)``
            (e.g. :func:`swinlab.inference.eval_transform_for`).
        device: where the transform runs and the result lives.

    Returns:
        float ``(N, 3, S, S)``.

    Raises:
        FileNotFoundError / ValueError: from :func:`open_image`, or a tensor
            that is not uint8 ``(3, H, W)``.
    """
    out = [transform(_as_uint8(im, i).unsqueeze(0).to(device)) for i, im in enumerate(images)]
    return torch.cat(out, dim=0)


def iter_batches(items: Sequence, batch_size: int) -> Iterator[tuple[int, Sequence]]:
    """``(start, items[start:start+batch_size])`` chunks.

    Raises:
        ValueError: ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(items), batch_size):
        yield start, items[start : start + batch_size]


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _forward_batches(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    info: ModelInfo,
    images: Sequence[ImageLike],
    batch_size: int,
) -> torch.Tensor:
    """Switch ``model`` to eval mode, preprocess ``images`` as ``info`` says in
    chunks of ``batch_size`` on the model's device and concatenate
    ``forward(x (B, 3, S, S))`` over the chunks: float32 ``(N, ...)`` on CPU.
    The caller runs it under ``torch.inference_mode()``."""
    model.eval()
    device = _model_device(model)
    transform = eval_transform_for(info)
    chunks = []
    for _, batch in iter_batches(images, batch_size):
        chunks.append(forward(preprocess_images(batch, transform, device)).float().cpu())
    return torch.cat(chunks, dim=0)


@torch.inference_mode()
def predict_logits(
    model: nn.Module, info: ModelInfo, images: Sequence[ImageLike], batch_size: int = 32
) -> torch.Tensor:
    """Logits ``(N, C)`` (float32, CPU) of ``images`` preprocessed as ``info``
    says. The model is switched to eval mode and runs on its own device.

    Raises:
        ValueError: no images, bad images or ``batch_size < 1``.
    """
    if len(images) == 0:
        raise ValueError("no images to predict")
    return _forward_batches(model, model, info, images, batch_size)


def predict(
    model: nn.Module,
    info: ModelInfo,
    images: Sequence[ImageLike],
    topk: int = 5,
    batch_size: int = 32,
) -> list[list[Prediction]]:
    """Top-k predictions per image.

    Preprocessing is :func:`swinlab.inference.eval_transform_for` of ``info``
    (resize shorter side to ``img_size / crop_ratio``, centre crop,
    normalise), as in the official Swin evaluation.

    Args:
        model: a classifier (``(B, 3, S, S) -> (B, C)``).
        info: from :func:`swinlab.inference.load_model`.
        images: specs (paths, ``ARCHIVE.zip::MEMBER``) or uint8 ``(3, H, W)``.
        topk: predictions per image (clipped to C).
        batch_size: images per forward pass.

    Returns:
        per image, a list of ``(class_index, class_name, probability)``,
        softmax probabilities sorted in decreasing order.

    Raises:
        ValueError: ``topk < 1``, bad images, or a model whose output width
            differs from ``len(info.class_names)``.
        FileNotFoundError: a missing image.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    logits = predict_logits(model, info, images, batch_size)
    if logits.ndim != 2 or logits.shape[1] != len(info.class_names):
        raise ValueError(
            f"the model returned shape {tuple(logits.shape)} but has {len(info.class_names)} class names"
        )
    probs = logits.softmax(dim=1)
    values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
    return [
        [(int(i), info.class_names[int(i)], float(p)) for p, i in zip(vrow, irow)]
        for vrow, irow in zip(values.tolist(), indices.tolist())
    ]
