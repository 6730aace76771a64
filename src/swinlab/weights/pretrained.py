"""swinlab's own model folder: ``config.json`` + ``model.safetensors``.

:func:`save_pretrained` writes what is needed to rebuild a model built by
:func:`swinlab.create_model` (its registry name and
constructor arguments), its weights, its class names and its preprocessing;
:func:`from_pretrained` reads it back. The folder follows the Hugging Face
convention of a ``config.json`` next to ``model.safetensors``.

``config.json``::

    {"format": "swinlab", "swinlab_version": "0.1.0",
     "model_name": "swin_tiny_patch4_window7_224",
     "model_kwargs": {...}, "class_names": [...] | null,
     "preprocessing": {"mean": [..3], "std": [..3], "input_size": [H, W],
                       "crop_ratio": 0.875, "interpolation": "bicubic"}}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from ..constants import INTERPOLATIONS
from ..errors import InputNotFoundError, InvalidInputError
from ..io.files import atomic_dir, atomic_write, atomic_write_text
from ..models.fast import SpeedOptions
from ..models.registry import build_model, default_preprocessing
from ..version import __version__
from .loading import LoadReport, load_state_dict_checked, read_checkpoint, resolve_source

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "check_preprocessing", "from_pretrained", "save_pretrained"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREPROCESSING_KEYS = ("mean", "std", "input_size", "crop_ratio", "interpolation")


def _jsonable(value: Any, where: str) -> Any:
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{where} = {value!r} cannot be stored in config.json")
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise InvalidInputError(
        f"{where} is a {type(value).__name__} ({value!r}); config.json can hold only numbers, strings, "
        f"booleans, None, lists and dicts"
    )


def check_preprocessing(pre: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate and normalise a preprocessing dict (keys of ``PREPROCESSING_KEYS``).

    Returns:
        a copy with floats for ``mean``/``std``/``crop_ratio`` and ``[H, W]``
        ints for ``input_size``.

    Raises:
        InvalidInputError: an unknown key or a bad value (naming ``where``).
    """
    unknown = sorted(set(pre) - set(PREPROCESSING_KEYS))
    if unknown:
        raise InvalidInputError(f"{where}: unknown preprocessing key(s) {unknown}; expected {list(PREPROCESSING_KEYS)}")
    out = dict(pre)
    for key in ("mean", "std"):
        v = out[key]
        if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, (int, float)) for x in v):
            raise InvalidInputError(f"{where}: preprocessing {key!r} must be a list of numbers (per channel), got {v!r}")
        if key == "std" and any(x <= 0 for x in v):
            raise InvalidInputError(f"{where}: preprocessing 'std' must be positive, got {v!r}")
        out[key] = [float(x) for x in v]
    size = out["input_size"]
    if isinstance(size, int):
        size = [size, size]
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(isinstance(x, int) and x > 0 for x in size):
        raise InvalidInputError(f"{where}: preprocessing 'input_size' must be [H, W] in pixels, got {out['input_size']!r}")
    out["input_size"] = [int(x) for x in size]
    ratio = out["crop_ratio"]
    if not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise InvalidInputError(f"{where}: preprocessing 'crop_ratio' must be in (0, 1], got {ratio!r}")
    out["crop_ratio"] = float(ratio)
    if out["interpolation"] not in INTERPOLATIONS:
        raise InvalidInputError(
            f"{where}: preprocessing 'interpolation' must be one of {list(INTERPOLATIONS)}, "
            f"got {out['interpolation']!r}"
        )
    return out


