"""Load a model for inference from a run folder, a training checkpoint, a
``save_pretrained`` folder or a zoo name, together with what inference needs
to know about it (:class:`ModelInfo`: class names and preprocessing).

Training checkpoints are the dicts written by :mod:`swinlab.training`
(``runs/NAME/{best,last}.pt``): keys ``model`` (state dict), ``model_name``,
``model_kwargs`` (keyword arguments of :func:`swinlab.create_model`),
``class_names``, ``classes``, ``aug_config`` (an
:class:`swinlab.data.AugmentConfig` dict) and ``config`` (the run's config).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..constants import DEFAULT_CROP_RATIO, DEFAULT_INTERPOLATION, IMAGENET_MEAN, IMAGENET_STD
from ..data.config import AugmentConfig
from ..data.eval_transform import EvalTransform
from ..errors import CheckpointError, InputNotFoundError, InvalidInputError, UsageError
from ..factory import create_model
from ..io.rundir import RunDir
from ..memory import tune_cpu_allocator
from ..models.fast import SpeedOptions
from ..models.registry import PretrainedCfg, build_model, get_model_spec, list_models, pretrained_cfg
from ..weights.layouts import strip_key_prefix
from ..weights.loading import LoadReport, load_state_dict_checked
from ..weights.pretrained import CONFIG_NAME, WEIGHTS_NAME, from_pretrained

__all__ = [
    "ModelInfo",
    "load_model",
    "load_training_checkpoint",
    "eval_transform_for",
]

_PATH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


@dataclass
class ModelInfo:
    """What inference needs to know about a loaded model.

    Attributes:
        model_name: registry name. class_names: one per output (index order).
        classes: class ids (e.g. WordNet ids) when known, else None.
        img_size: model input side [pixels]. mean, std: RGB normalisation of
            [0, 1] values. crop_ratio: eval resize-then-centre-crop ratio.
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``.
        config: the training run's config (None outside training checkpoints).
        aug_config: the run's full augmentation dict (None if unknown).
        source: what was loaded (path or name). kind: ``"run"``,
            ``"checkpoint"``, ``"pretrained"`` or ``"zoo"``.
        checkpoint: the checkpoint file read (None for other kinds).
    """

    model_name: str
    class_names: list[str]
    img_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_ratio: float = DEFAULT_CROP_RATIO
    interpolation: str = DEFAULT_INTERPOLATION
    config: dict[str, Any] | None = None
    aug_config: dict[str, Any] | None = None
    classes: list[str] | None = None
    source: str = ""
    kind: str = ""
    checkpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of outputs (``len(class_names)``)."""
        return len(self.class_names)

    @classmethod
    def from_pretrained_cfg(cls, model_name: str, cfg: PretrainedCfg, **fields: Any) -> ModelInfo:
        """The info of a model whose preprocessing is its :class:`PretrainedCfg`
        (``pretrained_cfg(model)``): input side, mean, std, crop, interpolation,
        class names (``class_i`` when the config has none); ``fields`` set the rest."""
        n = int(cfg.num_classes or 0)
        names = [str(c) for c in cfg.class_names] if cfg.class_names else _default_class_names(n)
        size = cfg.input_size or (224, 224)
        return cls(model_name=model_name, class_names=names, img_size=int(size[0]), mean=tuple(cfg.mean),
                   std=tuple(cfg.std), crop_ratio=cfg.eval_crop_ratio(), interpolation=cfg.interpolation,
                   **fields)


def _model_img_size(model: nn.Module, default: int = 224) -> int:
    size = getattr(model, "img_size", default)
    if isinstance(size, (tuple, list)):
        return int(size[0])
    return int(size)


def _num_outputs(model: nn.Module) -> int:
    return int(getattr(model, "num_classes", 0) or 0)


def _default_class_names(n: int) -> list[str]:
    return [f"class_{i}" for i in range(n)]


