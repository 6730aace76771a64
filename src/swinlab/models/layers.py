"""Small building blocks shared by the Swin and ViT models.

Follows timm's ``layers`` (``DropPath``, ``Mlp``) and the official Swin code
(``drop_path`` from the Deep Networks with Stochastic Depth paper, Huang et
al. 2016). ``drop_path_residual`` is the residual step of every block: with
stochastic depth in training it skips the branch work of dropped samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = [
    "DropPath", "Mlp", "to_2tuple", "init_weights_trunc_normal", "MLP_CHUNK_ELEMENTS", "MLP_RECOMPUTE_MIN_BYTES",
    "drop_path_residual",
]

# Hidden activations per block of tokens in the blocked MLP (8 MiB fp32).
MLP_CHUNK_ELEMENTS = 2**21
# With autograd, the blocked (recomputing) MLP is used from this hidden-map
# size on: glibc serves larger blocks with fresh mmap'ed pages on every call.
MLP_RECOMPUTE_MIN_BYTES = 32 * 2**20


def to_2tuple(x: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Return ``(x, x)`` for an int, ``tuple(x)`` for a pair.

    Raises:
        ValueError: if ``x`` is a sequence whose length is not 2.
    """
    if isinstance(x, int):
        return (x, x)
    t = tuple(int(v) for v in x)
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair of ints, got {x!r}")
    return t  # type: ignore[return-value]


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al. 2016), as in the official Swin code.

    In training, zeroes the whole residual branch of a sample with probability
    ``drop_prob`` and scales the survivors by ``1 / (1 - drop_prob)``; the
    identity in eval mode.

    Shapes: input and output ``(B, ...)``.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def drop_path_residual(
    x: torch.Tensor,
    branch: Callable[[torch.Tensor], tuple[torch.Tensor, Any]],
    drop_path: nn.Module,
    skip_dropped: bool = True,
) -> tuple[torch.Tensor, Any]:
    """Residual branch with stochastic depth: ``x + drop_path(y)`` for
    ``y, extra = branch(x)``; returns ``(that sum, extra)``.

    Args:
        x: ``(B, ...)``; ``branch`` maps ``(b, ...)`` to ``((b, ...), extra)``
            for any batch b and treats the samples independently.
        drop_path: a :class:`DropPath` or ``nn.Identity`` (plain residual);
            any other module is applied to the branch output as it is.
        skip_dropped: allow computing the branch for the kept samples only.

    In training, :class:`DropPath` zeroes the branch of each sample with
    probability p and scales the others by ``1 / (1 - p)``. Here the same
    random draws are made *before* the branch runs; when samples are dropped
    (and ``skip_dropped``, eager mode), the branch runs on the kept samples
    only and its scaled output is added back with ``index_add``. The result
    is that of DropPath (to the float rounding of the smaller matmuls), and
    the forward and backward work of the dropped samples is saved -- on
    average a fraction p of every branch (Swin-T, drop_path_rate 0.2: about
    10% of the block work; a training step measured 1.08x faster with
    ``benchmarks/bench_cpu_speed.py --masked-drop-path``). ``extra`` then covers the kept samples only.
    When every sample is dropped the branch still runs (and is multiplied by
    zero), so its parameters get zero gradients exactly as with DropPath.
    Sample skipping is one of the speed-ups of "Deep Networks with
    Stochastic Depth" (Huang et al. 2016, Sec. 3: dropped blocks need no
    computation); the official Swin and timm code multiply by the mask.
    """
    if not isinstance(drop_path, (DropPath, nn.Identity)):
        y, extra = branch(x)
        return x + drop_path(y), extra
    if not (isinstance(drop_path, DropPath) and drop_path.training and drop_path.drop_prob > 0.0):
        y, extra = branch(x)
        return _residual_add(y, x), extra
    B = x.shape[0]
    keep = 1.0 - drop_path.drop_prob
    scale = x.new_empty(B).bernoulli_(keep).div_(keep)  # DropPath's draws, shape (B,)
    if skip_dropped and _eager():
        kept = scale.nonzero().squeeze(1)
        # All dropped: the full masked branch below, so that its parameters
        # still get (zero) gradients -- skipping it would leave them None,
        # which DistributedDataParallel rejects and AdamW treats as "no step"
        # (no momentum, no weight decay), unlike the masking formulation.
        if 0 < kept.numel() < B:
            y, extra = branch(x.index_select(0, kept))
            y = y * scale.index_select(0, kept).view(-1, *(1,) * (y.ndim - 1))
            return x.index_add(0, kept, y), extra
    y, extra = branch(x)
    return _residual_add(y * scale.view(-1, *(1,) * (y.ndim - 1)), x), extra


