"""Per-iteration learning-rate schedule: linear warmup, then cosine decay.

Follows the official Swin training code (microsoft/Swin-Transformer
``lr_scheduler.py``: timm's ``CosineLRScheduler`` with ``t_in_epochs=False``,
stepped every iteration, warmup from ``WARMUP_LR`` to ``BASE_LR`` over
``WARMUP_EPOCHS * steps_per_epoch`` steps, then
``min_lr + (base_lr - min_lr) * (1 + cos(pi * t / T)) / 2`` down to
``MIN_LR``; Loshchilov & Hutter 2017, SGDR, without restarts).

A run that is extended on resume (more epochs, or more minutes) gets its
schedule re-fitted from the current step (:meth:`WarmupCosineSchedule.refit`):
a new cosine segment starts at the lr the run has reached and ends at
``min_lr`` at the new last step, so the lr never jumps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["WarmupCosineSchedule"]


class WarmupCosineSchedule:
    """Set the lr of every param group of ``optimizer`` once per optimizer step.

    Each param group's lr is ``lr(t) * group.get("lr_scale", 1.0)`` (layer-wise
    decay scales), filled in place where the group holds its lr in a tensor. ``step()`` advances one iteration and applies the lr of the
    new step; the lr of step 0 is applied at construction.

    Args:
        optimizer: the optimizer to drive.
        base_lr: peak lr (after warmup), > 0.
        total_steps: iterations of the whole run (epochs * steps_per_epoch), >= 1.
        warmup_steps: linear warmup length in iterations (0: none).
        warmup_lr_init: lr at step 0 of the warmup.
        min_lr: lr at the end of the cosine (``total_steps``).
        kind: ``"cosine"`` or ``"constant"`` (base_lr after warmup).

    Raises:
        ValueError: bad lengths or rates.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        base_lr: float,
        total_steps: int,
        warmup_steps: int = 0,
        warmup_lr_init: float = 0.0,
        min_lr: float = 0.0,
        kind: str = "cosine",
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
        if base_lr <= 0 or min_lr < 0 or warmup_lr_init < 0:
            raise ValueError(f"need base_lr > 0, min_lr >= 0, warmup_lr_init >= 0; got {base_lr}, {min_lr}, "
                             f"{warmup_lr_init}")
        if kind not in ("cosine", "constant"):
            raise ValueError(f"kind must be 'cosine' or 'constant', got {kind!r}")
        self.optimizer = optimizer
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.warmup_lr_init = float(warmup_lr_init)
        self.min_lr = float(min_lr)
        self.kind = kind
        self.step_count = 0
        self.progress: float | None = None
        self.segment_start: int = 0  # step where the current cosine segment starts
        self.segment_lr: float | None = None  # its lr there (None: the original schedule)
        self._apply(self.lr_at(0))

    def lr_at(self, step: float) -> float:
        """The lr at iteration ``step`` (fractional steps allowed; clamped to
        ``[0, total_steps]``)."""
        step = min(max(float(step), 0.0), float(self.total_steps))
        if self.segment_lr is not None and step >= self.segment_start:
            if self.kind == "constant":
                return self.segment_lr
            span = self.total_steps - self.segment_start
            t = (step - self.segment_start) / span if span > 0 else 1.0
            return self.min_lr + 0.5 * (self.segment_lr - self.min_lr) * (1.0 + math.cos(math.pi * t))
        if step < self.warmup_steps:
            return self.warmup_lr_init + (self.base_lr - self.warmup_lr_init) * step / self.warmup_steps
        if self.kind == "constant":
            return self.base_lr
        span = self.total_steps - self.warmup_steps
        if span <= 0:
            return self.min_lr
        t = (step - self.warmup_steps) / span
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * t))

    def step(self, progress: float | None = None) -> float:
        """Advance one iteration and apply its lr.

        Args:
            progress: optional fraction in [0, 1] of the current segment (e.g.
                the elapsed share of a time budget); after warmup, the schedule
                uses ``max(step, start + progress * (total_steps - start))``
                (``start``: the segment's first step, 0 for the original
                schedule) so it never lags behind it.

        Returns:
            the lr now applied (before the per-group ``lr_scale``).
        """
        self.step_count += 1
        t = float(self.step_count)
        if progress is not None and self.step_count >= self.warmup_steps:
            self.progress = float(progress)
            start = self.segment_start if self.segment_lr is not None else 0
            t = max(t, start + min(max(self.progress, 0.0), 1.0) * (self.total_steps - start))
        lr = self.lr_at(t)
        self._apply(lr)
        return lr

    def refit(self, total_steps: int) -> None:
        """Extend (or shorten) the schedule to ``total_steps`` from the current
        step without an lr jump: after warmup, a new cosine segment starts at
        the current lr and reaches ``min_lr`` at ``total_steps``.

        Raises:
            ValueError: ``total_steps`` not after the current step.
        """
        if total_steps <= self.step_count:
            raise ValueError(f"the schedule is at step {self.step_count}; cannot end it at step {total_steps}")
        if self.step_count >= self.warmup_steps:
            self.segment_start, self.segment_lr = self.step_count, self.last_lr
        self.total_steps = int(total_steps)

    def _apply(self, lr: float) -> None:
        self.last_lr = lr
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):  # the graph step's lr: changed in place, on its device
                group["lr"].fill_(lr * group.get("lr_scale", 1.0))
            else:
                group["lr"] = lr * group.get("lr_scale", 1.0)

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state (for ``torch.load(weights_only=True)``)."""
        return {
            "step_count": self.step_count,
            "base_lr": self.base_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "warmup_lr_init": self.warmup_lr_init,
            "min_lr": self.min_lr,
            "kind": self.kind,
            "last_lr": self.last_lr,
            "segment_start": self.segment_start,
            "segment_lr": self.segment_lr,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` and re-apply its lr.

        Raises:
            KeyError: ``step_count`` missing.
        """
        for key in ("base_lr", "total_steps", "warmup_steps", "warmup_lr_init", "min_lr", "kind", "segment_start",
                    "segment_lr"):
            if key in state:
                setattr(self, key, state[key])
        self.step_count = int(state["step_count"])
        self._apply(float(state.get("last_lr", self.lr_at(self.step_count))))