def load_training_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", ema: bool = False,
    speed: SpeedOptions | None = None,
) -> tuple[nn.Module, ModelInfo]:
    """Rebuild the model of a training checkpoint (see the module docstring).

    Args:
        path: the ``.pt`` file. device: where to put the model.
        ema: load the EMA weights (``ckpt["ema"]["model"]``) instead of
            ``ckpt["model"]``.
        speed: the model's :class:`~swinlab.models.fast.SpeedOptions` (default: the measured paths).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable torch file, or not a training checkpoint
            (missing keys are named), or weights that do not fit the model.
    """
    path = Path(path)
    ckpt = RunDir(path.parent).read_model(path)
    name = ckpt["model_name"]
    kwargs = dict(ckpt.get("model_kwargs") or {})
    try:
        model = build_model(name, speed=speed, **kwargs)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path}: cannot build model {name!r} with model_kwargs {kwargs}: {e}") from None
    state = ckpt["model"]
    if ema:
        ema_state = ckpt.get("ema")
        if not isinstance(ema_state, dict) or not isinstance(ema_state.get("model"), dict):
            raise CheckpointError(f"checkpoint {path} has no EMA weights (the run did not use ema_decay)")
        state = ema_state["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: 'model' must be a state dict, got {type(state).__name__}")
    report = LoadReport(source=str(path), path=str(path), layout="swinlab")
    try:
        load_state_dict_checked(model, {strip_key_prefix(k): v for k, v in state.items()}, strict=True,
                                report=report)
    except InvalidInputError as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from None

    n = _num_outputs(model)
    class_names = ckpt.get("class_names") or ckpt.get("classes")
    class_names = [str(c) for c in class_names] if class_names else _default_class_names(n)
    if n and len(class_names) != n:
        raise CheckpointError(f"checkpoint {path}: {len(class_names)} class names for a model with {n} outputs")
    classes = [str(c) for c in ckpt["classes"]] if ckpt.get("classes") else None
    aug = ckpt.get("aug_config")
    config = ckpt.get("config")
    info = ModelInfo(
        model_name=str(name),
        class_names=class_names,
        img_size=_model_img_size(model),
        config=dict(config) if isinstance(config, dict) else None,
        aug_config=dict(aug) if isinstance(aug, dict) else None,
        classes=classes,
        source=str(path),
        kind="checkpoint",
        checkpoint=str(path),
        extra={"epoch": ckpt.get("epoch"), "best_top1": ckpt.get("best_top1"), "ema": bool(ema)},
    )
    if info.aug_config:
        a = info.aug_config
        info.img_size = int(a.get("img_size", info.img_size))
        info.mean = tuple(float(v) for v in a.get("mean", info.mean))  # type: ignore[assignment]
        info.std = tuple(float(v) for v in a.get("std", info.std))  # type: ignore[assignment]
        info.crop_ratio = float(a.get("eval_crop_ratio", info.crop_ratio))
        info.interpolation = str(a.get("interpolation", info.interpolation))
    model.to(device).eval()
    return model, info


def _input_side(value: Any, fallback: int) -> int:
    """``input_size`` as an int, ``(H, W)`` or ``(3, H, W)`` -> its side."""
    if value is None:
        return fallback
    if isinstance(value, (int, float)):
        return int(value)
    seq = list(value)
    return int(seq[-1]) if seq else fallback


