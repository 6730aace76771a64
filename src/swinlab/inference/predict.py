"""Top-k class predictions for images (files, zip members or tensors).

Unreadable inputs: by default the first one raises
:class:`~swinlab.errors.CorruptImageError` (naming it). Pass a list as
``skipped`` to skip them instead: each is appended to it as a
:class:`~swinlab.data.images.SkippedInput` ``(index, input, error)`` and the
results hold the readable images only, in input order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Union

import torch
from torch import nn

from ..data.decode import DEFAULT_MAX_PIXELS
from ..data.images import SkippedInput, open_image
from ..errors import CorruptImageError, InvalidInputError, UsageError
from ..io.progress import progress_bar
from .loading import ModelInfo, eval_transform_for

__all__ = [
    "ImageLike",
    "Prediction",
    "SkippedInput",
    "preprocess_images",
    "iter_batches",
    "predict_logits",
    "predict",
]

#: an image spec (path or ``ARCHIVE.zip::MEMBER``) or a uint8 ``(3, H, W)`` tensor.
ImageLike = Union[str, os.PathLike, torch.Tensor]
#: ``(class_index, class_name, probability)``.
Prediction = tuple[int, str, float]


def _as_uint8(image: ImageLike, index: int, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise InvalidInputError(
                f"image {index}: expected a uint8 tensor of shape (3, H, W), got {image.dtype} {tuple(image.shape)}"
            )
        return image
    return open_image(image, max_pixels=max_pixels)


def preprocess_images(
    images: Sequence[ImageLike],
    transform: Callable[[torch.Tensor], torch.Tensor],
    device: str | torch.device = "cpu",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Decode and preprocess images one by one (their sizes may differ).

    Args:
        images: specs or uint8 ``(3, H, W)`` tensors.
        transform: uint8 ``(1, 3, H, W)`` -> float ``(1, 3, S, S)``
            (e.g. :func:`swinlab.inference.eval_transform_for`).
        device: where the transform runs and the result lives.
        max_pixels: decoded-pixel limit per image (see :func:`swinlab.data.decode.decode_image`).

    Returns:
        float ``(N, 3, S, S)``.

    Raises:
        InputNotFoundError / CorruptImageError: from :func:`open_image`.
        InvalidInputError: a tensor that is not uint8 ``(3, H, W)``.
    """
    out = [transform(_as_uint8(im, i, max_pixels).unsqueeze(0).to(device)) for i, im in enumerate(images)]
    return torch.cat(out, dim=0)


def iter_batches(items: Sequence, batch_size: int) -> Iterator[tuple[int, Sequence]]:
    """``(start, items[start:start+batch_size])`` chunks.

    Raises:
        UsageError: ``batch_size < 1``.
    """
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(items), batch_size):
        yield start, items[start : start + batch_size]


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _spec_name(image: ImageLike, index: int) -> str:
    return f"tensor_{index}" if isinstance(image, torch.Tensor) else os.fspath(image)


def _load_batch(
    batch: Sequence[ImageLike], start: int, skipped: list[SkippedInput] | None, max_pixels: int | None
) -> list[torch.Tensor]:
    """Decode ``batch`` (items ``start..``); unreadable ones raise, or go to ``skipped``."""
    out = []
    for offset, image in enumerate(batch):
        try:
            out.append(_as_uint8(image, start + offset, max_pixels))
        except CorruptImageError as exc:
            if skipped is None:
                raise
            skipped.append(SkippedInput(start + offset, _spec_name(image, start + offset), str(exc)))
    return out


def _forward_batches(
    model: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    info: ModelInfo,
    images: Sequence[ImageLike],
    batch_size: int,
    *,
    skipped: list[SkippedInput] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> torch.Tensor | None:
    """Switch ``model`` to eval mode, decode and preprocess ``images`` as
    ``info`` says in chunks of ``batch_size`` on the model's device and
    concatenate ``forward(x (B, 3, S, S))`` over the chunks: float32
    ``(N_read, ...)`` on CPU, or None when no image could be read. Unreadable
    images raise, or are appended to ``skipped`` when it is a list. A tqdm
    bar (stderr) counts the images when ``progress``. The caller runs it under
    ``torch.inference_mode()``."""
    model.eval()
    device = _model_device(model)
    transform = eval_transform_for(info)
    chunks = []
    with progress_bar(progress, total=len(images), unit="img", desc="images") as bar:
        for start, batch in iter_batches(images, batch_size):
            tensors = _load_batch(batch, start, skipped, max_pixels)
            if tensors:
                x = torch.cat([transform(t.unsqueeze(0).to(device)) for t in tensors], dim=0)
                chunks.append(forward(x).float().cpu())
            bar.update(len(batch))
    return torch.cat(chunks, dim=0) if chunks else None


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    info: ModelInfo,
    images: Sequence[ImageLike],
    batch_size: int = 32,
    *,
    skipped: list[SkippedInput] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> torch.Tensor:
    """Logits ``(N, C)`` (float32, CPU) of ``images`` preprocessed as ``info``
    says. The model is switched to eval mode and runs on its own device.

    Args:
        skipped: None: an unreadable image raises. A list: unreadable images are
            skipped and appended to it (module docstring); N counts the others
            (``(0, C)`` when none could be read).
        max_pixels: decoded-pixel limit per image (default 64 MPixel).
        progress: a tqdm bar on stderr.

    Raises:
        InvalidInputError: no images. UsageError: ``batch_size < 1``.
        CorruptImageError: an unreadable image (``skipped`` is None).
        InputNotFoundError: a missing file, archive or member.
    """
    if len(images) == 0:
        raise InvalidInputError("no images to predict")
    logits = _forward_batches(
        model, model, info, images, batch_size, skipped=skipped, max_pixels=max_pixels, progress=progress
    )
    return logits if logits is not None else torch.zeros(0, len(info.class_names))


def predict(
    model: nn.Module,
    info: ModelInfo,
    images: Sequence[ImageLike],
    topk: int = 5,
    batch_size: int = 32,
    *,
    skipped: list[SkippedInput] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: bool = False,
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
        skipped: None: an unreadable image raises. A list: unreadable images are
            skipped, appended to it as ``SkippedInput(index, input, error)``, and
            left out of the result (which keeps the order of the others).
        max_pixels: decoded-pixel limit per image (default 64 MPixel).
        progress: a tqdm bar on stderr.

    Returns:
        per readable image, a list of ``(class_index, class_name, probability)``,
        softmax probabilities sorted in decreasing order.

    Raises:
        UsageError: ``topk < 1`` or ``batch_size < 1``.
        CorruptImageError: an unreadable image (``skipped`` is None).
        InputNotFoundError: a missing image.
        InvalidInputError: no images, or a model whose output width differs
            from ``len(info.class_names)``.
    """
    if topk < 1:
        raise UsageError(f"topk must be >= 1, got {topk}")
    logits = predict_logits(
        model, info, images, batch_size, skipped=skipped, max_pixels=max_pixels, progress=progress
    )
    if logits.ndim != 2 or logits.shape[1] != len(info.class_names):
        raise InvalidInputError(
            f"the model returned shape {tuple(logits.shape)} but has {len(info.class_names)} class names"
        )
    if logits.shape[0] == 0:
        return []
    probs = logits.softmax(dim=1)
    values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
    return [
        [(int(i), info.class_names[int(i)], float(p)) for p, i in zip(vrow, irow)]
        for vrow, irow in zip(values.tolist(), indices.tolist())
    ]
