"""Multiply-accumulate (MAC) counting with ``torch.utils.flop_counter``.

The published complexity figures of Swin (paper Table 1, e.g. Swin-T 4.5G)
and of timm / fvcore count one MAC per multiply-add of the matrix products
and convolutions (linear layers, patch embedding, ``QK^T`` and ``AV``); norms,
softmax, GELU and additions are not counted. :func:`count_macs` gives that
figure as ``FlopCounterMode``'s FLOPs / 2.

``FlopCounterMode`` counts ``scaled_dot_product_attention`` only for the CUDA
kernels (the CPU kernels count 0), so the model is run through its explicit
attention path, ``forward_attention`` (``q @ k^T`` and ``probs @ v`` as
matmuls), which the counter sees. The count runs on the meta device
(parameters and buffers are swapped for meta tensors with
``torch.func.functional_call``; the model itself is untouched), so it costs
no arithmetic: Swin-L at 384 px counts in well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_macs", "count_params"]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (works on the meta device)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_size(input_size: Sequence[int]) -> tuple[int, int, int]:
    size = tuple(input_size)
    if len(size) != 3 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ValueError(f"input_size must be three positive ints (C, H, W), got {input_size!r}")
    return size  # type: ignore[return-value]


def count_macs(model: nn.Module, input_size: Sequence[int] = (3, 224, 224), meta: bool = True) -> int:
    """Multiply-accumulates of one forward pass of ONE image.

    Args:
        model: a classifier; when it has ``forward_attention`` (Swin, ViT) that
            explicit-attention path is counted, else ``forward``.
        input_size: ``(C, H, W)`` of the image; the count is for a
            ``(1, C, H, W)`` batch, in eval mode (dropout and stochastic depth
            off).
        meta: run on the meta device (no arithmetic). With ``False`` the
            count runs on real zeros on the model's device.

    Returns:
        MACs (FLOPs of matmuls, linear layers and convolutions, divided by 2),
        e.g. 4,490,566,656 for Swin-T at 224 px.

    Raises:
        ValueError: if ``input_size`` is not three positive ints.

    The model's training mode is restored afterwards; its parameters are never
    modified.
    """
    c, h, w = _check_size(input_size)
    name = "forward_attention" if hasattr(model, "forward_attention") else "forward"
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            if meta:
                tensors = {n: torch.empty_like(t, device="meta") for n, t in model.named_parameters()}
                tensors.update(
                    {n: torch.empty_like(t, device="meta") for n, t in model.named_buffers()}
                )
                _functional_call(model, tensors, torch.zeros(1, c, h, w, device="meta"), name)
            else:
                p = next(model.parameters(), None)
                device = p.device if p is not None else torch.device("cpu")
                getattr(model, name)(torch.zeros(1, c, h, w, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2)


def _functional_call(model: nn.Module, tensors: dict[str, torch.Tensor], x: torch.Tensor, method: str) -> None:
    """Call ``model.<method>(x)`` with ``tensors`` standing in for its parameters and buffers."""
    if method == "forward":
        torch.func.functional_call(model, tensors, (x,), strict=False)
        return

    class _Bound(nn.Module):
        # functional_call calls forward(); route it to the requested method.
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, inp: torch.Tensor):  # noqa: D401
            return getattr(self.inner, method)(inp)

    prefixed = {f"inner.{k}": v for k, v in tensors.items()}
    torch.func.functional_call(_Bound(model), prefixed, (x,), strict=False)
