"""The training step as one function of device tensors (``train_step="graph"``).

:class:`GraphStep` runs augmentation (:class:`swinlab.data.DeviceAugment`), forward, the
soft-target loss, backward, gradient clipping and the AdamW update as one Python function
that reads nothing back from the device: the loss and the number of correct top-1
predictions of every step stay on the device and are read in one go by :meth:`GraphStep.read`
(the training loop does it every ``log_every`` steps and at the end of an epoch).  The
learning rate lives in 0-d tensors of the optimizer's parameter groups (the schedule fills
them in place) and the update is torch's functional ``adamw`` on the optimizer's own state
(the step counts on the device), so the step has static shapes and no Python value that
changes between steps.  The gradients come from ``torch.autograd.grad``.  With ``compile``
the whole step is one ``torch.compile(fullgraph=True)`` graph (the backward traced by
Dynamo's ``trace_autograd_ops``; on a torch without it, Dynamo splits the graph there);
``mode="reduce-overhead"`` replays it as a CUDA graph (the optimizer state marked as
static addresses).

Not supported (:func:`check_graph_step`): gradient accumulation and an fp16 loss scaler
(both need host decisions per step); ``amp="auto"`` picks bf16 on CUDA instead of fp16.
Follows the official Swin training step (``main.py: train_one_epoch``) otherwise.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.optim.adamw import adamw
from torch.overrides import TorchFunctionMode

from .. import data
from ..data.config import AugmentConfig
from ..errors import ConfigError
from .metrics import soft_target_cross_entropy

__all__ = ["GraphStep", "HostSyncError", "NoHostSync", "check_graph_step", "clip_by_total_norm", "graph_precision",
           "tensor_lr"]


class HostSyncError(RuntimeError):
    """A tensor value was read back to the host inside a step that must not do it."""


_READS = {
    torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.__bool__,
    torch.Tensor.__int__, torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.nonzero, torch.nonzero,
    torch.Tensor.masked_select, torch.masked_select, torch.unique, torch.Tensor.unique, torch.argwhere,
    torch.Tensor.argwhere, torch.Tensor.unique_consecutive, torch.unique_consecutive,
}


class NoHostSync(TorchFunctionMode):
    """A ``torch.overrides.TorchFunctionMode`` that raises :class:`HostSyncError` on a host read
    of a tensor value: ``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``, ``bool()`` /
    ``int()`` / ``float()`` / ``__index__`` of a tensor, ``.to("cpu")``, and the ops whose
    output shape depends on the values (``nonzero``, ``masked_select``, ``unique``,
    ``argwhere``, a one-argument ``where``, indexing with a boolean tensor).  Only calls
    made from Python are seen (what a device queue would wait for there); use it around
    an eager step: ``with NoHostSync(): step(...)``."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _READS or (func is torch.where and len(args) + len(kwargs) == 1) or _to_host(func, args, kwargs) \
                or (func is torch.Tensor.__getitem__ and _bool_index(args[1])):
            raise HostSyncError(f"host synchronisation inside the step: {getattr(func, '__qualname__', func)}")
        return func(*args, **kwargs)


def _to_host(func: Any, args: tuple, kwargs: dict) -> bool:
    """``Tensor.to`` / ``Tensor.copy_`` that moves a non-CPU tensor's values to the CPU."""
    if func not in (torch.Tensor.to, torch.Tensor.copy_) or not args or not isinstance(args[0], torch.Tensor):
        return False
    if func is torch.Tensor.copy_:
        return args[0].device.type == "cpu" and isinstance(args[1], torch.Tensor) and args[1].device.type != "cpu"
    target = kwargs.get("device", next((a for a in args[1:] if isinstance(a, (str, torch.device))), None))
    return target is not None and torch.device(target).type == "cpu" and args[0].device.type != "cpu"


def _bool_index(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


def clip_by_total_norm(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """``torch.nn.utils.clip_grad_norm_`` on a list of gradients (not ``.grad``): scaled by
    ``min(1, max_norm / (total L2 norm + 1e-6))``, with no host read."""
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads]))
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    return [g * coef.to(g.dtype) for g in grads]


