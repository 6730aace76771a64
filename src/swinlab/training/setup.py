"""What a training run is built from: the precision, the data, the model and
its optimizer, and the input-size schedule. :mod:`.engine` puts them together.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import data
from ..data.config import AugmentConfig
from ..errors import ConfigError, UsageError
from ..factory import create_model
from ..models.registry import get_model_spec
from .config import TrainConfig

__all__ = ["choose_precision", "cpu_bf16_matrix", "TrainData", "build_data", "build_run_model", "ResizeSchedule", "cpu_flags"]


def cpu_flags() -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where unavailable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


#: ``ONEDNN_MAX_CPU_ISA`` caps (oneDNN's ISA names) below AVX512-BF16, and those below AMX.
_ISA_BELOW_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"})
_ISA_BELOW_AMX = _ISA_BELOW_BF16 | {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512"}


def cpu_bf16_matrix() -> str | None:
    """The bf16 matrix instructions PyTorch's CPU kernels (oneDNN) may use here:
    ``"AMX bf16 tiles"`` (flag ``amx_bf16``), ``"AVX512-BF16 instructions"``
    (``avx512_bf16``), or None. Flags come from :func:`cpu_flags`; an
    ``ONEDNN_MAX_CPU_ISA`` cap below them (e.g. ``AVX512_CORE_VNNI``, ``AVX2``:
    how a CPU without them is emulated) hides them, as it hides them from oneDNN.
    """
    flags = cpu_flags()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").strip().upper()
    if "amx_bf16" in flags and cap not in _ISA_BELOW_AMX:
        return "AMX bf16 tiles"
    if flags & {"avx512_bf16", "amx_bf16"} and cap not in _ISA_BELOW_BF16:
        return "AVX512-BF16 instructions"
    return None


def choose_precision(amp: str, device: torch.device, option: str = "amp") -> tuple[torch.dtype | None, str]:
    """The autocast dtype for ``amp`` on ``device`` and why (a phrase for the log).

    ``auto``: float16 on CUDA (with a GradScaler); on a CPU bfloat16 when it
    has bf16 matrix instructions (:func:`cpu_bf16_matrix`: AMX tiles or
    AVX512-BF16), where a small Swin's training step measured 1.4x faster in
    bf16 than in fp32 and inference 2.3x (``benchmarks/RESULTS_train.md``,
    ``RESULTS_deploy.md``); else fp32. The one decision of training's
    ``amp`` and of inference's ``--precision``
    (:func:`swinlab.inference.precision.resolve_precision`).

    Args:
        amp: ``"none"``, ``"bf16"``, ``"fp16"`` or ``"auto"``.
        option: how the option is named in messages (``"amp"``, ``"--precision"``).

    Raises:
        UsageError: ``fp16`` on a CPU, or an unknown mode.
    """
    if amp == "none":
        return None, f"{option}=none"
    if amp == "bf16":
        return torch.bfloat16, f"{option}=bf16"
    if amp == "fp16":
        if device.type != "cuda":
            raise UsageError(f"{option}=fp16 needs a CUDA device (got {device}); use bf16 or fp32/none on a CPU")
        return torch.float16, f"{option}=fp16"
    if amp != "auto":
        raise UsageError(f"{option}={amp!r}: expected 'none', 'bf16', 'fp16' or 'auto'")
    if device.type == "cuda":
        return torch.float16, f"{option}=auto on CUDA"
    found = cpu_bf16_matrix()
    if found:
        return torch.bfloat16, f"{option}=auto: this CPU has {found}"
    return None, f"{option}=auto: no bf16 matrix instructions on this CPU, so fp32 is the fast choice"


class _Split(Dataset):
    """Items ``indices`` of a data set, keeping its class attributes."""

    def __init__(self, base: Any, indices: list[int]) -> None:
        self.base, self.indices = base, indices
        for key in ("classes", "class_names", "num_classes", "skipped"):
            setattr(self, key, getattr(base, key, None))
        self.targets = [base.targets[i] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.base[self.indices[i]]

    def cached_tensors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The base's cached ``(images, labels)`` at ``indices`` (a copy), or None
        (see :meth:`swinlab.data.ImageDataset.cached_tensors`)."""
        base = getattr(self.base, "cached_tensors", None)
        tensors = base() if base is not None else None
        if tensors is None:
            return None
        index = torch.as_tensor(self.indices, dtype=torch.int64)
        return tensors[0][index], tensors[1][index]


@dataclass
class TrainData:
    """The data of a run: the two splits, class lists and the full-size augmentation settings."""

    train: Any
    val: Any
    num_classes: int
    classes: list[str]
    class_names: list[str]
    aug: AugmentConfig


