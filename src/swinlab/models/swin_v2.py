"""Swin Transformer V2 (Liu et al. 2022, "Swin Transformer V2: Scaling Up
Capacity and Resolution", CVPR 2022, arXiv:2111.09883), as a second block,
attention and patch merging on the structure of :mod:`.swin`.

What changes against V1 (paper Sec. 3.1-3.3; official
``models/swin_transformer_v2.py`` of microsoft/Swin-Transformer):

* **res-post-norm** (Sec. 3.2): the LayerNorm follows each branch,
  ``x + DropPath(LN(Attn(x)))`` and ``x + DropPath(LN(MLP(x)))``
  (:class:`SwinTransformerBlockV2`); the official code (and timm) start
  these norms at zero, so every block starts as the identity;
* **scaled cosine attention** (Sec. 3.2, Eq. 2): ``cos(q, k) / tau + B``
  with a learnable ``logit_scale = log(1 / tau)`` per head, clamped at
  ``log(100)`` (:class:`WindowAttentionV2`);
* **log-spaced continuous position bias** (Sec. 3.3, Eq. 3-4): the bias of
  each relative offset comes from ``cpb_mlp`` (Linear 2 -> 512, ReLU,
  Linear 512 -> heads without bias) applied to the log-spaced offsets of
  :func:`~.windows.relative_coords_table`, then ``16 * sigmoid``; the
  offsets are normalised by ``pretrained_window_size`` (or by the window
  when it is 0), so a model fine-tuned to a larger window keeps its
  pre-training biases for the offsets it knew;
* **q and v biases** ``q_bias`` / ``v_bias``, no key bias (the ``qkv`` Linear
  has none);
* **patch merging that reduces before its norm**: ``LN(2C)(Linear(4C ->
  2C)(x))`` (:class:`PatchMergingV2`).

Everything else is V1's: the patch embedding, the window geometry (any
input size: each block pads to its window before the cyclic shift, a stage
whose map is not larger than its window uses the whole map unshifted, at
construction and again at run time, a smaller run-time window using the
bias of its offsets from the same table), stochastic depth, the MLP, the
speed options and :func:`~.layers.record_attention`. Parameter names are
the official ones (``attn.{qkv,q_bias,v_bias,logit_scale,cpb_mlp.{0,2},proj}``,
``downsample.{reduction,norm}`` at the END of stage i), so official
checkpoints load after dropping their buffers (``relative_coords_table``,
``relative_position_index``, ``attn_mask``).

Speed paths (:class:`~.fast.SpeedOptions`): ``fused_attn`` runs the cosine
attention through ``scaled_dot_product_attention`` (q and k normalised,
the clamped ``exp(logit_scale)`` folded into q, scale 1, bias and shift
mask as one additive mask) whenever nothing needs the probabilities or a
gradient into the bias (i.e. at inference; training the ``cpb_mlp`` takes
the explicit path, as V1 does while its table trains);
``cosine_logits_function`` computes the explicit path's logits (training)
through :class:`~.fast.CosineLogitsFunction`, whose backward is written out;
``cached_position_bias`` keeps the ``16 * sigmoid(cpb_mlp(...))`` table
between inference calls (:class:`~.fast.InferenceCache`; cleared by
``train()`` / ``eval()``, ``load_state_dict`` and ``state_dict``, or by
:meth:`SwinTransformerV2.clear_position_bias_cache` after editing weights
in place by other means).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import fast
from .fast import InferenceCache, SpeedOptions, inference_cache_key
from .layers import is_building_graph
from .swin import PatchMerging, SwinTransformer, SwinTransformerBlock, WindowAttention, _per_stage
from .windows import relative_coords_table

__all__ = [
    "LOGIT_SCALE_MAX",
    "CPB_HIDDEN",
    "WindowAttentionV2",
    "SwinTransformerBlockV2",
    "PatchMergingV2",
    "SwinTransformerV2",
]

#: the clamp of ``logit_scale`` (paper Sec. 3.2: tau >= 0.01).
LOGIT_SCALE_MAX = math.log(100.0)
#: hidden width of the continuous position bias MLP (paper Sec. 3.3).
CPB_HIDDEN = 512


def _clear_on_load(module: nn.Module, incompatible_keys: Any) -> None:
    module.clear_position_bias_cache()


def _clear_on_state_dict(module: nn.Module, state_dict: Any, prefix: str, local_metadata: Any) -> None:
    module.clear_position_bias_cache()


class WindowAttentionV2(WindowAttention):
    """Window attention of Swin V2: scaled cosine attention with a
    continuous, log-spaced relative position bias (paper Sec. 3.2-3.3).

    Args:
        dim, window_size, num_heads, attn_drop, proj_drop, speed: as
            :class:`~.swin.WindowAttention` (M = ``window_size``).
        qkv_bias: learnable ``q_bias`` and ``v_bias`` ``(C,)`` (the key has no bias).
        pretrained_window_size: P, the window the coordinates are
            normalised by (0: M itself).

    Parameters: ``logit_scale`` ``(h, 1, 1)`` (init ``log 10``), ``cpb_mlp``
    (``Linear(2, 512)``, ReLU, ``Linear(512, h, bias=False)``), ``qkv``
    (``Linear(C, 3C, bias=False)``), ``q_bias``, ``v_bias``, ``proj``.
    Buffer: ``relative_coords_table`` ``((2M-1)^2, 2)`` (not saved).

    ``forward(windows, num_windows, shift_mask)``: ``(B*nW, N, C) -> (B*nW, N, C)``
    for a run-time window m <= M (N = m*m); inside
    :func:`~.layers.record_attention` the probabilities ``(B, nW, h, N, N)``
    are recorded.

    Raises:
        ValueError: ``dim % num_heads``, or a ``pretrained_window_size`` of
            1 or below 0.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, pretrained_window_size: int = 0,
                 speed: SpeedOptions | None = None) -> None:
        super().__init__(dim, window_size, num_heads, qkv_bias=False, attn_drop=attn_drop, proj_drop=proj_drop,
                         speed=speed)
        self.pretrained_window_size = int(pretrained_window_size)
        self.register_buffer("relative_coords_table",
                             relative_coords_table(self.window_size, self.pretrained_window_size).clone(),
                             persistent=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.bias_cache = InferenceCache()
        self.register_load_state_dict_post_hook(_clear_on_load)
        self.register_state_dict_post_hook(_clear_on_state_dict)

    def init_position_bias(self) -> None:
        """Create ``logit_scale`` (``log 10`` per head) and ``cpb_mlp`` (official init)."""
        self.logit_scale = nn.Parameter(torch.full((self.num_heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, CPB_HIDDEN, bias=True), nn.ReLU(inplace=True),
                                     nn.Linear(CPB_HIDDEN, self.num_heads, bias=False))

    # ------------------------------------------------------------ position bias
    def compute_position_bias_table(self) -> torch.Tensor:
        """``16 * sigmoid(cpb_mlp(relative_coords_table))``: ``((2M-1)^2, h)`` (paper Eq. 4)."""
        return 16.0 * torch.sigmoid(self.cpb_mlp(self.relative_coords_table))

    def position_bias_table(self) -> torch.Tensor:
        """The bias of every offset of an M x M window, ``((2M-1)^2, h)``; with
        ``speed.cached_position_bias`` kept between inference calls (eval
        mode, no gradient wanted into ``cpb_mlp``, no graph being built)."""
        if not self._may_cache():
            return self.compute_position_bias_table()
        sources = (self.cpb_mlp[0].weight, self.cpb_mlp[0].bias, self.cpb_mlp[2].weight, self.relative_coords_table)
        key = inference_cache_key(sources)
        cached = self.bias_cache.get(key)
        if cached is not None:
            return cached
        return self.bias_cache.put(key, self.compute_position_bias_table(), sources)

    def _may_cache(self) -> bool:
        if not self.speed.cached_position_bias or self.training or is_building_graph():
            return False
        return not (torch.is_grad_enabled() and any(p.requires_grad for p in self.cpb_mlp.parameters()))

    def clear_position_bias_cache(self) -> None:
        """Forget the cached bias table (after changing ``cpb_mlp`` in place
        by means other than ``load_state_dict`` / ``state_dict`` / ``train()``)."""
        self.bias_cache.clear()

    def train(self, mode: bool = True) -> WindowAttentionV2:
        """``nn.Module.train``; also clears the cached bias table."""
        self.clear_position_bias_cache()
        return super().train(mode)

    # ------------------------------------------------------------ attention
    def qkv_heads(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``qkv`` plus the bias ``(q_bias, 0, v_bias)``: ``(B*nW, N, C)`` -> q, k, v
        ``(B*nW, h, N, d)`` (the ``qkv`` module is called, so its hooks run)."""
        B_, N, _ = windows.shape
        qkv = self.qkv(windows)
        if self.q_bias is not None:
            qkv = qkv + torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias)).to(qkv.dtype)
        return qkv.view(B_, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def logit_scale_factor(self) -> torch.Tensor:
        """``exp(min(logit_scale, log 100))``: ``(h, 1, 1)``, the 1/tau of paper Eq. 2."""
        return torch.clamp(self.logit_scale, max=LOGIT_SCALE_MAX).exp()

    def attention_logits(self, q: torch.Tensor, k: torch.Tensor, num_windows: int) -> torch.Tensor:
        """``cos(q, k) * exp(logit_scale)`` per window: q, k ``(B*nW, h, N, d)`` -> ``(B, nW, h, N, N)``
        (with ``speed.cosine_logits_function``, outside graph building, through
        :class:`~.fast.CosineLogitsFunction`: same values, written-out backward)."""
        B_, h, N, d = q.shape
        scale = self.logit_scale_factor()
        if self.speed.cosine_logits_function and not is_building_graph():
            return fast.CosineLogitsFunction.apply(q.view(-1, num_windows, h, N, d),
                                                   k.view(-1, num_windows, h, N, d), scale)
        qn = F.normalize(q, dim=-1).view(-1, num_windows, h, N, d)
        kn = F.normalize(k, dim=-1).view(-1, num_windows, h, N, d)
        return (qn @ kn.transpose(-2, -1)) * scale.to(q.dtype)

    def fused_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                        num_windows: int) -> torch.Tensor:
        """Cosine attention through ``scaled_dot_product_attention``: q and k
        normalised, ``exp(logit_scale)`` folded into q, scale 1. ``(B*nW, h, N, d)`` in and out."""
        qs = F.normalize(q, dim=-1) * self.logit_scale_factor().to(q.dtype)
        return fast.fused_window_attention(qs, F.normalize(k, dim=-1), v, mask, num_windows, scale=1.0)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, window_size={self.window_size}, "
                f"pretrained_window_size={self.pretrained_window_size}, num_heads={self.num_heads}")


class SwinTransformerBlockV2(SwinTransformerBlock):
    """Swin V2 block (paper Sec. 3.2, Fig. 1): res-post-norm,
    ``x + DropPath(LN(W-MSA(x)))`` then ``x + DropPath(LN(MLP(x)))``, with
    :class:`WindowAttentionV2`.

    Args: as :class:`~.swin.SwinTransformerBlock`, plus
    ``pretrained_window_size`` (of the attention). Input and output ``(B, H, W, C)``.
    """

    def __init__(self, *args: Any, pretrained_window_size: int = 0, **kwargs: Any) -> None:
        attn_layer = partial(WindowAttentionV2, pretrained_window_size=pretrained_window_size)
        super().__init__(*args, attn_layer=attn_layer, **kwargs)

    def attention_branch(self, x: torch.Tensor) -> torch.Tensor:
        """``LN((S)W-MSA(x))``: ``(B, H, W, C) -> (B, H, W, C)``."""
        return self.norm1(self.window_msa(x))

    def mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        """``LN(MLP(x))``: ``(B, H, W, C) -> (B, H, W, C)``."""
        return self.norm2(self.mlp(x))


class PatchMergingV2(PatchMerging):
    """Swin V2 patch merging: the 2x2 neighbours concatenated (V1's order),
    ``Linear(4C -> out_dim, no bias)``, then ``norm_layer(out_dim)``
    (official ``PatchMerging`` of ``swin_transformer_v2.py``).

    ``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), out_dim)``; odd sizes are
    zero-padded (bottom/right) first.
    """

    def __init__(self, dim: int, out_dim: int | None = None,
                 norm_layer: Callable[[int], nn.Module] | None = nn.LayerNorm) -> None:
        super().__init__(dim, out_dim, norm_layer=None)
        self.norm = norm_layer(self.out_dim) if norm_layer is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> ``(B, ceil(H/2), ceil(W/2), out_dim)``: reduce, then normalise (V2)."""
        x = self.reduction(self.gather(x))
        return self.norm(x) if self.norm is not None else x


class SwinTransformerV2(SwinTransformer):
    """Swin Transformer V2 classifier and backbone (see the module docstring).

    Args:
        pretrained_window_sizes: per stage (or one int), the window the
            position-bias coordinates are normalised by: the pre-training
            window when fine-tuning to another window (official
            ``PRETRAINED_WINDOW_SIZES``, e.g. ``(12, 12, 12, 6)`` for the
            192 -> 256 / 384 models), 0 for the model's own window.
        img_size, depths, window_size, **kwargs: as
            :class:`~.swin.SwinTransformer` (keyword only; but ``block_layer``
            / ``downsample_layer``, which this class sets); defaults are
            SwinV2-T at 256 px, window 8.

    Initialisation (``init="official"``): V1's, then the res-post-norms at
    zero (official ``_init_respostnorm``), ``logit_scale`` at ``log 10``.

    ``forward(x)``: ``(B, in_chans, H, W) -> (B, num_classes)`` (``(B, C)``
    without a head); any H and W.

    Raises:
        ValueError: inconsistent per-stage arguments, a bad
            ``pretrained_window_sizes`` entry, or bad inputs.
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 256,
        depths: Sequence[int] = (2, 2, 6, 2),
        window_size: int | Sequence[int] = 8,
        pretrained_window_sizes: int | Sequence[int] = 0,
        **kwargs: Any,
    ) -> None:
        pws = _per_stage(pretrained_window_sizes, len(tuple(depths)), "pretrained_window_sizes")
        if any(p < 0 or p == 1 for p in pws):
            raise ValueError(f"pretrained_window_sizes entries must be 0 (none) or >= 2, got {list(pws)}")
        blocks = [partial(SwinTransformerBlockV2, pretrained_window_size=p) for p in pws]
        super().__init__(img_size=img_size, depths=depths, window_size=window_size, block_layer=blocks,
                         downsample_layer=PatchMergingV2, **kwargs)
        self.pretrained_window_sizes = pws

    def _init_weights(self, scheme: str) -> None:
        """V1's scheme, then the res-post-norms at zero (official ``_init_respostnorm``)."""
        super()._init_weights(scheme)
        for block in self.modules():
            if isinstance(block, SwinTransformerBlockV2):
                for norm in (block.norm1, block.norm2):
                    if getattr(norm, "weight", None) is not None:
                        nn.init.zeros_(norm.weight)
                    if getattr(norm, "bias", None) is not None:
                        nn.init.zeros_(norm.bias)

    def no_weight_decay_keywords(self) -> set[str]:
        """Substrings of parameter names the official V2 recipe excludes from
        weight decay (``cpb_mlp``, ``logit_scale``; official ``main.py``)."""
        return {"cpb_mlp", "logit_scale", "relative_position_bias_table"}

    def clear_position_bias_cache(self) -> None:
        """Forget every block's cached position-bias table (see the module docstring)."""
        for m in self.modules():
            if isinstance(m, WindowAttentionV2):
                m.clear_position_bias_cache()