def check_graph_step(accum_steps: int, amp_dtype: torch.dtype | None, source: str = "config") -> None:
    """Refuse what the graph step cannot do.

    Raises:
        ConfigError: ``accum_steps > 1`` or fp16 autocast (its loss scaler decides per step on the host).
    """
    if accum_steps != 1:
        raise ConfigError(f"{source}: train_step='graph' makes one optimizer step per batch; accum_steps="
                          f"{accum_steps} needs train_step='classic' (or a larger batch_size)")
    if amp_dtype == torch.float16:
        raise ConfigError(f"{source}: train_step='graph' has no fp16 loss scaler (it reads the gradients' "
                          f"finiteness on the host every step); use amp='bf16' or 'none'")


def graph_precision(amp: str, amp_dtype: torch.dtype | None, reason: str) -> tuple[torch.dtype | None, str]:
    """``amp="auto"`` on CUDA means fp16 with a loss scaler for the classic step; the graph
    step takes bf16 instead (no scaler: nothing to decide on the host)."""
    if amp == "auto" and amp_dtype == torch.float16:
        return torch.bfloat16, "amp=auto with train_step=graph on CUDA (no fp16 loss scaler)"
    return amp_dtype, reason


def tensor_lr(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Hold each parameter group's lr in a 0-d float32 tensor on ``device`` (kept when it
    already is one there), so the schedule changes it in place and a compiled step sees
    no new Python value.  Reads a tensor lr held elsewhere once (after a resume)."""
    for group in optimizer.param_groups:
        lr = group["lr"]
        if not (isinstance(lr, torch.Tensor) and lr.device == device):
            group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=device)


def _adamw_state(state: dict[str, Any], p: torch.Tensor) -> dict[str, Any]:
    """``torch.optim.AdamW``'s state of ``p`` (created as it does when empty), its ``step``
    a float32 0-d tensor on ``p``'s device (a resumed classic state keeps it on the CPU)."""
    if not state:
        state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    elif state["step"].device != p.device:
        state["step"] = state["step"].to(device=p.device, dtype=torch.float32)
    return state