def model_img_size(cfg: TrainConfig) -> int:
    """The model's input side in pixels: ``model_overrides.img_size``, else the registry's."""
    size = cfg.model_overrides.get("img_size", get_model_spec(cfg.model).kwargs.get("img_size", 224))
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _dataset(cfg: TrainConfig, split: str, transform: Any, progress: bool) -> Any:
    return data.build_dataset(cfg.data, cfg.data_root, split=split, num_classes=cfg.num_classes, cache=cfg.cache,
                              skip_corrupt=cfg.skip_corrupt, transform=transform, progress=progress)


def build_data(cfg: TrainConfig, progress: bool) -> TrainData:
    """Build the training and validation splits (validated, decoded into
    memory with ``cache``) and the augmentation settings at full size.

    Raises:
        ConfigError: bad augmentation settings. InputError / DataError: data
            that cannot be found or read (from :func:`swinlab.data.build_dataset`).
    """
    aug = cfg.aug if cfg.aug.img_size is not None else cfg.aug.with_size(model_img_size(cfg))
    load_size = cfg.load_size
    if load_size is None and cfg.data.lower() == "folder":
        load_size = math.ceil(aug.img_size / aug.eval_crop_ratio)
    resize = data.ResizeUint8(load_size, interpolation=aug.interpolation) if load_size else None
    train = _dataset(cfg, cfg.train_split, resize, progress)
    if cfg.holdout_fraction:
        n_train = int(len(train) * (1 - cfg.holdout_fraction))  # the Keras example's np.split
        train, val = _Split(train, list(range(n_train))), _Split(train, list(range(n_train, len(train))))
    else:
        val = _dataset(cfg, cfg.val_split, resize, progress)
    classes = [str(c) for c in train.classes]
    names = [str(c) for c in (getattr(train, "class_names", None) or classes)]
    return TrainData(train, val, int(train.num_classes), classes, names, aug)


def build_run_model(cfg: TrainConfig, num_classes: int, img_size: int, load_pretrained: bool) -> nn.Module:
    """The model of ``cfg`` with ``num_classes`` outputs built for ``img_size``
    (and its pretrained weights unless resuming).

    Raises:
        ConfigError: a fine-tuning recipe without ``pretrained``; ``grad_checkpointing``
            for a model without ``set_grad_checkpointing``.
    """
    spec_kwargs = get_model_spec(cfg.model).kwargs
    overrides = dict(cfg.model_overrides)
    if "img_size" not in overrides and spec_kwargs.get("img_size") not in (None, img_size) \
            and "resize_to" not in spec_kwargs:
        overrides["img_size"] = img_size
    if cfg.pretrained_required and not cfg.pretrained:
        raise ConfigError(f"this recipe fine-tunes pretrained weights: set pretrained (--pretrained SOURCE) "
                          f"for model {cfg.model!r}")
    dpr_override = overrides.pop("drop_path_rate", None)
    dpr = cfg.drop_path_rate if cfg.drop_path_rate is not None else dpr_override
    model = create_model(cfg.model, num_classes=num_classes, drop_path_rate=dpr,
                         pretrained=(cfg.pretrained or None) if load_pretrained else None, **overrides)
    if cfg.grad_checkpointing:
        _enable_grad_checkpointing(model, cfg.model)
    return model


def _enable_grad_checkpointing(model: nn.Module, name: str) -> None:
    """Turn on gradient checkpointing of every block (``grad_checkpointing``).

    Raises:
        ConfigError: the model class has no ``set_grad_checkpointing``.
    """
    switch = getattr(model, "set_grad_checkpointing", None)
    if not callable(switch):
        raise ConfigError(f"grad_checkpointing=true: model {name!r} ({type(model).__name__}) has no "
                          f"set_grad_checkpointing method; drop --grad-checkpointing or choose a model that has it "
                          f"(the Swin, SwinV2 and ViT families)")
    switch(True)


class ResizeSchedule:
    """Progressive resizing: the training input size for a fraction of the run.

    Args:
        phases: ``[[start_fraction, size], ...]`` (fractions increasing from
            0), or None for one size.
        full_size: the size without phases (and of evaluation).

    ``size_at(f)`` gives the size of the last phase that starts at or before
    fraction ``f`` in [0, 1] (of the time budget, or of the steps).
    """

    def __init__(self, phases: list[list[float]] | None, full_size: int) -> None:
        self.phases = [(float(f), int(s)) for f, s in phases] if phases else [(0.0, int(full_size))]

    def size_at(self, fraction: float) -> int:
        size = self.phases[0][1]
        for start, s in self.phases:
            if fraction >= start:
                size = s
        return size
