"""Building blocks shared by the Swin and ViT models: dropout, stochastic
depth, the residual step, the transformer MLP and the initialisers.

Follows timm's ``layers`` (``DropPath``, ``Mlp``) and the official Swin code
(stochastic depth from "Deep Networks with Stochastic Depth", Huang et al.
2016). Two speed paths live here, each named, documented and switchable
(tests compare them with the plain formulation):

* :class:`Dropout` draws its keep-masks from 16-bit slices of 64-bit random
  integers on the CPU (``CHEAP_DROPOUT_MASKS``): one random draw serves four
  elements, where ``torch.bernoulli_`` makes one draw per element.
* :func:`drop_path_residual` computes a residual branch for the samples that
  stochastic depth keeps only (``SKIP_DROPPED_SAMPLES``).
* :class:`Mlp` runs over blocks of tokens at inference (``BLOCKED_MLP_INFERENCE``),
  so that its hidden activations, 4x the width of its input, never exist
  for the whole map at once; in training on the CPU, large maps run blocked
  too and recompute the hidden activations in backward
  (``BLOCKED_MLP_TRAINING``, :class:`BlockedMlpFunction`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CHEAP_DROPOUT_MASKS",
    "SKIP_DROPPED_SAMPLES",
    "BLOCKED_MLP_INFERENCE",
    "IN_PLACE_INFERENCE_RESIDUAL",
    "MLP_BLOCK_ELEMENTS",
    "BLOCKED_MLP_TRAINING",
    "MLP_RECOMPUTE_MIN_BYTES",
    "BlockedMlpFunction",
    "INITS",
    "Dropout",
    "DropPath",
    "Mlp",
    "dropout_mask",
    "dropped_positions",
    "softmax_last_dim",
    "drop_path_residual",
    "init_weights",
    "init_weights_trunc_normal",
    "to_2tuple",
    "is_building_graph",
]

#: draw dropout masks 4 per 64-bit random integer on the CPU (see :func:`dropout_mask`).
CHEAP_DROPOUT_MASKS = True
#: on the CPU, :class:`Dropout` with ``p`` up to this draws the dropped positions
#: (:func:`dropped_positions`) instead of a whole mask; above it the mask is cheaper.
SPARSE_DROPOUT_MAX_P = 0.1
#: on the CPU in fp32, :func:`softmax_last_dim` computes rows under 16 elements
#: that are not a multiple of the float vector width explicitly (PyTorch's kernel
#: runs such rows scalar or half-vectorized).
EXPLICIT_SHORT_ROW_SOFTMAX = True
#: let :func:`drop_path_residual` skip the branch work of dropped samples.
SKIP_DROPPED_SAMPLES = True
#: without autograd, :func:`drop_path_residual` adds the residual into the branch output.
IN_PLACE_INFERENCE_RESIDUAL = True
#: at inference, run :class:`Mlp` over blocks of tokens (see :meth:`Mlp.forward_blocked`).
BLOCKED_MLP_INFERENCE = True
#: hidden activations per block of the blocked MLP (elements: 8 MiB in float32).
MLP_BLOCK_ELEMENTS = 2**21
#: in CPU training, run :class:`Mlp` blocked with recomputation (see :class:`BlockedMlpFunction`).
BLOCKED_MLP_TRAINING = True
#: smallest hidden map (bytes, whole batch) for which the training path recomputes.
MLP_RECOMPUTE_MIN_BYTES = 32 * 2**20
#: initialisation schemes accepted by :func:`init_weights`.
INITS = ("official", "keras")

_MASK_BITS = 16  # bits of randomness per element in the cheap masks
_FLOAT_LANES = 16 if torch.backends.cpu.get_cpu_capability() == "AVX512" else 8  # fp32 per vector


def is_building_graph() -> bool:
    """True while tracing, scripting, compiling or exporting: speed paths
    with Python-side caches or loops over sizes step aside then."""
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()


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


def dropout_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The multiplier of dropout: ``1 / (1 - p)`` where an element is kept, 0
    where it is dropped (``dtype``, ``shape``).

    On the CPU (with ``CHEAP_DROPOUT_MASKS``) each element takes 16 bits of
    a 64-bit random integer (``torch.randint``, the global generator): one
    draw makes four mask elements, and an element is dropped when its 16 bits
    fall below ``round(p * 2**16)``. The realised drop probability is that
    count over ``2**16`` (within ``2**-17`` of ``p``) and the kept elements are
    scaled by ``1 / (1 - realised p)``, so the expectation is exact. The
    elements are independent Bernoulli draws, as with ``torch.bernoulli_``,
    which makes one (slow, serial) draw per element. Elsewhere (CUDA):
    ``torch.rand(shape) >= p``, scaled by ``1 / (1 - p)``.

    Args:
        shape: the mask shape. p: drop probability in [0, 1). device, dtype: of the mask.

    Returns:
        ``(*shape)`` tensor of 0 and ``1 / (1 - p_realised)``.
    """
    if device.type != "cpu" or not CHEAP_DROPOUT_MASKS:
        return (torch.rand(shape, device=device) >= p).to(dtype).mul_(1.0 / (1.0 - p))
    numel = math.prod(shape)
    levels = 1 << _MASK_BITS
    cut = round(p * levels)
    draws = torch.randint(-(2**63), 2**63 - 1, ((numel + 3) // 4,), dtype=torch.int64)
    bits = draws.view(torch.int16)[:numel].view(shape)  # uniform on [-2**15, 2**15)
    keep_value = torch.tensor(levels / (levels - cut), dtype=dtype)
    return torch.where(bits >= cut - levels // 2, keep_value, torch.zeros((), dtype=dtype))


def dropped_positions(numel: int, p: float, _chunk: int | None = None) -> torch.Tensor:
    """The flat indices, in increasing order, of the elements that dropout
    with probability ``p`` drops among ``numel``: each index independently
    with probability ``p``, as with a Bernoulli mask.

    The gaps between consecutive dropped positions of a Bernoulli(p)
    sequence are independent Geometric(p) variables (on 1, 2, ...), so this
    draws about ``numel * p`` gaps (``Tensor.geometric_``, the global
    generator) and adds them up, instead of one draw per element: for small
    ``p`` it touches a small fraction of the memory a mask does. The sums
    stay in float64 (exact below 2**53; an infinite gap, which the sampler
    can return, ends the sequence) and become int64 at the end.

    Args:
        numel: number of elements (>= 0). p: drop probability in (0, 1).
        _chunk: gaps drawn per round (tests; default about ``numel * p`` + 6 sigma).

    Returns:
        ``(k,)`` int64, sorted, distinct, each in ``[0, numel)``.

    Raises:
        ValueError: ``p`` not in (0, 1).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"drop probability must be in (0, 1), got {p}")
    mean = numel * p
    chunk = _chunk or int(mean + 6 * math.sqrt(mean) + 16)  # one round in all but ~1e-9 of the calls
    ends = torch.empty(chunk, dtype=torch.float64).geometric_(p).cumsum_(0)  # 1-based positions
    while ends[-1] <= numel:  # the sequence has not passed the end yet: draw on
        more = torch.empty(chunk, dtype=torch.float64).geometric_(p).cumsum_(0)
        ends = torch.cat([ends, more.add_(ends[-1])])
    inside = ends[: int(torch.searchsorted(ends, float(numel), right=True))]
    return inside.sub_(1).to(torch.int64)


class SparseDropoutFunction(torch.autograd.Function):
    """``x * scale`` with the elements at ``positions`` (flat indices of the
    contiguous ``x``, from :func:`dropped_positions`) set to 0; backward does
    the same to the gradient. Saves the positions, not a mask.

    Shapes: ``x`` and output ``(*)``; ``positions`` ``(k,)`` int64.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, positions: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(positions)
        ctx.scale = scale
        out = x.contiguous() * scale
        out.view(-1).index_fill_(0, positions, 0.0)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (positions,) = ctx.saved_tensors
        return SparseDropoutFunction.apply(grad, positions, ctx.scale), None, None


class ShortRowSoftmaxFunction(torch.autograd.Function):
    """Softmax over the last dim written out: ``exp(x - max) / sum``;
    backward ``p * (g - sum(g * p))`` from the saved output (differentiable
    again, so double backward works). Shapes: input and output ``(*, N)``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        p = torch.exp(x - x.amax(-1, keepdim=True))
        p = p.div_(p.sum(-1, keepdim=True))
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (p,) = ctx.saved_tensors
        return p * (grad - (grad * p).sum(-1, keepdim=True))


def softmax_last_dim(x: torch.Tensor) -> torch.Tensor:
    """``x.softmax(dim=-1)``, shape ``(*, N)`` in and out.

    Speed path (``EXPLICIT_SHORT_ROW_SOFTMAX``): PyTorch's CPU softmax
    kernel runs short rows scalar or half-vectorized (measured: rows under 16
    elements with AVX-512; with AVX2 rows under 16 except 8), which makes
    the attention of 2x2 and 3x3 windows (N = 4, 9) several times slower
    than longer rows. For rows under 16 elements that are not a multiple of
    the float vector width (16 with AVX-512, 8 otherwise), in fp32 on the
    CPU, without autocast and outside graph building, the softmax is
    computed with vectorized element-wise operations instead
    (:class:`ShortRowSoftmaxFunction`, same values to float rounding).
    """
    n = x.shape[-1]
    if EXPLICIT_SHORT_ROW_SOFTMAX and n < 16 and n % _FLOAT_LANES != 0 and x.device.type == "cpu" \
            and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu") and not is_building_graph():
        return ShortRowSoftmaxFunction.apply(x)
    return x.softmax(dim=-1)


class Dropout(nn.Module):
    """Element-wise dropout (Srivastava et al. 2014), a drop-in ``nn.Dropout``.

    In training each element is zeroed with probability ``p`` and the others
    are scaled by ``1 / (1 - p)``; the identity in eval mode. Backward
    zeroes the same elements of the gradient and scales the others.

    Speed paths on the CPU (eager mode, ``CHEAP_DROPOUT_MASKS``): for ``p``
    up to ``SPARSE_DROPOUT_MAX_P`` only the dropped positions are drawn
    (:func:`dropped_positions`, :class:`SparseDropoutFunction`; exact
    Bernoulli(p), scale ``1 / (1 - p)``); above it the mask comes from
    :func:`dropout_mask` (16 bits per element).

    Shapes: input and output ``(*)``.

    Raises:
        ValueError: if ``p`` is not in [0, 1).
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type == "cpu" and CHEAP_DROPOUT_MASKS and self.p <= SPARSE_DROPOUT_MAX_P \
                and not is_building_graph():
            return SparseDropoutFunction.apply(x, dropped_positions(x.numel(), self.p), 1.0 / (1.0 - self.p))
        return x * dropout_mask(x.shape, self.p, x.device, x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


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

    def sample_scale(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample factors ``(B,)``: 0 (dropped) or ``1 / (1 - drop_prob)``."""
        keep = 1.0 - self.drop_prob
        return x.new_empty(x.shape[0]).bernoulli_(keep).div_(keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        return x * self.sample_scale(x).view(-1, *(1,) * (x.ndim - 1))

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def drop_path_residual(
    x: torch.Tensor,
    branch: Callable[[torch.Tensor], tuple[torch.Tensor, Any]],
    drop_path: nn.Module,
    skip_dropped: bool = True,
) -> tuple[torch.Tensor, Any]:
    """The residual step of a block: ``x + drop_path(y)`` for ``y, extra = branch(x)``.

    Args:
        x: ``(B, ...)``; ``branch`` maps ``(b, ...)`` to ``((b, ...), extra)``
            for any batch b and treats the samples independently.
        drop_path: a :class:`DropPath`, ``nn.Identity`` or any module applied
            to the branch output.
        skip_dropped: allow computing the branch for the kept samples only.

    Returns:
        ``(x + drop_path(y), extra)``. Without autograd (and outside graph
        building) the sum is written into ``y``, the branch's own fresh
        output (``IN_PLACE_INFERENCE_RESIDUAL``): a branch must not return a
        tensor it keeps or shares.

    Speed path (``SKIP_DROPPED_SAMPLES``, eager mode on the CPU: it reads the
    number of kept samples back, which would stall a GPU's queue): in training,
    :class:`DropPath`'s per-sample draws are made *before* the branch runs,
    the branch runs on the kept samples only and its scaled output is added
    back with ``index_add`` -- the same result as multiplying by the mask
    (to the rounding of the smaller matmuls), without the forward and
    backward work of the dropped samples (Huang et al. 2016, Sec. 3: a
    dropped block needs no computation). ``extra`` then covers the kept
    samples only. When every sample is dropped the whole branch runs times
    zero, so its parameters get zero gradients as with the mask.
    """
    active = isinstance(drop_path, DropPath) and drop_path.training and drop_path.drop_prob > 0.0
    if not active:
        y, extra = branch(x)
        y = drop_path(y)
        if IN_PLACE_INFERENCE_RESIDUAL and not torch.is_grad_enabled() and not is_building_graph() \
                and y.shape == x.shape and y.dtype == x.dtype:
            return y.add_(x), extra  # the branch output's memory, not a fresh map
        return x + y, extra
    scale = drop_path.sample_scale(x)  # (B,): DropPath's draws
    if skip_dropped and SKIP_DROPPED_SAMPLES and x.device.type == "cpu" and not torch.compiler.is_compiling():
        kept = scale.nonzero().squeeze(1)
        if 0 < kept.numel() < x.shape[0]:
            y, extra = branch(x.index_select(0, kept))
            y = y * scale.index_select(0, kept).view(-1, *(1,) * (y.ndim - 1))
            return x.index_add(0, kept, y), extra
    y, extra = branch(x)
    return x + y * scale.view(-1, *(1,) * (y.ndim - 1)), extra


class BlockedMlpFunction(torch.autograd.Function):
    """``fc2(gelu(fc1(x)))`` over blocks of rows that saves only its input.

    Speed path of :class:`Mlp` in CPU training (``BLOCKED_MLP_TRAINING``):
    backward recomputes each block's hidden activations (one extra fc1 GEMM
    per block) instead of keeping two ``(M, hidden)`` maps alive. A large
    map's activations would be fresh memory on every step (page faults and
    zeroing by the kernel); a block's few MiB stay in the heap and in cache.
    Public operators only: the GELU derivative comes from autograd on the
    block (``torch.autograd.grad``). Gradients equal the plain ones up to
    float rounding of the block-wise weight-gradient sums; no double backward.

    Arguments: ``x2`` ``(M, C)``, ``w1`` ``(hidden, C)``, ``b1`` ``(hidden,)``,
    ``w2`` ``(C_out, hidden)``, ``b2`` ``(C_out,)``, ``rows`` per block,
    ``approximate`` as :func:`torch.nn.functional.gelu`. Returns ``(M, C_out)``.
    """

    @staticmethod
    def forward(ctx, x2, w1, b1, w2, b2, rows: int, approximate: str):  # type: ignore[override]
        ctx.save_for_backward(x2, w1, b1, w2)
        ctx.rows, ctx.approximate = rows, approximate
        out = x2.new_empty(x2.shape[0], w2.shape[0])
        for start in range(0, x2.shape[0], rows):
            h = torch.addmm(b1, x2[start:start + rows], w1.t())
            torch.addmm(b2, F.gelu(h, approximate=approximate), w2.t(), out=out[start:start + rows])
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        x2, w1, b1, w2 = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2 = ctx.needs_input_grad[:5]
        grad = grad.contiguous()
        gx = torch.empty_like(x2) if need_x else None
        gw1 = torch.zeros_like(w1) if need_w1 else None  # frozen layers: no weight gradients
        gb1 = torch.zeros_like(b1) if need_b1 else None
        gw2 = torch.zeros_like(w2) if need_w2 else None
        for start in range(0, x2.shape[0], ctx.rows):
            xb, gb = x2[start:start + ctx.rows], grad[start:start + ctx.rows]
            with torch.enable_grad():
                h = torch.addmm(b1, xb, w1.t()).requires_grad_(True)
                a = F.gelu(h, approximate=ctx.approximate)
            if gw2 is not None:
                gw2.addmm_(gb.t(), a.detach())
            (gh,) = torch.autograd.grad(a, h, torch.mm(gb, w2))
            if gw1 is not None:
                gw1.addmm_(gh.t(), xb)
            if gb1 is not None:
                gb1.add_(gh.sum(0))
            if gx is not None:
                torch.mm(gh, w1, out=gx[start:start + ctx.rows])
        return gx, gw1, gb1, gw2, (grad.sum(0) if need_b2 else None), None, None


class Mlp(nn.Module):
    """Two-layer transformer MLP: ``fc1 -> GELU -> dropout -> fc2 -> dropout``.

    Parameter names ``fc1``/``fc2`` are those of the official Swin and timm code.
    Two speed paths give the same values (to float rounding) for large maps
    when dropout is inactive: :meth:`forward_blocked` without autograd
    (``BLOCKED_MLP_INFERENCE``) and :meth:`forward_recompute` in CPU
    training (``BLOCKED_MLP_TRAINING``). Neither is taken while a graph is
    built (tracing, export, ``torch.compile``). Both use the weights of
    ``fc1``/``fc2`` directly, so forward hooks registered on those two
    layers do not run there: hook ``norm2`` or the MLP itself, or switch
    the paths off.

    Shapes: ``(..., in_features) -> (..., out_features)``.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None,
                 drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)
        self.drop = Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._speed_path_allowed(x):
            hidden_elements = x.numel() // max(x.shape[-1], 1) * self.fc1.out_features
            if not torch.is_grad_enabled():
                if BLOCKED_MLP_INFERENCE and hidden_elements > MLP_BLOCK_ELEMENTS:
                    return self.forward_blocked(x)
            elif BLOCKED_MLP_TRAINING and hidden_elements * x.element_size() >= MLP_RECOMPUTE_MIN_BYTES:
                return self.forward_recompute(x)
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))

    def _speed_path_allowed(self, x: torch.Tensor) -> bool:
        """Eager CPU, no autocast, plain ``nn.Linear`` layers (not swapped for
        quantized ones), the weights' dtype, no active dropout."""
        # is_building_graph() first: no shape guards for torch.export from the later tests
        return (not is_building_graph() and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
                and type(self.fc1) is nn.Linear and type(self.fc2) is nn.Linear
                and x.dtype == self.fc1.weight.dtype and not (self.training and self.drop.p > 0.0))

    def _block_rows(self) -> int:
        return max(256, MLP_BLOCK_ELEMENTS // self.fc1.out_features)

    def forward_blocked(self, x: torch.Tensor) -> torch.Tensor:
        """``fc2(act(fc1(x)))`` over blocks of ``MLP_BLOCK_ELEMENTS // hidden``
        tokens (at least 256), written into one output: the same values as
        :meth:`forward` without dropout.

        Speed path (``BLOCKED_MLP_INFERENCE``, no autograd, CPU without
        autocast): the hidden activations of a large map (stage 1 of
        Swin-T at batch 16: 77 MB) would be fresh memory on every call --
        page faults and zeroing by the kernel -- while a block's few MiB
        are reused from the heap.
        Not taken while tracing or exporting (the loop would bake the
        token count into the graph).

        Shapes: ``(..., in_features) -> (..., out_features)``.
        """
        x2 = x.reshape(-1, x.shape[-1])
        rows = self._block_rows()
        out = x2.new_empty(x2.shape[0], self.fc2.out_features)
        hidden = x2.new_empty(min(rows, x2.shape[0]), self.fc1.out_features)  # reused by every block
        for start in range(0, x2.shape[0], rows):
            block = x2[start:start + rows]
            h = torch.addmm(self.fc1.bias, block, self.fc1.weight.t(), out=hidden[:block.shape[0]])
            torch.addmm(self.fc2.bias, self.act(h), self.fc2.weight.t(), out=out[start:start + rows])
        return out.view(*x.shape[:-1], out.shape[-1])

    def forward_recompute(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP through :class:`BlockedMlpFunction`: differentiable, saves
        only ``x`` and recomputes the hidden activations block by block in
        backward. Same values and gradients as :meth:`forward` without
        dropout, to float rounding.

        Shapes: ``(..., in_features) -> (..., out_features)``.
        """
        out = BlockedMlpFunction.apply(x.reshape(-1, x.shape[-1]), self.fc1.weight, self.fc1.bias,
                                       self.fc2.weight, self.fc2.bias, self._block_rows(),
                                       self.act.approximate)
        return out.view(*x.shape[:-1], out.shape[-1])


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


def _init_keras(module: nn.Module) -> None:
    """Keras defaults: Glorot-uniform kernels of Dense layers (a patch
    embedding counts as a Dense layer over the flattened patch: fan-in
    ``in*kh*kw``, fan-out ``out``), zero biases, LayerNorm 1 and 0."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        fan_out = module.weight.shape[0]
        fan_in = module.weight[0].numel()
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        nn.init.uniform_(module.weight, -bound, bound)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        init_weights_trunc_normal(module)


def init_weights(model: nn.Module, scheme: str = "official") -> None:
    """Initialise the Linear / conv / LayerNorm layers of ``model`` in place.

    Args:
        scheme: ``"official"`` -- truncated normal std 0.02 for Linear
            weights, zero biases (official Swin ``_init_weights``; convs keep
            PyTorch's default); ``"keras"`` -- Keras' Glorot-uniform kernels
            and zero biases (reference 000, the Keras Swin example).

    Raises:
        ValueError: an unknown scheme.
    """
    if scheme not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {scheme!r}")
    model.apply(init_weights_trunc_normal if scheme == "official" else _init_keras)
