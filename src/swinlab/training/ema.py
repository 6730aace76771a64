"""Exponential moving average of model weights.

Follows timm's ``ModelEmaV2`` (used by the official Swin code's
``MODEL_EMA`` option): ``ema = decay * ema + (1 - decay) * model`` for
floating-point parameters and buffers after every optimizer step, other
buffers copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEma"]


class ModelEma:
    """A frozen copy of ``model`` updated as an exponential moving average.

    Args:
        model: the model being trained (unwrapped, not DDP).
        decay: the EMA decay in (0, 1), e.g. 0.9998.

    Attributes:
        module: the averaged model (eval mode, no grads); evaluate it like any model.

    Raises:
        ValueError: decay outside (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` (same architecture) into the average."""
        self.updates += 1
        src = model.state_dict()
        for name, ema_v in self.module.state_dict().items():
            v = src[name].detach()
            if ema_v.dtype.is_floating_point:
                ema_v.mul_(self.decay).add_(v.to(ema_v.dtype), alpha=1.0 - self.decay)
            else:
                ema_v.copy_(v)

    def state_dict(self) -> dict[str, Any]:
        """``{"decay", "updates", "model": state_dict}``."""
        return {"decay": self.decay, "updates": self.updates, "model": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`.

        Raises:
            KeyError: ``model`` missing; RuntimeError: mismatching weights.
        """
        self.module.load_state_dict(state["model"])
        self.decay = float(state.get("decay", self.decay))
        self.updates = int(state.get("updates", 0))