def _residual_add(branch: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """``branch + shortcut``, computed in place in ``branch`` (a fresh tensor
    that backward does not need) to spare one map-sized allocation -- unless
    autograd would have to turn the in-place op on a view into a copy, or
    ``branch`` is ``shortcut`` itself or has another shape."""
    if (
        branch is shortcut
        or branch.shape != shortcut.shape
        or (torch.is_grad_enabled() and branch._base is not None)
    ):
        return branch + shortcut
    return branch.add_(shortcut)


def _eager() -> bool:
    """False while tracing, scripting or compiling: Python-side caches and
    Python-level fast paths are used in eager mode only."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    compiler = getattr(torch, "compiler", None)
    return not (compiler is not None and compiler.is_compiling())


def _fast_path_allowed(x: torch.Tensor) -> bool:
    """Python-level blocked kernels run only eagerly on the CPU, without autocast."""
    return x.device.type == "cpu" and not torch.is_autocast_enabled("cpu") and _eager()


def _mlp_blocks(
    x2: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
    rows: int, approximate: str,
) -> torch.Tensor:
    """``fc2(gelu(fc1(x2)))`` for ``x2`` ``(M, C)``, ``rows`` rows at a time."""
    total = x2.shape[0]
    out = x2.new_empty(total, w2.shape[0])
    hidden = x2.new_empty(min(rows, total), w1.shape[0])
    for start in range(0, total, rows):
        stop = min(total, start + rows)
        h = torch.addmm(b1, x2[start:stop], w1.t(), out=hidden[: stop - start])
        torch._C._nn.gelu_(h, approximate=approximate)
        torch.addmm(b2, h, w2.t(), out=out[start:stop])
    return out


class _BlockedMlpFunction(torch.autograd.Function):
    """fc1 -> GELU -> fc2 computed over blocks of rows, saving only the input.

    Backward recomputes each block's hidden activations (one extra fc1 GEMM)
    instead of keeping two ``(M, hidden)`` maps alive: for large maps this is
    faster on CPUs (no page faults on huge fresh allocations, the block stays
    in cache) and uses far less memory. Gradients equal the plain autograd
    ones up to float rounding of the block-wise weight-gradient sums.
    """

    @staticmethod
    def forward(ctx, x2, w1, b1, w2, b2, rows: int, approximate: str):  # type: ignore[override]
        ctx.save_for_backward(x2, w1, b1, w2)
        ctx.rows, ctx.approximate = rows, approximate
        return _mlp_blocks(x2, w1, b1, w2, b2, rows, approximate)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        x2, w1, b1, w2 = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2 = ctx.needs_input_grad[:5]
        grad = grad.contiguous()
        total, rows, hid = x2.shape[0], ctx.rows, w1.shape[0]
        gx = torch.empty_like(x2) if need_x else None
        gw1 = torch.zeros_like(w1) if need_w1 else None
        gb1 = torch.zeros_like(b1) if need_b1 else None
        gw2 = torch.zeros_like(w2) if need_w2 else None
        gb2 = grad.sum(0) if need_b2 else None
        n0 = min(rows, total)
        h_buf, a_buf, g_buf = (x2.new_empty(n0, hid) for _ in range(3))
        for start in range(0, total, rows):
            stop = min(total, start + rows)
            n = stop - start
            xb, gb = x2[start:stop], grad[start:stop]
            h = torch.addmm(b1, xb, w1.t(), out=h_buf[:n])
            if gw2 is not None:
                gw2.addmm_(gb.t(), torch._C._nn.gelu(h, approximate=ctx.approximate, out=a_buf[:n]))
            gh = torch.mm(gb, w2, out=g_buf[:n])
            torch.ops.aten.gelu_backward.grad_input(gh, h, approximate=ctx.approximate, grad_input=gh)
            if gw1 is not None:
                gw1.addmm_(gh.t(), xb)
            if gb1 is not None:
                gb1.add_(gh.sum(0))
            if gx is not None:
                torch.mm(gh, w1, out=gx[start:stop])
        return gx, gw1, gb1, gw2, gb2, None, None


class Mlp(nn.Module):
    """Two-layer transformer MLP: ``fc1 -> GELU -> dropout -> fc2 -> dropout``.

    Parameter names ``fc1``/``fc2`` are those of the official Swin and timm code.

    Shapes: ``(..., in_features) -> (..., out_features)``.

    Speed (CPU, eager, GELU, no active dropout; same results to float
    rounding): without autograd the MLP runs over blocks of
    ``MLP_CHUNK_ELEMENTS // hidden`` tokens into one output with GELU in
    place; with autograd and a hidden map of at least
    ``MLP_RECOMPUTE_MIN_BYTES`` it runs blocked as well and recomputes the
    hidden activations in backward (:class:`_BlockedMlpFunction`; no double
    backward, no ``torch.func`` transforms on that path). Measured on Swin-T
    stage 1: MLP inference 115 -> 62 ms (batch 16, 1 thread), MLP forward +
    backward 206 -> 136 ms (batch 16, 2 threads).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def _blocked_ok(self, x: torch.Tensor) -> bool:
        return (
            isinstance(self.act, nn.GELU)
            and not (self.training and self.drop.p > 0)
            and self.fc1.bias is not None
            and self.fc2.bias is not None
            and x.dtype == self.fc1.weight.dtype
            and _fast_path_allowed(x)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._blocked_ok(x):
            grad = torch.is_grad_enabled() and (
                x.requires_grad or any(p.requires_grad for p in self.parameters())
            )
            shape = x.shape
            x2 = x.reshape(-1, shape[-1])
            hidden = self.fc1.out_features
            rows = max(256, MLP_CHUNK_ELEMENTS // hidden)
            if not grad:
                out = _mlp_blocks(x2, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias,
                                  rows, self.act.approximate)
                return out.view(*shape[:-1], -1)
            if x2.shape[0] * hidden * x2.element_size() >= MLP_RECOMPUTE_MIN_BYTES:
                out = _BlockedMlpFunction.apply(x2, self.fc1.weight, self.fc1.bias, self.fc2.weight,
                                                self.fc2.bias, rows, self.act.approximate)
                return out.view(*shape[:-1], -1)
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


def init_weights_trunc_normal(module: nn.Module, std: float = 0.02) -> None:
    """Initialise as the official Swin/ViT code does: truncated normal (std 0.02)
    for Linear weights, zero biases, LayerNorm weight 1 and bias 0.

    Use with ``model.apply(init_weights_trunc_normal)``.
    """
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
