"""Pooled image embeddings (``model.forward_pooled``) and their files.

File formats:

* ``.npy``: the ``(N, C)`` float32 array (``numpy.save``); the N names go to
  a JSON sidecar ``<stem>.names.json`` (a list of strings) next to it.
* ``.safetensors``: tensor ``"features"`` ``(N, C)`` float32; the names are
  the JSON list in the metadata key ``"names"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .loading import ModelInfo
from .predict import ImageLike, _forward_batches

__all__ = ["extract_features", "save_features", "load_features", "names_sidecar"]


def _names_for(images: Sequence[ImageLike]) -> list[str]:
    return [f"tensor_{i}" if isinstance(im, torch.Tensor) else os.fspath(im) for i, im in enumerate(images)]


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    info: ModelInfo,
    images: Sequence[ImageLike],
    batch_size: int = 32,
    names: Sequence[str] | None = None,
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

    Returns:
        ``(features (N, C) float32, names)``.

    Raises:
        TypeError: the model has no ``forward_pooled``.
        ValueError: no images, a wrong number of names, bad images.
    """
    if not callable(getattr(model, "forward_pooled", None)):
        raise TypeError(f"{type(model).__name__} has no forward_pooled(); cannot extract pooled features")
    if len(images) == 0:
        raise ValueError("no images to extract features from")
    names = list(names) if names is not None else _names_for(images)
    if len(names) != len(images):
        raise ValueError(f"{len(names)} names for {len(images)} images")
    feats = _forward_batches(model, model.forward_pooled, info, images, batch_size).numpy()
    return feats, names


def names_sidecar(path: str | os.PathLike[str]) -> Path:
    """Sidecar of a ``.npy`` features file: ``feats.npy`` -> ``feats.names.json``."""
    p = Path(path)
    return p.with_name(p.stem + ".names.json")


def save_features(path: str | os.PathLike[str], feats: np.ndarray | torch.Tensor, names: Sequence[str]) -> Path:
    """Write features and names (see the module docstring for the formats).

    Args:
        path: ``*.npy`` or ``*.safetensors``.
        feats: ``(N, C)``; stored as float32. names: N strings.

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
