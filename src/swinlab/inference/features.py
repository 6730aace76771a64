"""Pooled image embeddings (``model.forward_pooled``) and their files.

File formats:

* ``.npy``: the ``(N, C)`` float32 array (``numpy.save``); the N names go to
  a JSON sidecar ``<stem>.names.json`` (a list of strings) next to it.
* ``.safetensors``: tensor ``"features"`` ``(N, C)`` float32; the names are
  the JSON list in the metadata key ``"names"``.
* with ``skipped`` given (``swinlab features`` always gives
  it), the unreadable inputs that were left out go to a second sidecar
  ``<stem>.skipped.json`` next to the file, for both formats: a JSON list of
  ``{"input": ..., "error": ...}`` (``[]`` when none was skipped). The rows
  and names hold the readable images only, so the files stay aligned.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.decode import DEFAULT_MAX_PIXELS
from ..data.images import SkippedInput
from ..errors import InvalidInputError
from ..io.files import atomic_write_text
from .loading import ModelInfo
from .predict import ImageLike, _forward_batches

__all__ = ["extract_features", "save_features", "load_features", "names_sidecar", "skipped_sidecar"]


def _names_for(images: Sequence[ImageLike]) -> list[str]:
    return [f"tensor_{i}" if isinstance(im, torch.Tensor) else os.fspath(im) for i, im in enumerate(images)]


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    info: ModelInfo,
    images: Sequence[ImageLike],
    batch_size: int = 32,
    names: Sequence[str] | None = None,
    *,
    skipped: list[SkippedInput] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Pooled, final-normed embeddings of ``images``.

    Args:
        model: a model with ``forward_pooled(x (B, 3, S, S)) -> (B, C)``
            (:class:`swinlab.SwinTransformer`, :class:`swinlab.VisionTransformer`).
        info: preprocessing (see :func:`swinlab.inference.load_model`).
        images: specs or uint8 ``(3, H, W)`` tensors.
        batch_size: images per forward pass.
        names: one name per image; default: the specs (``tensor_<i>`` for
            tensors).
        skipped: None: an unreadable image raises. A list: unreadable images are
            skipped and appended to it as ``SkippedInput(index, input, error)``;
            their rows and names are left out.
        max_pixels: decoded-pixel limit per image (default 64 MPixel).
        progress: a tqdm bar on stderr.

    Returns:
        ``(features (N, C) float32, names)`` of the readable images, in input order
        (``(0, model.num_features)`` when none could be read).

    Raises:
        TypeError: the model has no ``forward_pooled``.
        InvalidInputError: no images, or a wrong number of names.
        CorruptImageError: an unreadable image (``skipped`` is None).
        InputNotFoundError: a missing image.
    """
    if not callable(getattr(model, "forward_pooled", None)):
        raise TypeError(f"{type(model).__name__} has no forward_pooled(); cannot extract pooled features")
    if len(images) == 0:
        raise InvalidInputError("no images to extract features from")
    names = list(names) if names is not None else _names_for(images)
    if len(names) != len(images):
        raise InvalidInputError(f"{len(names)} names for {len(images)} images")
    before = len(skipped) if skipped is not None else 0
    out = _forward_batches(
        model, model.forward_pooled, info, images, batch_size, skipped=skipped, max_pixels=max_pixels,
        progress=progress,
    )
    if skipped is not None and len(skipped) > before:
        gone = {s.index for s in skipped[before:]}
        names = [n for i, n in enumerate(names) if i not in gone]
    if out is None:
        return np.zeros((0, int(getattr(model, "num_features", 0))), dtype=np.float32), names
    return out.numpy(), names


def names_sidecar(path: str | os.PathLike[str]) -> Path:
    """Sidecar of a ``.npy`` features file: ``feats.npy`` -> ``feats.names.json``."""
    p = Path(path)
    return p.with_name(p.stem + ".names.json")


def skipped_sidecar(path: str | os.PathLike[str]) -> Path:
    """Skipped-inputs sidecar of a features file: ``feats.npy`` -> ``feats.skipped.json``."""
    p = Path(path)
    return p.with_name(p.stem + ".skipped.json")


def save_features(
    path: str | os.PathLike[str],
    feats: np.ndarray | torch.Tensor,
    names: Sequence[str],
    skipped: Sequence[SkippedInput] | None = None,
) -> Path:
    """Write features and names (see the module docstring for the formats).

    Args:
        path: ``*.npy`` or ``*.safetensors``.
        feats: ``(N, C)``; stored as float32. names: N strings.
        skipped: when given (even empty), also write :func:`skipped_sidecar`
            (a JSON list of ``{"input", "error"}``).

    Returns:
        the path written.

    Raises:
        ValueError: another suffix, not 2-d, or a wrong number of names.
    """
    p = Path(path)
    arr = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
    if arr.ndim != 2:
        raise ValueError(f"features must be (N, C), got shape {arr.shape}")
    names = [str(n) for n in names]
    if len(names) != arr.shape[0]:
        raise ValueError(f"{len(names)} names for {arr.shape[0]} feature rows")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".safetensors"):
        raise ValueError(f"features file {p} must end in .npy or .safetensors")
    p.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(p, arr)
        names_sidecar(p).write_text(json.dumps(names, ensure_ascii=False, indent=0), encoding="utf-8")
    else:
        from safetensors.torch import save_file

        save_file({"features": torch.from_numpy(arr)}, str(p), metadata={"names": json.dumps(names)})
    if skipped is not None:
        listing = [s.to_dict() for s in skipped]
        atomic_write_text(skipped_sidecar(p), json.dumps(listing, ensure_ascii=False, indent=1) + "\n")
    return p


def load_features(path: str | os.PathLike[str]) -> tuple[np.ndarray, list[str]]:
    """Read a file written by :func:`save_features`.

    Returns:
        ``(features (N, C) float32, names)``.

    Raises:
        FileNotFoundError: the file (or the ``.npy`` names sidecar) is missing.
        ValueError: another suffix or an invalid file (the message names it).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"features file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"cannot read features file {p}: {e}") from None
        side = names_sidecar(p)
        if not side.is_file():
            raise FileNotFoundError(f"names file {side} of {p} not found")
        try:
            names = json.loads(side.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"names file {side} is not valid JSON: {e}") from None
    elif suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                if "features" not in f.keys():
                    raise ValueError(f"{p} has no tensor 'features' (found {list(f.keys())})")
                arr = f.get_tensor("features").numpy()
                meta = f.metadata() or {}
        except ValueError:
            raise
        except Exception as e:  # noqa: BLE001 -- safetensors raises its own error types
            raise ValueError(f"cannot read features file {p}: {e}") from None
        if "names" not in meta:
            raise ValueError(f"{p} has no 'names' metadata")
        names = json.loads(meta["names"])
    else:
        raise ValueError(f"features file {p} must end in .npy or .safetensors")
    if not isinstance(names, list) or len(names) != arr.shape[0]:
        raise ValueError(f"features file {p}: names do not match the {arr.shape[0]} rows")
    return arr.astype(np.float32, copy=False), [str(n) for n in names]