def _load_pretrained_folder(folder: Path, device: str | torch.device, speed: SpeedOptions | None
                            ) -> tuple[nn.Module, ModelInfo]:
    model = from_pretrained(folder, speed=speed)
    n = _num_outputs(model)
    names = getattr(model, "class_names", None)
    names = [str(c) for c in names] if names else _default_class_names(n)
    pre = model.preprocessing  # complete: from_pretrained fills it from the model's pretrained_cfg
    info = ModelInfo(
        model_name=str(getattr(model, "model_name", "")),
        class_names=names,
        img_size=_input_side(pre["input_size"], _model_img_size(model)),
        mean=tuple(float(v) for v in pre["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in pre["std"]),  # type: ignore[arg-type]
        crop_ratio=float(pre["crop_ratio"]),
        interpolation=str(pre["interpolation"]),
        classes=[str(c) for c in getattr(model, "classes", None) or []] or None,
        source=str(folder),
        kind="pretrained",
    )
    model.to(device).eval()
    return model, info


def load_model(
    source: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    pretrained: str | None = None,
    num_classes: int | None = None,
    ema: bool = False,
    speed: SpeedOptions | None = None,
) -> tuple[nn.Module, ModelInfo]:
    """Load a model for inference, in eval mode on ``device``.

    Args:
        source: one of
            * a run folder (``best.pt``, else ``last.pt``);
            * a training checkpoint file (``.pt`` / ``.pth`` ...);
            * a ``save_pretrained`` folder (``config.json`` +
              ``model.safetensors``), read with
              :func:`swinlab.weights.from_pretrained`;
            * a registered model name (random weights unless ``pretrained``).
        device: where to put the model.
        pretrained: for a zoo name: weights for :func:`swinlab.create_model`.
        num_classes: for a zoo name: head size (default: the configuration's).
        ema: for training checkpoints: use the EMA weights.
        speed: the model's :class:`~swinlab.models.fast.SpeedOptions`
            (default: the measured speed paths).

    A zoo name's preprocessing (input size, mean, std, crop, interpolation)
    is its registry :class:`~swinlab.models.registry.PretrainedCfg`.

    On the CPU it applies :func:`swinlab.memory.tune_cpu_allocator` (once per
    process), as training does: inference of a large model allocates tens
    of MiB per layer, which glibc would otherwise page-fault fresh on every
    call (``SWINLAB_TUNE_MALLOC=0`` switches it off).

    Returns:
        ``(model, info)``.

    Raises:
        FileNotFoundError: a path that does not exist, or a folder with no
            checkpoint / pretrained files (the message names the path).
        ValueError: an unreadable or invalid checkpoint, or an unknown model
            name.
    """
    if str(device).startswith("cpu"):
        tune_cpu_allocator()
    src = os.fspath(source)
    path = Path(src)
    if path.is_dir():
        if RunDir.is_run_dir(path):
            model, info = load_training_checkpoint(RunDir(path).model_file(), device, ema, speed)
            info.source, info.kind = str(path), "run"
            return model, info
        if (path / WEIGHTS_NAME).is_file() and (path / CONFIG_NAME).is_file():
            return _load_pretrained_folder(path, device, speed)
        raise InputNotFoundError(
            f"{path} is neither a run folder ({RunDir.BEST} / {RunDir.LAST}) nor a save_pretrained folder "
            f"({CONFIG_NAME} + {WEIGHTS_NAME})"
        )
    if path.is_file():
        if path.name.endswith(".safetensors") and (path.parent / CONFIG_NAME).is_file():
            return _load_pretrained_folder(path.parent, device, speed)
        return load_training_checkpoint(path, device, ema, speed)
    if src in list_models():
        model = create_model(src, num_classes=num_classes, pretrained=pretrained, speed=speed)
        info = ModelInfo.from_pretrained_cfg(src, pretrained_cfg(model), source=src, kind="zoo")
        model.to(device).eval()
        return model, info
    if os.sep in src or "/" in src or src.endswith(_PATH_SUFFIXES):
        raise InputNotFoundError(f"model source not found: {src} (no such file or folder)")
    get_model_spec(src)  # raises UnknownModelError naming close matches
    raise UsageError(f"cannot load model source {src!r}")  # pragma: no cover


def eval_transform_for(info: ModelInfo, **overrides: Any):
    """The :class:`swinlab.data.EvalTransform` matching ``info`` (resize the
    shorter side to ``img_size / crop_ratio``, centre crop, normalise).

    ``overrides``: AugmentConfig fields to change (``img_size``,
    ``eval_crop_ratio``, ``interpolation``, ``mean``, ``std``).

    Returns:
        a callable uint8 ``(B, 3, H, W)`` -> float ``(B, 3, S, S)``.

    Raises:
        ValueError: invalid settings (from :class:`swinlab.data.AugmentConfig`).
    """
    d = dict(info.aug_config or {})
    d.update(
        img_size=int(info.img_size),
        mean=list(info.mean),
        std=list(info.std),
        eval_crop_ratio=float(info.crop_ratio),
        interpolation=info.interpolation,
    )
    d.update({k: v for k, v in overrides.items() if v is not None})
    return EvalTransform(AugmentConfig.from_dict(d))