class GraphStep:
    """One training step on device tensors with no host synchronisation (module docstring).

    Call ``step(images uint8 (B, 3, H, W), labels int64 (B,), size)`` with the batch on the
    device; ``size`` is the training input side in pixels (one :class:`DeviceAugment`, and
    one compiled graph, per size).  :meth:`read` returns what the steps since the last read
    measured.

    Args:
        model: the module the step calls (the model, or its DDP wrapper).
        optimizer: an AdamW over the model's parameters (its groups and state are used;
            its ``step()`` is not called).
        aug: the augmentation settings (``img_size`` is replaced by ``size``).
        num_classes: K of the soft targets.
        device: where the batches, the model and the augmentation live.
        amp_dtype: autocast dtype (bf16) or None; not fp16 (:func:`check_graph_step`).
        clip_grad: max gradient norm, or None.
        compile: ``torch.compile`` the whole step, as one graph (``fullgraph``) where this
            torch traces the backward and not under DDP.
        ddp: ``model`` is a ``DistributedDataParallel``: the gradients come from
            ``loss.backward()`` (its all-reduce hooks), else from ``torch.autograd.grad``.
        mode: ``torch.compile`` mode (``"reduce-overhead"``: CUDA graphs); ``options``:
            Inductor options instead of a mode (e.g. ``{"fallback_random": True}`` in tests).

    Raises:
        ConfigError: fp16 ``amp_dtype``.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, aug: AugmentConfig, num_classes: int,
                 device: torch.device, amp_dtype: torch.dtype | None = None, clip_grad: float | None = None,
                 compile: bool = False, mode: str = "default", options: dict[str, Any] | None = None,
                 ddp: bool = False) -> None:
        check_graph_step(1, amp_dtype)
        self.model, self.optimizer, self.aug, self.num_classes = model, optimizer, aug, int(num_classes)
        self.device, self.amp_dtype, self.clip_grad = torch.device(device), amp_dtype, clip_grad
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.augmenters: dict[int, data.DeviceAugment] = {}
        self.fullgraph = compile and not ddp and hasattr(torch._dynamo.config, "trace_autograd_ops")
        self._pending: list[torch.Tensor] = []
        self._batches: list[int] = []
        self.ddp = ddp
        # compiled: the foreach form, which Inductor fuses (the fused kernel is opaque to it);
        # eager: the fused kernel; both keep the step counts on the device (no host read)
        self._impl = dict(foreach=True, capturable=True, fused=False) if compile else dict(fused=True)
        self._bound: Any = None
        self.static_state = compile and mode == "reduce-overhead"
        self._groups: list[tuple[dict[str, Any], list[int], list, list, list]] = []
        self._fn = self._step
        if compile:
            kw: dict[str, Any] = {"options": options} if options else {"mode": None if mode == "default" else mode}
            self._fn = torch.compile(self._step, fullgraph=self.fullgraph, dynamic=False, **kw)

    def augment(self, size: int) -> data.DeviceAugment:
        """The device augmentation at ``size`` pixels (built once per size, on the device)."""
        if size not in self.augmenters:
            self.augmenters[size] = data.DeviceAugment(self.aug.with_size(size), self.num_classes).to(self.device)
        return self.augmenters[size]

    def _step(self, images: torch.Tensor, labels: torch.Tensor, augment: nn.Module) -> torch.Tensor:
        """Augment, forward, loss, backward, clip, AdamW: ``(2,)`` float32 ``[loss, correct]``."""
        inputs, soft = augment(images, labels)
        amp = self.amp_dtype
        with torch.autocast(self.device.type, dtype=amp) if amp else contextlib.nullcontext():
            logits = self.model(inputs)
        loss = soft_target_cross_entropy(logits.float(), soft)
        if self.ddp:  # DDP all-reduces in the hooks of backward()
            loss.backward()
            grads = [p.grad for p in self.params]
        else:
            grads = list(torch.autograd.grad(loss, self.params))
        with torch.no_grad():
            if self.clip_grad is not None:
                grads = clip_by_total_norm(grads, self.clip_grad)
            self._adamw(grads)
        if self.ddp:
            for p in self.params:
                p.grad = None
        correct = (logits.detach().argmax(dim=1) == labels).sum()
        return torch.stack([loss.detach(), correct.to(torch.float32)])

    def _adamw(self, grads: list[torch.Tensor]) -> None:
        """The optimizer's update through torch's functional ``adamw`` with the group
        settings and state of ``self.optimizer`` (``Optimizer.step`` breaks a compiled graph
        on purpose, pytorch/pytorch#104053; the fused kernel is not traced)."""
        for group, index, exp_avgs, exp_avg_sqs, steps in self._groups:
            adamw(
                [self.params[i] for i in index], [grads[i] for i in index], exp_avgs, exp_avg_sqs, [], steps,
                **self._impl, amsgrad=False, beta1=group["betas"][0], beta2=group["betas"][1], lr=group["lr"],
                weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    def _bind_state(self) -> None:
        """Create AdamW's state as ``torch.optim.AdamW`` does (``step`` a float32 0-d tensor on
        the parameter's device, ``exp_avg``, ``exp_avg_sq``), so checkpoints stay the
        optimizer's, and list it per group; again after ``load_state_dict`` (a resume)."""
        if self._bound is self.optimizer.state:
            return
        where = {p: i for i, p in enumerate(self.params)}
        self._groups = []
        for group in self.optimizer.param_groups:
            if group.get("amsgrad") or group.get("maximize") or group.get("differentiable"):
                raise ConfigError("the graph step's AdamW takes no amsgrad, maximize or differentiable groups")
            params = [p for p in group["params"] if p in where]
            states = [_adamw_state(self.optimizer.state[p], p) for p in params]
            self._groups.append((group, [where[p] for p in params], [s["exp_avg"] for s in states],
                                 [s["exp_avg_sq"] for s in states], [s["step"] for s in states]))
            if self.static_state:  # CUDA graphs: no copy of them into the graph's own memory per replay
                for t in (group["lr"], *(t for s in states for t in s.values())):
                    torch._dynamo.mark_static_address(t)
        self._bound = self.optimizer.state

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, size: int) -> None:
        tensor_lr(self.optimizer, self.device)  # before _bind_state: it may mark the lr static
        self._bind_state()
        trace = torch._dynamo.config.patch(trace_autograd_ops=True) if self.fullgraph else contextlib.nullcontext()
        with trace:
            out = self._fn(images, labels, self.augment(size))
        self._pending.append(out.clone())  # a CUDA graph reuses its output's memory at the next replay
        self._batches.append(int(images.shape[0]))

    def read(self) -> tuple[list[float], list[float]]:
        """The steps since the last read, in one host read: ``(per-step losses, [loss x
        images summed, correct, images])``."""
        if not self._pending:
            return [], [0.0, 0.0, 0.0]
        rows = torch.stack(self._pending).tolist()
        batches, self._pending, self._batches = self._batches, [], []
        losses = [r[0] for r in rows]
        sums = [sum(r[0] * b for r, b in zip(rows, batches)), sum(r[1] for r in rows), float(sum(batches))]
        return losses, sums
