"""Inference precision: ``--precision auto|fp32|bf16|fp16`` of every inference
command, and eager PyTorch run under autocast (:class:`AutocastModel`).

``auto`` is decided by the same function as training's ``amp=auto``
(:func:`swinlab.training.setup.choose_precision`): bf16 on a CPU with bf16
matrix instructions (AMX tiles or AVX512-BF16), fp32 on other CPUs, fp16 on
CUDA. bf16 autocast follows PyTorch's CPU autocast policy: matrix products
and convolutions in bfloat16, reductions such as softmax and layer norm in
float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UsageError
from ..training.setup import choose_precision

__all__ = ["PRECISIONS", "Precision", "resolve_precision", "AutocastModel", "with_precision"]

#: ``--precision`` choices.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AMP_MODE = {"auto": "auto", "fp32": "none", "bf16": "bf16", "fp16": "fp16"}
_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Precision:
    """A decided precision.

    Attributes:
        name: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        dtype: the autocast dtype (None for fp32).
        reason: why, e.g. ``"--precision=auto: this CPU has AMX bf16 tiles"``.
    """

    name: str
    dtype: torch.dtype | None
    reason: str


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> Precision:
    """Decide ``precision`` (one of :data:`PRECISIONS`) on ``device``.

    Raises:
        UsageError: an unknown value, or fp16 on a CPU.
    """
    if precision not in _AMP_MODE:
        raise UsageError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    dtype, reason = choose_precision(_AMP_MODE[precision], torch.device(device), option="--precision")
    return Precision(_NAMES[dtype], dtype, reason)


class AutocastModel(nn.Module):
    """An eager classifier run under ``torch.autocast(device, dtype)``.

    Args:
        model: ``(B, 3, H, W)`` float -> ``(B, C)`` logits (and ``forward_pooled``
            ``(B, 3, H, W)`` -> ``(B, D)``, used by ``swinlab features``).
        dtype: ``torch.bfloat16`` (CPU, CUDA) or ``torch.float16`` (CUDA).

    Outputs are float32. ``eager_model`` is ``model`` (attention maps are
    drawn from it in fp32); ``runtime_label`` names the runtime (``"eager-bf16"``).
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype
        object.__setattr__(self, "eager_model", model)  # not a second registered submodule
        self.runtime_label = f"eager-{_NAMES[dtype]}"
        self.num_features = int(getattr(model, "num_features", 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> float32 ``(B, C)`` logits."""
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.model(x).float()

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> float32 pooled features ``(B, D)``."""
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.model.forward_pooled(x).float()


def with_precision(model: nn.Module, precision: Precision) -> nn.Module:
    """``model`` itself for fp32, else wrapped in :class:`AutocastModel`."""
    return model if precision.dtype is None else AutocastModel(model, precision.dtype)

