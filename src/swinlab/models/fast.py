"""The models' speed paths, each a drop-in for one plain operation, chosen
per model when it is built by a :class:`SpeedOptions` (like timm's
``fused_attn`` constructor flag; there is no module-level switch).

The plain formulation is what :mod:`.swin`, :mod:`.vit` and :mod:`.layers`
show first (``nn.Dropout``, ``DropPath``, :class:`~.layers.Mlp`,
``softmax``, ``torch.roll`` + reshape, ``x + drop_path(branch(x))``); each
path below says what it replaces and the measurement that justifies it
(``benchmarks/RESULTS_train.md``, ``benchmarks/RESULTS_models.md``). Every
path gives the plain result to float rounding (dropout: the same
distribution); tests build the same model with ``SpeedOptions.plain()`` and
compare. None is taken while a graph is built (tracing, export,
``torch.compile``: :func:`~.layers.is_building_graph`).

=============================  ===============================================  ===================================
option                         replaces                                         justified by
=============================  ===============================================  ===================================
``fast_dropout``               ``nn.Dropout`` on the CPU: :class:`Dropout`       RESULTS_train "Dropout that draws
                               (drawn positions for p <= 0.1, else 16-bit       only the dropped positions",
                               masks)                                           "Dropout masks without bernoulli_"
``short_row_softmax``          ``softmax`` of rows < 16 elements in fp32 CPU    RESULTS_train "Softmax of short
                               (:func:`softmax_last_dim`)                       rows written out"
``fused_attn``                 explicit ``softmax(q k^T + B) v`` by             RESULTS_models item 2 (50 -> 17 ms)
                               ``scaled_dot_product_attention``
``one_gather_shift``           ``torch.roll`` + window partition by one         RESULTS_models item 3 (9 -> 3 ms)
                               ``index_select`` (:func:`shift_and_partition`)
``skip_dropped_samples``       ``x + drop_path(branch(x))`` in training by      RESULTS_models item 5
                               the branch on kept samples only
                               (:func:`drop_path_residual`)
``in_place_residual``          ``x + y`` without autograd by ``y += x``         RESULTS_models item 4
``blocked_mlp_inference``      the MLP without autograd over blocks of          RESULTS_models item 4 (stage 1:
                               tokens (:meth:`FastMlp.forward_blocked`)          115 -> 62 ms)
``blocked_mlp_training``       the MLP in CPU training, recomputing hidden      RESULTS_models "BlockedMlpFunction"
                               activations (:class:`BlockedMlpFunction`)        (251-263 -> 198-218 ms)
``cached_position_bias``       Swin V2's position-bias MLP on every forward     benchmarks/bench_swinv2_paths.py
                               by its table kept for inference
                               (:class:`InferenceCache`)
``cosine_logits_function``     Swin V2's ``normalize(q) normalize(k)^T * s``    benchmarks/bench_swinv2_paths.py
                               in training by :class:`CosineLogitsFunction`     --train (RESULTS_models "2026-12-08")
                               (written-out backward)
=============================  ===============================================  ===================================
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DropPath, Mlp, is_building_graph
from .windows import expand_window_mask, window_partition

__all__ = [
    "SpeedOptions",
    "resolve_speed",
    "cpu_float_lanes",
    "make_dropout",
    "make_mlp",
    "Dropout",
    "FastMlp",
    "BlockedMlpFunction",
    "SparseDropoutFunction",
    "ShortRowSoftmaxFunction",
    "dropout_mask",
    "dropped_positions",
    "softmax_last_dim",
    "fused_window_attention",
    "CosineLogitsFunction",
    "InferenceCache",
    "inference_cache_key",
    "drop_path_residual",
    "window_order",
    "shift_and_partition",
    "merge_and_unshift",
]


@dataclass(frozen=True)
class SpeedOptions:
    """The speed paths one model takes (see the module docstring's table).

    Every field defaults to the measured choice; :meth:`plain` switches all
    paths off. ``float_lanes`` (fp32 elements per CPU vector, which decides
    the short-row softmax) is 0 by default: the model fills it from the CPU's
    ISA when it is built (:func:`resolve_speed`).

    Attributes:
        fast_dropout: :class:`Dropout` instead of ``nn.Dropout``.
        sparse_dropout_max_p: up to this p the CPU dropout draws the dropped
            positions, above it a 16-bit mask.
        short_row_softmax: :func:`softmax_last_dim` for short fp32 rows.
        float_lanes: 16 (AVX-512) or 8; 0: from the ISA at construction.
        fused_attn: ``scaled_dot_product_attention`` when no probabilities
            are recorded, no gradient must reach the mask and no attention
            dropout is active.
        one_gather_shift: shift + window partition (and back) as one gather.
        skip_dropped_samples: stochastic depth skips the dropped samples' branch.
        in_place_residual: without autograd, the residual goes into the branch output.
        blocked_mlp_inference: the MLP over token blocks without autograd.
        blocked_mlp_training: the MLP with recomputation in CPU training.
        cached_position_bias: Swin V2 keeps its continuous position-bias
            table between inference calls (:class:`InferenceCache`).
        cosine_logits_function: Swin V2's explicit cosine logits through
            :class:`CosineLogitsFunction` (written-out backward).
        mlp_block_elements: hidden activations per MLP block (2**21: 8 MiB fp32).
        mlp_recompute_min_bytes: smallest hidden map (bytes) that recomputes in training.
    """

    fast_dropout: bool = True
    sparse_dropout_max_p: float = 0.1
    short_row_softmax: bool = True
    float_lanes: int = 0
    fused_attn: bool = True
    one_gather_shift: bool = True
    skip_dropped_samples: bool = True
    in_place_residual: bool = True
    blocked_mlp_inference: bool = True
    blocked_mlp_training: bool = True
    cached_position_bias: bool = True
    cosine_logits_function: bool = True
    mlp_block_elements: int = 2**21
    mlp_recompute_min_bytes: int = 32 * 2**20

    @classmethod
    def plain(cls) -> SpeedOptions:
        """Every speed path off: the reference formulation."""
        return cls(fast_dropout=False, short_row_softmax=False, fused_attn=False, one_gather_shift=False,
                   skip_dropped_samples=False, in_place_residual=False, blocked_mlp_inference=False,
                   blocked_mlp_training=False, cached_position_bias=False,
                   cosine_logits_function=False)


def cpu_float_lanes() -> int:
    """fp32 elements per vector register of this CPU: 16 with AVX-512, else 8."""
    return 16 if torch.backends.cpu.get_cpu_capability() == "AVX512" else 8


def resolve_speed(speed: SpeedOptions | None) -> SpeedOptions:
    """``speed`` (default :class:`SpeedOptions`) with ``float_lanes`` read from the ISA when 0.

    Raises:
        TypeError: ``speed`` is not a :class:`SpeedOptions`.
    """
    speed = SpeedOptions() if speed is None else speed
    if not isinstance(speed, SpeedOptions):
        raise TypeError(f"speed must be a swinlab.models.fast.SpeedOptions, got {type(speed).__name__}")
    return speed if speed.float_lanes else dataclasses.replace(speed, float_lanes=cpu_float_lanes())


# ----------------------------------------------------------------------------- dropout
_MASK_BITS = 16  # bits of randomness per element in the cheap masks


def dropout_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The multiplier of dropout: ``1 / (1 - p)`` where an element is kept, 0
    where it is dropped (``dtype``, ``shape``).

    On the CPU each element takes 16 bits of a 64-bit random integer
    (``torch.randint``, the global generator): one draw makes four mask
    elements, and an element is dropped when its 16 bits fall below
    ``round(p * 2**16)``. The realised drop probability is that count over
    ``2**16`` (within ``2**-17`` of ``p``) and the kept elements are scaled by
    ``1 / (1 - realised p)``, so the expectation is exact. The elements are
    independent Bernoulli draws, as with ``torch.bernoulli_``, which makes
    one (slow, serial) draw per element. Elsewhere (CUDA):
    ``torch.rand(shape) >= p``, scaled by ``1 / (1 - p)``.

    Args:
        shape: the mask shape. p: drop probability in [0, 1). device, dtype: of the mask.

    Returns:
        ``(*shape)`` tensor of 0 and ``1 / (1 - p_realised)``.
    """
    if device.type != "cpu":
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


class Dropout(nn.Dropout):
    """Replaces ``nn.Dropout`` (Srivastava et al. 2014) on the CPU: the same
    distribution (each element zeroed with probability ``p``, the others
    scaled by ``1 / (1 - p)``; identity in eval), cheaper random draws.

    For ``p`` up to ``sparse_max_p`` only the dropped positions are drawn
    (:func:`dropped_positions`, :class:`SparseDropoutFunction`; exact
    Bernoulli(p)); above it the mask comes from :func:`dropout_mask` (16
    bits per element). Off the CPU and while a graph is built it is
    ``nn.Dropout``. Shapes: input and output ``(*)``.

    Raises:
        ValueError: ``p`` not in [0, 1).
    """

    def __init__(self, p: float = 0.0, sparse_max_p: float = 0.1) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        super().__init__(p)
        self.sparse_max_p = float(sparse_max_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or is_building_graph():
            return super().forward(x)
        if self.p <= self.sparse_max_p:
            return SparseDropoutFunction.apply(x, dropped_positions(x.numel(), self.p), 1.0 / (1.0 - self.p))
        return x * dropout_mask(x.shape, self.p, x.device, x.dtype)


def make_dropout(p: float, speed: SpeedOptions) -> nn.Dropout:
    """``nn.Dropout(p)``, or :class:`Dropout` with ``speed.fast_dropout``.

    Raises:
        ValueError: ``p`` not in [0, 1).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return Dropout(p, speed.sparse_dropout_max_p) if speed.fast_dropout else nn.Dropout(p)


# ----------------------------------------------------------------------------- softmax
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


def softmax_last_dim(x: torch.Tensor, float_lanes: int) -> torch.Tensor:
    """Replaces ``x.softmax(dim=-1)`` for short rows, shape ``(*, N)`` in and out.

    PyTorch's CPU softmax kernel runs short rows scalar or half-vectorized
    (measured: rows under 16 elements with AVX-512; with AVX2 rows under 16
    except 8), which makes the attention of 2x2 and 3x3 windows (N = 4, 9)
    several times slower than longer rows. For rows under 16 elements that
    are not a multiple of ``float_lanes``, in fp32 on the CPU, without
    autocast and outside graph building, the softmax is computed with
    vectorized element-wise operations (:class:`ShortRowSoftmaxFunction`,
    same values to float rounding); else ``x.softmax(dim=-1)``.
    """
    n = x.shape[-1]
    if n < 16 and n % float_lanes != 0 and x.device.type == "cpu" and x.dtype == torch.float32 \
            and not torch.is_autocast_enabled("cpu") and not is_building_graph():
        return ShortRowSoftmaxFunction.apply(x)
    return x.softmax(dim=-1)


# ----------------------------------------------------------------------------- attention
class CosineLogitsFunction(torch.autograd.Function):
    """Swin V2's attention logits ``(q / |q|) (k / |k|)^T * s`` (paper Eq. 2,
    ``s = exp(logit_scale)`` per head) with a written-out backward.

    Replaces ``F.normalize(q) @ F.normalize(k)^T * s`` in training
    (``cosine_logits_function``): autograd's graph of that keeps the
    normalised maps and the norms and differentiates two divisions and an
    ``(N, N)`` product with the scale; here the scale is folded into the
    unit queries (an ``(N, d)`` product) and the backward is
    ``dq = s / |q| * (dq' - q' <dq', q'> / s^2)``, ``dk = (dk' - k' <dk', k'>) / |k|``
    with ``dq' = dS k'``, ``dk' = dS^T q'`` and ``ds = <dq', q'> / s`` summed
    per head (q' = s q / |q|, k' = k / |k|). Norms are clamped at 1e-12 as
    ``F.normalize`` does (the backward treats the clamp as inactive); no
    double backward.

    Arguments: ``q``, ``k`` ``(..., h, N, d)``, ``scale`` ``(h, 1, 1)``.
    Returns ``(..., h, N, N)``.
    """

    @staticmethod
    def forward(ctx, q, k, scale):  # type: ignore[override]
        rq = q.norm(dim=-1, keepdim=True).clamp_min_(1e-12).reciprocal_()
        rk = k.norm(dim=-1, keepdim=True).clamp_min_(1e-12).reciprocal_()
        qs = q * (rq * scale).to(q.dtype)
        kn = k * rk.to(k.dtype)
        ctx.save_for_backward(qs, kn, rq, rk, scale)
        return qs @ kn.transpose(-2, -1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        qs, kn, rq, rk, scale = ctx.saved_tensors
        grad = grad.to(qs.dtype)
        dqs = grad @ kn
        dkn = grad.transpose(-2, -1) @ qs
        dot_q = (dqs * qs).sum(-1, keepdim=True)  # <dq', q'>: (..., h, N, 1)
        dot_k = (dkn * kn).sum(-1, keepdim=True)
        s = scale.to(dot_q.dtype)
        dq = torch.addcmul(dqs, qs, dot_q / (-s * s)).mul_((rq * s).to(qs.dtype))
        dk = torch.addcmul(dkn, kn, -dot_k).mul_(rk.to(kn.dtype))
        dscale = None
        if ctx.needs_input_grad[2]:
            per_head = dot_q.to(scale.dtype).reshape(-1, *dot_q.shape[-3:]).sum(0)  # (h, N, 1)
            dscale = per_head.sum(-2, keepdim=True) / scale
        return dq, dk, dscale


def fused_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                           num_windows: int, scale: float | None = None) -> torch.Tensor:
    """Replaces the explicit ``softmax(q k^T * scale + mask) v`` of window
    attention by ``F.scaled_dot_product_attention`` on 4-D tensors (its
    fused CPU kernel runs on 4-D inputs only, so a per-window mask is
    expanded per image: :func:`~.windows.expand_window_mask`).

    Args:
        q, k, v: ``(B*nW, h, N, d)``. mask: ``(nW, h, N, N)`` or ``(1, h, N, N)``.
        num_windows: nW.
        scale: the logit scale (None: ``1 / sqrt(d)``, paper V1 Eq. 4; Swin
            V2's cosine attention folds its per-head scale into q and passes 1.0).

    Returns:
        ``(B*nW, h, N, d)``.
    """
    full = mask if mask.shape[0] == 1 else expand_window_mask(mask, q.shape[0] // num_windows)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=full.to(q.dtype), scale=scale)


# ----------------------------------------------------------------------------- inference cache
class InferenceCache:
    """One tensor computed from a module's weights, kept between inference
    calls (``cached_position_bias``: Swin V2's continuous position bias,
    :class:`~.swin_v2.WindowAttentionV2`, whose 2 -> 512 -> h MLP would
    otherwise run on every forward of every block).

    The holder uses it only when nothing can change the weights under it
    (eval mode, no gradient wanted, not building a graph) and clears it
    through public mechanisms whenever they may change: ``train()`` /
    ``eval()``, ``load_state_dict`` and ``state_dict`` (module hooks;
    ``state_dict`` hands out the tensors that in-place updaters such as
    an EMA write into). Entries are keyed by :func:`inference_cache_key`.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: torch.Tensor | None = None
        self._sources: tuple[torch.Tensor, ...] = ()

    def get(self, key: tuple) -> torch.Tensor | None:
        """The tensor stored under ``key``, or None."""
        return self._value if self._value is not None and self._key == key else None

    def put(self, key: tuple, value: torch.Tensor, sources: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        """Store ``value`` (detached) under ``key``, holding ``sources`` (the
        tensors the key names by id); returns it."""
        self._key, self._value, self._sources = key, value.detach(), tuple(sources)
        return self._value

    def clear(self) -> None:
        """Forget the stored tensor."""
        self._key = self._value = None
        self._sources = ()


def inference_cache_key(weights: tuple[torch.Tensor, ...], *extra: Any) -> tuple:
    """What a cached tensor computed from ``weights`` depends on besides
    their values: which tensors they are (``id``: ``torch.func.functional_call``
    swaps them; :meth:`InferenceCache.put` keeps them alive, so an id is not
    reused while cached), their device and dtype, the autocast state of that
    device type, inference mode, and ``extra``."""
    kind = weights[0].device.type
    autocast = torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind)
    return (tuple(id(w) for w in weights), weights[0].device, weights[0].dtype, autocast,
            torch.get_autocast_dtype(kind) if autocast else None, torch.is_inference_mode_enabled(), *extra)


# ----------------------------------------------------------------------------- residual
def drop_path_residual(
    x: torch.Tensor,
    branch: Callable[[torch.Tensor], torch.Tensor],
    drop_path: nn.Module,
    speed: SpeedOptions,
    skip_dropped: bool = True,
) -> torch.Tensor:
    """Replaces the residual step ``x + drop_path(branch(x))`` of a block.

    Args:
        x: ``(B, ...)``; ``branch`` maps ``(b, ...)`` to ``(b, ...)`` for any
            batch b, treats the samples independently and returns a fresh
            tensor (not one it keeps or shares: it may be added into).
        drop_path: a :class:`~.layers.DropPath`, ``nn.Identity`` or any
            module applied to the branch output.
        speed: which of the two paths below are on.
        skip_dropped: allow computing the branch for the kept samples only
            (off while attention probabilities are recorded).

    Returns:
        ``x + drop_path(branch(x))``, ``(B, ...)``.

    ``in_place_residual``: without autograd (and outside graph building)
    the sum is written into the branch output instead of a fresh map.
    ``skip_dropped_samples`` (eager mode on the CPU: it reads the number of kept
    samples back, which would stall a GPU's queue): in training, :class:`DropPath`'s
    per-sample draws are made *before* the branch runs, the branch runs on
    the kept samples only and its scaled output is added back with
    ``index_add`` -- the same result as multiplying by the mask (to the
    rounding of the smaller matmuls), without the forward and backward work
    of the dropped samples (Huang et al. 2016, Sec. 3). When every sample is
    dropped the whole branch runs times zero, so its parameters get zero
    gradients as with the mask.
    """
    active = isinstance(drop_path, DropPath) and drop_path.training and drop_path.drop_prob > 0.0
    if not active:
        y = drop_path(branch(x))
        if speed.in_place_residual and not torch.is_grad_enabled() and not is_building_graph() \
                and y.shape == x.shape and y.dtype == x.dtype:
            return y.add_(x)  # the branch output's memory, not a fresh map
        return x + y
    scale = drop_path.sample_scale(x)  # (B,): DropPath's draws
    if skip_dropped and speed.skip_dropped_samples and x.device.type == "cpu" and not torch.compiler.is_compiling():
        kept = scale.nonzero().squeeze(1)
        if 0 < kept.numel() < x.shape[0]:
            y = branch(x.index_select(0, kept))
            y = y * scale.index_select(0, kept).view(-1, *(1,) * (y.ndim - 1))
            return x.index_add(0, kept, y)
    y = branch(x)
    return x + y * scale.view(-1, *(1,) * (y.ndim - 1))


# ----------------------------------------------------------------------------- MLP
class BlockedMlpFunction(torch.autograd.Function):
    """``mlp.fc2(mlp.act(mlp.fc1(x)))`` over blocks of rows that saves only its input.

    Replaces the MLP's autograd graph in CPU training (``blocked_mlp_training``):
    backward recomputes each block's hidden activations (one extra fc1 GEMM
    per block; fc2's gradients are products with the saved output gradient,
    so fc2 is not run again) instead of keeping two ``(M, hidden)``
    maps alive. A large map's activations would be fresh memory on every
    step (page faults and zeroing by the kernel); a block's few MiB stay in
    the heap and in cache. Forward calls the ``fc1`` / ``act`` / ``fc2``
    modules, so their forward hooks run once per block and what a hook
    returns is used; the recomputation calls ``fc1`` and ``act`` again (their
    hooks run again, as with ``torch.utils.checkpoint``). fc2's gradients
    come from its weight, so a hook that changes fc2's output changes the
    forward only: build such a model with ``blocked_mlp_training=False``.
    Gradients equal the plain ones up to float rounding of the block-wise
    sums; no double backward.

    Arguments: ``x2`` ``(M, C)``, ``mlp`` (a :class:`~.layers.Mlp`), ``rows``
    per block, then the parameters ``w1, b1, w2, b2`` (so that autograd
    tracks them). Returns ``(M, C_out)``.
    """

    @staticmethod
    def forward(ctx, x2, mlp, rows: int, *params):  # type: ignore[override]
        ctx.save_for_backward(x2, *params)
        ctx.mlp, ctx.rows = mlp, rows
        out = x2.new_empty(x2.shape[0], mlp.fc2.out_features)
        for start in range(0, x2.shape[0], rows):
            out[start:start + rows] = mlp.fc2(mlp.act(mlp.fc1(x2[start:start + rows])))
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        x2, w1, b1, w2, b2 = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2 = ctx.needs_input_grad[0], *ctx.needs_input_grad[3:7]
        grad = grad.contiguous()
        gx = torch.empty_like(x2) if need_x else None
        first = [p for p, need in ((w1, need_w1), (b1, need_b1)) if need]  # frozen layers: no gradients
        g_first = [torch.zeros_like(p) for p in first]
        gw2 = torch.zeros_like(w2) if need_w2 else None
        for start in range(0, x2.shape[0], ctx.rows):
            xb = x2[start:start + ctx.rows].detach().requires_grad_(need_x)
            gb = grad[start:start + ctx.rows]
            with torch.enable_grad():
                a = ctx.mlp.act(ctx.mlp.fc1(xb))  # fc2 is not recomputed: its gradients need only a
            if gw2 is not None:
                gw2.addmm_(gb.t(), a.detach())
            inputs = ([xb] if need_x else []) + first
            grads = list(torch.autograd.grad(a, inputs, torch.mm(gb, w2))) if inputs else []
            if need_x:
                gx[start:start + ctx.rows] = grads.pop(0)
            for acc, g in zip(g_first, grads):
                acc.add_(g)
        it = iter(g_first)
        g1 = [next(it) if need else None for need in (need_w1, need_b1)]
        return gx, None, None, *g1, gw2, (grad.sum(0) if need_b2 else None)


class FastMlp(Mlp):
    """:class:`~.layers.Mlp` with two paths for large maps when dropout is
    inactive, same values (to float rounding) and the same parameters:
    :meth:`forward_blocked` without autograd (``blocked_mlp_inference``) and
    :meth:`forward_recompute` in CPU training (``blocked_mlp_training``).

    Both call the ``fc1`` / ``fc2`` modules on blocks of tokens, so forward
    hooks on them run -- once per block of rows, each seeing a ``(rows, C)``
    slice rather than the whole map. A model built with
    ``SpeedOptions(blocked_mlp_inference=False, blocked_mlp_training=False)``
    calls them once per forward on the whole map.

    Shapes: ``(..., in_features) -> (..., out_features)``.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None,
                 act_layer: Callable[[], nn.Module] = nn.GELU, drop: float = 0.0,
                 speed: SpeedOptions | None = None) -> None:
        speed = resolve_speed(speed)
        super().__init__(in_features, hidden_features, out_features, act_layer, drop,
                         drop_layer=lambda p: make_dropout(p, speed))
        self.speed = speed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._speed_path_allowed(x):
            hidden_elements = x.numel() // max(x.shape[-1], 1) * self.fc1.out_features
            if not torch.is_grad_enabled():
                if self.speed.blocked_mlp_inference and hidden_elements > self.speed.mlp_block_elements:
                    return self.forward_blocked(x)
            elif self.speed.blocked_mlp_training \
                    and hidden_elements * x.element_size() >= self.speed.mlp_recompute_min_bytes:
                return self.forward_recompute(x)
        return super().forward(x)

    def _speed_path_allowed(self, x: torch.Tensor) -> bool:
        """Eager CPU, no autocast, plain ``nn.Linear`` layers (not swapped for
        quantized ones), the weights' dtype, no active dropout."""
        # is_building_graph() first: no shape guards for torch.export from the later tests
        return (not is_building_graph() and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
                and type(self.fc1) is nn.Linear and type(self.fc2) is nn.Linear
                and x.dtype == self.fc1.weight.dtype and not (self.training and self.drop.p > 0.0))

    def _block_rows(self) -> int:
        return max(256, self.speed.mlp_block_elements // self.fc1.out_features)

    def forward_blocked(self, x: torch.Tensor) -> torch.Tensor:
        """``fc2(act(fc1(x)))`` over blocks of ``mlp_block_elements // hidden``
        tokens (at least 256), written into one output: the same values as
        the plain forward without dropout.

        Replaces the plain MLP without autograd on the CPU: the hidden
        activations of a large map (stage 1 of Swin-T at batch 16: 77 MB)
        would be fresh memory on every call -- page faults and zeroing by
        the kernel -- while a block's few MiB are reused from the heap.

        Shapes: ``(..., in_features) -> (..., out_features)``.
        """
        x2 = x.reshape(-1, x.shape[-1])
        rows = self._block_rows()
        out = x2.new_empty(x2.shape[0], self.fc2.out_features)
        for start in range(0, x2.shape[0], rows):
            out[start:start + rows] = self.fc2(self.act(self.fc1(x2[start:start + rows])))
        return out.view(*x.shape[:-1], out.shape[-1])

    def forward_recompute(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP through :class:`BlockedMlpFunction`: differentiable, saves
        only ``x`` and recomputes the hidden activations block by block in
        backward. Same values and gradients as the plain forward without
        dropout, to float rounding.

        Shapes: ``(..., in_features) -> (..., out_features)``.
        """
        params = (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)
        out = BlockedMlpFunction.apply(x.reshape(-1, x.shape[-1]), self, self._block_rows(), *params)
        return out.view(*x.shape[:-1], out.shape[-1])


def make_mlp(in_features: int, hidden_features: int, act_layer: Callable[[], nn.Module], drop: float,
             speed: SpeedOptions) -> Mlp:
    """The block MLP: :class:`FastMlp` when a blocked path is on, else the plain
    :class:`~.layers.Mlp` (dropout per ``speed.fast_dropout`` either way)."""
    if speed.blocked_mlp_inference or speed.blocked_mlp_training:
        return FastMlp(in_features, hidden_features, act_layer=act_layer, drop=drop, speed=speed)
    return Mlp(in_features, hidden_features, act_layer=act_layer, drop=drop,
               drop_layer=lambda p: make_dropout(p, speed))


# ----------------------------------------------------------------------------- shifted windows
@torch.inference_mode(False)  # cached tensors must stay usable by autograd
def _build_window_order(H: int, W: int, window_size: int, shift_size: int, device: torch.device):
    # built where it is used: under torch.compile this runs inside the traced graph,
    # and a CPU tensor there would make Inductor emit CPU kernels for a GPU model
    grid = torch.arange(H * W, device=device).view(1, H, W, 1)
    if shift_size:
        grid = torch.roll(grid, shifts=(-shift_size, -shift_size), dims=(1, 2))
    order = window_partition(grid, window_size).reshape(-1)
    return order, torch.argsort(order)


_cached_window_order = lru_cache(maxsize=128)(_build_window_order)


def window_order(H: int, W: int, window_size: int, shift_size: int = 0,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Token permutation doing the cyclic shift and the window partition in one gather.

    For a map flattened to ``(B, H*W, C)``, ``x.index_select(1, order)``
    viewed as ``(B*nW, M*M, C)`` equals
    ``window_partition(torch.roll(x, (-s, -s), (1, 2)), M)``, and
    ``y.index_select(1, inverse)`` undoes it.

    Args:
        H, W: padded map size (multiples of ``window_size``).
        window_size: M. shift_size: cyclic shift s (0: none). device: where.

    Returns:
        ``(order, inverse)``, each ``(H*W,)`` int64 (cached; do not modify).
    """
    build = _build_window_order if is_building_graph() else _cached_window_order
    return build(H, W, window_size, shift_size, torch.device(device))


def shift_and_partition(x: torch.Tensor, window_size: int, shift_size: int) -> torch.Tensor:
    """Replaces ``window_partition(torch.roll(x, (-s, -s), (1, 2)), M)`` by one
    ``index_select`` with a cached permutation (:func:`window_order`); the
    same values exactly. ``(B, H, W, C) -> (B * nW, M * M, C)``."""
    B, H, W, C = x.shape
    order, _ = window_order(H, W, window_size, shift_size, x.device)
    return x.reshape(B, H * W, C).index_select(1, order).view(-1, window_size * window_size, C)


def merge_and_unshift(windows: torch.Tensor, window_size: int, shift_size: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`shift_and_partition` (replaces window reverse +
    ``torch.roll``): ``(B * nW, M * M, C) -> (B, H, W, C)``."""
    C = windows.shape[-1]
    _, inverse = window_order(H, W, window_size, shift_size, windows.device)
    return windows.reshape(-1, H * W, C).index_select(1, inverse).view(-1, H, W, C)