def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike[str],
    class_names: Sequence[str] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``model`` as a folder with ``config.json`` and ``model.safetensors``.

    Args:
        model: a model built by :func:`swinlab.create_model`
            (it carries ``model_name`` and ``model_kwargs``).
        directory: the folder to write. A new folder is written complete in a
            temporary sibling and renamed into place; in an existing folder
            each of the two files is replaced atomically (weights first,
            config last) and other files are left alone.
        class_names: one name per output class; default
            ``model.class_names`` when set.
        preprocessing: keys ``mean``, ``std`` (per channel, inputs in [0, 1]),
            ``input_size`` ([H, W] pixels), ``crop_ratio`` (crop / resize, in
            (0, 1]), ``interpolation``; given keys override
            :func:`default_preprocessing` (or ``model.preprocessing``).

    Returns:
        the folder path.

    Raises:
        ValueError: a model without ``model_name``/``model_kwargs``, class
            names whose count differs from the model's classes, bad
            preprocessing, arguments that cannot be stored as JSON, or a
            ``directory`` that exists and is not a folder.
    """
    config = _model_config(model, class_names, preprocessing)
    text = json.dumps(config, indent=2) + "\n"
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    weights = safetensors.torch.save(tensors, metadata={"format": "pt", "swinlab_model": config["model_name"]})
    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise InvalidInputError(f"{directory} exists and is not a folder; cannot save a model there")
    if directory.is_dir():
        atomic_write(directory / WEIGHTS_NAME, lambda f: f.write(weights), size_hint=len(weights))
        atomic_write_text(directory / CONFIG_NAME, text)
        return directory
    with atomic_dir(directory) as tmp:
        atomic_write(tmp / WEIGHTS_NAME, lambda f: f.write(weights), size_hint=len(weights))
        atomic_write_text(tmp / CONFIG_NAME, text)
    return directory


def _model_config(model: nn.Module, class_names: Sequence[str] | None,
                  preprocessing: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``config.json`` content of :func:`save_pretrained` (checked)."""
    name = getattr(model, "model_name", None)
    kwargs = getattr(model, "model_kwargs", None)
    if not isinstance(name, str) or not isinstance(kwargs, Mapping):
        raise InvalidInputError(
            f"save_pretrained needs a model built by swinlab.create_model (it records model_name and "
            f"model_kwargs); got a {type(model).__name__} without them"
        )
    kwargs = dict(kwargs)
    num_classes = getattr(model, "num_classes", None)
    if isinstance(num_classes, int) and "num_classes" in kwargs:
        kwargs["num_classes"] = num_classes  # after reset_classifier
    if class_names is None:
        class_names = getattr(model, "class_names", None)
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if isinstance(num_classes, int) and num_classes > 0 and len(class_names) != num_classes:
            raise InvalidInputError(f"{len(class_names)} class names given for a model with {num_classes} classes")
    pre = dict(getattr(model, "preprocessing", None) or default_preprocessing(model))
    pre.update(preprocessing or {})
    return {"format": "swinlab", "swinlab_version": __version__, "model_name": name,
            "model_kwargs": _jsonable(kwargs, "model_kwargs"), "class_names": class_names,
            "preprocessing": check_preprocessing(pre, "save_pretrained")}


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise InvalidInputError(f"{path}: expected a JSON object, got {type(config).__name__}")
    if "model_name" not in config:
        raise InvalidInputError(
            f"{path} has no 'model_name': not a swinlab model folder (a Hugging Face or other folder? load "
            f"its weights with create_model(name, pretrained=folder) instead)"
        )
    if not isinstance(config["model_name"], str):
        raise InvalidInputError(f"{path}: 'model_name' must be a string, got {config['model_name']!r}")
    if not isinstance(config.get("model_kwargs", {}), dict):
        raise InvalidInputError(f"{path}: 'model_kwargs' must be an object, got {config['model_kwargs']!r}")
    return config


def from_pretrained(directory: str | os.PathLike[str], device: str | torch.device = "cpu",
                    speed: SpeedOptions | None = None) -> nn.Module:
    """Rebuild a model saved by :func:`save_pretrained`.

    Builds ``build_model(model_name, **model_kwargs)``, loads
    ``model.safetensors`` (strict: every key and shape must match), moves it
    to ``device`` and sets ``model.class_names`` (list or None) and
    ``model.preprocessing`` (dict, see :func:`save_pretrained`; keys the
    file lacks come from the model's ``pretrained_cfg``). ``speed``: the
    model's :class:`~swinlab.models.fast.SpeedOptions`. A source
    that is not an existing folder is resolved with
    :func:`~swinlab.weights.loading.resolve_source` (URL of a file is not a
    folder; Hub ids give their snapshot folder).

    Returns:
        the model in eval mode.

    Raises:
        FileNotFoundError: the folder, its ``config.json`` or its
            ``model.safetensors`` is missing (names the path).
        ValueError: a ``config.json`` that is not swinlab's (no
            ``model_name``), invalid JSON, an unknown model name or
            arguments, or weights that do not fit (lists the keys).
    """
    folder = Path(directory).expanduser()
    if not folder.exists():
        folder = resolve_source(str(directory))
    if not folder.is_dir():
        raise InputNotFoundError(
            f"{folder} is not a folder; from_pretrained expects a folder with {CONFIG_NAME} and {WEIGHTS_NAME} "
            f"(for a bare weights file use create_model(name, pretrained=file))"
        )
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not config_path.is_file():
        raise InputNotFoundError(f"{config_path} is missing; not a model folder written by save_pretrained")
    config = _read_config(config_path)
    if not weights_path.is_file():
        raise InputNotFoundError(f"{weights_path} is missing (the folder has {CONFIG_NAME} but no weights)")
    kwargs = dict(config.get("model_kwargs") or {})
    try:
        model = build_model(config["model_name"], speed=speed, **kwargs)
    except (ValueError, TypeError) as err:
        raise InvalidInputError(f"{config_path}: cannot build model {config['model_name']!r}: {err}") from None
    state_dict = read_checkpoint(weights_path)
    report = LoadReport(source=str(folder), path=str(weights_path), layout="swinlab")
    load_state_dict_checked(model, state_dict, strict=True, report=report)
    pre = config.get("preprocessing") or {}
    if not isinstance(pre, dict):
        raise InvalidInputError(f"{config_path}: 'preprocessing' must be an object, got {pre!r}")
    names = config.get("class_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(c, str) for c in names)):
        raise InvalidInputError(f"{config_path}: 'class_names' must be a list of strings or null")
    model.class_names = names  # type: ignore[attr-defined]
    model.preprocessing = check_preprocessing(  # type: ignore[attr-defined]
        {**default_preprocessing(model), **pre}, str(config_path)
    )
    return model.to(device).eval()
