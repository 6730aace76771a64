"""Swin Transformer V1 (Liu et al. 2021, "Swin Transformer: Hierarchical Vision
Transformer using Shifted Windows", arXiv:2103.14030).

Module and parameter names follow the official Microsoft code
(``microsoft/Swin-Transformer``, ``models/swin_transformer.py``) so that its
checkpoints load without renaming: ``patch_embed.{proj,norm}``,
``absolute_pos_embed``, ``layers.i.blocks.j.{norm1,attn.{qkv,proj,
relative_position_bias_table},norm2,mlp.{fc1,fc2}}``, ``layers.i.downsample.
{norm,reduction}`` (patch merging at the END of stage i), ``norm``, ``head``.

A block (:class:`SwinTransformerBlock`) reads as the paper's Eq. 3: ``x +
DropPath(W-MSA(LN(x)))`` then ``x + DropPath(MLP(LN(x)))``; its attention
branch is LayerNorm -> pad -> cyclic shift + window partition -> window
attention with relative position bias and shift mask -> window merge +
reverse shift -> crop. The window geometry lives in :mod:`.windows`.

Differences from the official classification code, all of them without effect
at the sizes the official code accepts:

* any input size at run time. H and W are zero-padded to a multiple of the
  patch size, each block pads its (normalised) map to a multiple of its
  window *before* the cyclic shift, and patch merging pads to an even size
  -- the padding of the official detection backbone and of Hugging Face
  transformers (timm shifts first, then pads: its outputs differ at sizes
  that are not multiples of the window).
* the window rule of the official code (``min(resolution) <= window``: the
  window shrinks to the resolution and the shift is switched off) is applied
  at construction for ``img_size`` *and* again at run time for the actual
  size; a smaller run-time window uses the matching sub-block of the
  ``relative_position_bias_table``, so ``forward`` never changes the module.
* the shift mask holds :data:`~.windows.MASK_FILL` (-1e4) instead of -100
  (denormal-free softmax weights).

Speed paths: every module reads as the plain formulation (explicit
``softmax(q k^T / sqrt(d) + B) v``, ``torch.roll`` + window partition,
``x + DropPath(branch(x))``, ``nn.Dropout``, the plain MLP); the model's
``speed`` (a :class:`~.fast.SpeedOptions`, chosen when it is built; default:
every measured path on) replaces some of them by the paths of :mod:`.fast`,
where each says what it replaces and which benchmark justifies it.

Attention probabilities: blocks and stages return tensors only; the
probabilities come out through :func:`~.layers.record_attention` (used by
:meth:`SwinTransformer.forward_attention`), so a plain forward keeps nothing.

Injection points as in timm / torchvision: ``norm_layer``, ``act_layer``,
``block_layer`` and ``downsample_layer``; reference 000's Keras variant is
:mod:`.keras_swin`, and a second block type (Swin V2) fits the same way.

Tensor layout: images are NCHW ``(B, 3, H, W)``; inside the network tokens are
kept as ``(B, H, W, C)`` (channels last, as timm does); every public output
map is NCHW ``(B, C, H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import fast
from .backbone import StagedBackboneMixin
from .fast import SpeedOptions, make_dropout, make_mlp, resolve_speed, window_order
from .layers import AttentionModule, DropPath, init_weights, record_attention, to_2tuple
from .windows import (
    MASK_FILL,
    expand_window_mask,
    merge_and_unshift,
    relative_position_index,
    shift_and_partition,
    shift_attention_mask,
    window_partition,
    window_reverse,
)

__all__ = [
    "SpeedOptions",
    "SwinTransformer",
    "SwinTransformerBlock",
    "WindowAttention",
    "PatchEmbed",
    "PatchMerging",
    "BasicLayer",
    "record_attention",
    # window geometry, re-exported from .windows (window_order: from .fast)
    "MASK_FILL",
    "expand_window_mask",
    "relative_position_index",
    "shift_attention_mask",
    "window_order",
    "window_partition",
    "window_reverse",
]

class PatchEmbed(nn.Module):
    """Image to patch tokens: a conv with kernel = stride = ``patch_size``,
    optionally followed by ``norm_layer`` (official ``PatchEmbed``).

    Input ``(B, in_chans, H, W)``; output ``(B, ceil(H/p), ceil(W/p), embed_dim)``.
    H and W are zero-padded on the bottom/right to a multiple of p when
    ``pad`` is true (the official detection code's rule).

    Raises:
        ValueError: wrong channel count, not a 4-d input, or (with
            ``pad=False``) a size not divisible by the patch size.
    """

    def __init__(
        self,
        patch_size: int | tuple[int, int] = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        patch_norm: bool = True,
        pad: bool = True,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.patch_size = to_2tuple(patch_size)
        self.in_chans = in_chans
        self.pad = pad
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = norm_layer(embed_dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected images of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}"
            )
        H, W = x.shape[-2:]
        ph, pw = self.patch_size
        pad_h, pad_w = (-H) % ph, (-W) % pw
        if pad_h or pad_w:
            if not self.pad:
                raise ValueError(
                    f"input size {H}x{W} is not divisible by the patch size {ph}x{pw} "
                    "and padding is off (pad=False)"
                )
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.proj(x).permute(0, 2, 3, 1)
        if self.norm is not None:
            x = self.norm(x)
        return x


class WindowAttention(AttentionModule):
    """Window based multi-head self attention with relative position bias
    (paper Sec. 3.2, Eq. 4: ``softmax(QK^T / sqrt(d) + B) V``).

    Args:
        dim: channels C. window_size: the window M it is built for (the bias
            table has ``(2M-1)^2`` rows). num_heads: heads h (C % h == 0).
        qkv_bias: biases in the qkv projection. attn_drop, proj_drop: dropout
            on the probabilities and on the output projection.
        speed: the model's :class:`~.fast.SpeedOptions` (fused attention,
            short-row softmax, dropout).

    ``forward(windows, num_windows, shift_mask)``: ``windows`` ``(B*nW, N, C)``
    with N = m*m for a run-time window m <= M -> ``(B*nW, N, C)``. Inside
    :func:`~.layers.record_attention` the probabilities ``(B, nW, h, N, N)``
    are recorded.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, speed: SpeedOptions | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.speed = resolve_speed(speed)
        self.dim = dim
        self.window_size = int(window_size)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.register_buffer("relative_position_index", relative_position_index(self.window_size).clone(),
                             persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = make_dropout(attn_drop, self.speed)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = make_dropout(proj_drop, self.speed)
        self.init_position_bias()

    def init_position_bias(self) -> None:
        """Create the position-bias parameters (called at the end of
        ``__init__``; a variant such as Swin V2 creates its own): the table
        ``relative_position_bias_table`` ``((2M-1)^2, h)``, truncated normal
        std 0.02 (official ``WindowAttention``)."""
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * self.window_size - 1) ** 2, self.num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias_table(self) -> torch.Tensor:
        """The bias of every relative offset of an M x M window, ``((2M-1)^2, h)``,
        rows indexed by :func:`~.windows.relative_position_index` (V1: the learned table)."""
        return self.relative_position_bias_table

    def relative_position_bias(self, window_size: int | None = None) -> torch.Tensor:
        """The bias B of Eq. 4, ``(num_heads, N, N)``, for a run-time window ``m <= M`` (N = m*m):
        the rows of :meth:`position_bias_table` for the offsets of an m x m window."""
        m = self.window_size if window_size is None else window_size
        table = self.position_bias_table()
        if m == self.window_size:
            index = self.relative_position_index
        else:
            index = relative_position_index(m, self.window_size, table.device)
        bias = table[index.reshape(-1)].view(m * m, m * m, -1)
        return bias.permute(2, 0, 1).contiguous()

    def qkv_heads(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The qkv projection split into heads: ``(B*nW, N, C)`` -> q, k, v, each ``(B*nW, h, N, d)``."""
        B_, N, _ = windows.shape
        qkv = self.qkv(windows).view(B_, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def forward(self, windows: torch.Tensor, num_windows: int, shift_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Attention inside each window.

        Args:
            windows: ``(B*nW, N, C)``, the windows of each image consecutive.
            num_windows: nW, windows per image.
            shift_mask: SW-MSA mask ``(nW, N, N)``, or None for W-MSA.
        """
        B_, N, C = windows.shape
        q, k, v = self.qkv_heads(windows)  # each (B*nW, h, N, d)
        mask = self.relative_position_bias(math.isqrt(N)).to(q.dtype).unsqueeze(0)  # (1, h, N, N)
        if shift_mask is not None:
            mask = mask + shift_mask.unsqueeze(1)  # (nW, h, N, N)
        if self._fused(mask):
            out = self.fused_attention(q, k, v, mask, num_windows)
        else:
            out = self.window_attention(q, k, v, mask, num_windows)
        out = out.transpose(1, 2).reshape(B_, N, C)
        return self.proj_drop(self.proj(out))

    def window_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                         num_windows: int) -> torch.Tensor:
        """``softmax(q k^T * scale + mask) v`` for every window (paper Eq. 4).

        Args:
            q, k, v: ``(B*nW, h, N, d)``, the windows of each image consecutive.
            mask: additive mask (relative position bias plus shift mask),
                ``(nW, h, N, N)`` or ``(1, h, N, N)``; broadcast over the batch.
            num_windows: nW, windows per image.

        Returns:
            ``(B*nW, h, N, d)``; the probabilities ``(B, nW, h, N, N)`` are recorded.
        """
        B_, h, N, d = q.shape
        nW = num_windows
        attn = self.attention_logits(q, k, nW).add_(mask)  # (B, nW, h, N, N)
        if self.speed.short_row_softmax:
            attn = fast.softmax_last_dim(attn, self.speed.float_lanes)
        else:
            attn = attn.softmax(dim=-1)
        self.record(attn)
        return (self.attn_drop(attn) @ v.view(-1, nW, h, N, d)).view(B_, h, N, d)

    def attention_logits(self, q: torch.Tensor, k: torch.Tensor, num_windows: int) -> torch.Tensor:
        """``q k^T / sqrt(d)`` per window: q, k ``(B*nW, h, N, d)`` -> ``(B, nW, h, N, N)``
        (a fresh tensor: the caller adds the mask in place)."""
        B_, h, N, d = q.shape
        attn = q.view(-1, num_windows, h, N, d) @ k.view(-1, num_windows, h, N, d).transpose(-2, -1)
        return attn.mul_(self.scale)

    def fused_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                        num_windows: int) -> torch.Tensor:
        """:meth:`window_attention` through :func:`~.fast.fused_window_attention` (no probabilities):
        ``(B*nW, h, N, d)`` in and out."""
        return fast.fused_window_attention(q, k, v, mask, num_windows)

    def _fused(self, mask: torch.Tensor) -> bool:
        """Whether the fused kernel may run: asked for, no probabilities
        recorded, no gradient into the mask (PyTorch's fused CPU kernels give
        none: training the bias table), no active attention dropout."""
        dropping = self.attn_drop.training and self.attn_drop.p > 0.0
        needs_mask_grad = mask.requires_grad and torch.is_grad_enabled()
        return self.speed.fused_attn and not (self.recording or needs_mask_grad or dropping)


class SwinTransformerBlock(nn.Module):
    """Swin Transformer block (paper Sec. 3.2, Eq. 3): pre-norm W-MSA or SW-MSA
    and a 2-layer MLP, each with a residual connection and stochastic depth.

    ``window_size``/``shift_size`` are those chosen at construction; the run
    time rule (:meth:`window_and_shift`) may shrink the window for a small map.
    ``norm_layer`` / ``act_layer``: the norms' and the MLP activation's
    classes (timm, torchvision). ``speed``: the model's
    :class:`~.fast.SpeedOptions`.

    Input and output ``(B, H, W, C)``.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shift_size: int = 0, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 norm_layer: Callable[[int], nn.Module] = nn.LayerNorm, act_layer: Callable[[], nn.Module] = nn.GELU,
                 speed: SpeedOptions | None = None,
                 attn_layer: Callable[..., nn.Module] = WindowAttention) -> None:
        super().__init__()
        if not 0 <= shift_size < max(window_size, 1):
            raise ValueError(f"shift_size must be in [0, window_size={window_size}), got {shift_size}")
        self.speed = speed = resolve_speed(speed)
        self.dim = dim
        self.window_size = int(window_size)
        self.shift_size = int(shift_size)
        self.norm1 = norm_layer(dim)
        self.attn = attn_layer(dim, self.window_size, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                               proj_drop=drop, speed=speed)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = make_mlp(dim, int(dim * mlp_ratio), act_layer, drop, speed)
        if speed.one_gather_shift:
            self.partition, self.merge = fast.shift_and_partition, fast.merge_and_unshift
        else:
            self.partition, self.merge = shift_and_partition, merge_and_unshift

    def window_and_shift(self, H: int, W: int) -> tuple[int, int]:
        """Window and shift used for an ``H x W`` map (official rule: if
        ``min(H, W) <= window`` the window becomes ``min(H, W)``, unshifted)."""
        if min(H, W) <= self.window_size:
            return min(H, W), 0
        return self.window_size, self.shift_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C) -> (B, H, W, C)``."""
        x = self.residual(x, self.attention_branch, skip_dropped=not self.attn.recording)  # z^ = W-MSA(LN(z)) + z
        x = self.residual(x, self.mlp_branch)  # z = MLP(LN(z^)) + z^
        return x

    def residual(self, x: torch.Tensor, branch: Callable[[torch.Tensor], torch.Tensor],
                 skip_dropped: bool = True) -> torch.Tensor:
        """``x + DropPath(branch(x))``; with the residual speed paths on,
        :func:`~.fast.drop_path_residual` (same result)."""
        if self.speed.skip_dropped_samples or self.speed.in_place_residual:
            return fast.drop_path_residual(x, branch, self.drop_path, self.speed, skip_dropped)
        return x + self.drop_path(branch(x))

    def attention_branch(self, x: torch.Tensor) -> torch.Tensor:
        """(S)W-MSA of ``LN(x)``: ``(B, H, W, C) -> (B, H, W, C)``."""
        return self.window_msa(self.norm1(x))

    def window_msa(self, x: torch.Tensor) -> torch.Tensor:
        """(S)W-MSA of ``x``: pad to the window, cyclic shift + partition,
        window attention, merge + reverse shift, crop; ``(B, H, W, C) -> (B, H, W, C)``."""
        B, H, W, C = x.shape
        window, shift = self.window_and_shift(H, W)
        pad_h, pad_w = (-H) % window, (-W) % window
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # bottom/right to a multiple of the window
        Hp, Wp = H + pad_h, W + pad_w
        windows = self.partition(x, window, shift)  # cyclic shift + window partition: (B*nW, N, C)
        mask = shift_attention_mask(Hp, Wp, window, shift, x.device, fill=MASK_FILL) if shift else None
        windows = self.attn(windows, (Hp // window) * (Wp // window), mask)
        return self.merge(windows, window, shift, Hp, Wp)[:, :H, :W]  # window merge + reverse shift, crop

    def mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        """MLP of ``LN(x)``: ``(B, H, W, C) -> (B, H, W, C)``."""
        return self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Patch merging (paper Sec. 3.1): concatenate each 2x2 group of
    neighbours (official order x[0::2,0::2], x[1::2,0::2], x[0::2,1::2],
    x[1::2,1::2]), ``norm_layer(4C)`` (None: no norm) and Linear(4C ->
    out_dim, no bias).

    ``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), out_dim)``; odd sizes are
    zero-padded (bottom/right) first.
    """

    def __init__(self, dim: int, out_dim: int | None = None,
                 norm_layer: Callable[[int], nn.Module] | None = nn.LayerNorm) -> None:
        super().__init__()
        self.dim = dim
        self.out_dim = out_dim or 2 * dim
        self.norm = norm_layer(4 * dim) if norm_layer is not None else None
        self.reduction = nn.Linear(4 * dim, self.out_dim, bias=False)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Each 2x2 group concatenated (official order), odd sizes padded first:
        ``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 4C)``."""
        B, H, W, C = x.shape
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
            H, W = H + H % 2, W + W % 2
        return x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gather(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.reduction(x)


class BasicLayer(nn.Module):
    """One Swin stage: ``depth`` blocks alternating W-MSA and SW-MSA (an
    ``nn.Sequential`` named ``blocks``), then an optional patch merging
    (official ``BasicLayer``; the downsample sits at the END of the stage, as
    in the official checkpoints).

    Args:
        dim, depth, num_heads, window_size: the stage's. shift: shift every
            second block by ``window_size // 2``.
        drop_path: one stochastic depth rate per block.
        downsample: the merging layer's class (called ``downsample(dim,
            norm_layer=norm_layer)``), or None.
        block_layer: the block's class (:class:`SwinTransformerBlock` or a
            variant with its signature).
        the rest: passed to every block.

    ``forward(x)``: ``(B, H, W, C) -> (B, H', W', C')``, the merged map
    (``x`` after the blocks when there is no downsample). A tensor in, a
    tensor out: stages compose with ``nn.Sequential`` and
    ``torch.utils.checkpoint``.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, shift: bool, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0, drop_path: Sequence[float] = (),
                 downsample: Callable[..., nn.Module] | None = None,
                 norm_layer: Callable[[int], nn.Module] = nn.LayerNorm, act_layer: Callable[[], nn.Module] = nn.GELU,
                 block_layer: Callable[..., nn.Module] | None = None, speed: SpeedOptions | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.depth = depth
        block_layer = block_layer or SwinTransformerBlock
        self.blocks = nn.Sequential(*(
            block_layer(
                dim, num_heads, window_size=window_size,
                shift_size=(window_size // 2) if (shift and i % 2 == 1) else 0,
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop, attn_drop=attn_drop,
                drop_path=drop_path[i] if len(drop_path) else 0.0, norm_layer=norm_layer, act_layer=act_layer,
                speed=speed,
            )
            for i in range(depth)
        ))
        self.downsample = downsample(dim, norm_layer=norm_layer) if downsample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        return self.downsample(x) if self.downsample is not None else x


def _per_stage(value, num_stages: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * num_stages
    t = tuple(int(v) for v in value)
    if len(t) != num_stages:
        raise ValueError(f"{name} has {len(t)} entries, expected one per stage ({num_stages}): {value!r}")
    return t


class SwinTransformer(StagedBackboneMixin, nn.Module):
    """Swin Transformer V1 classifier and backbone.

    The forward, the backbone API (``forward_intermediates``,
    ``feature_info``, ``set_grad_checkpointing``, ``group_matcher``,
    ``get_classifier`` / ``reset_classifier``) and ``forward_attention`` come
    from :class:`~.backbone.StagedBackboneMixin`; this class builds the
    modules and embeds the patches (``_embed``).

    Args:
        img_size: default input size (int or (H, W)). It sets the windows of
            stages whose map is not larger than their window (official rule)
            and the grid of ``absolute_pos_embed``; any other size runs too.
        patch_size: patch side p. in_chans: input channels.
        num_classes: classes of the linear head; 0 gives no head (``forward``
            returns pooled features ``(B, C)``).
        embed_dim: C of stage 1 (stage i has ``C * 2**i``).
        depths, num_heads: blocks and heads per stage.
        window_size: an int or one per stage (Swin-S3).
        mlp_ratio, qkv_bias: block options. qk_scale is not supported.
        drop_rate, attn_drop_rate: dropout. drop_path_rate: stochastic depth,
            rising linearly from 0 to this over all blocks.
        ape: learnable absolute position embedding ``(1, Ph*Pw, C)``,
            bicubic-resized at run time for another grid.
        patch_norm: a norm after the patch embedding.
        pad_input: pad inputs whose size is not a multiple of the patch size
            (else a ValueError).
        init: weight initialisation (timm's ``weight_init``): ``"official"``
            (truncated normal std 0.02) or ``"keras"`` (Glorot-uniform
            kernels, zero biases, uniform(-0.05, 0.05) position embedding,
            zero relative position bias tables; the main job's recipe uses it
            too), see :func:`.layers.init_weights`.
        norm_layer, act_layer: the norms' and the MLP activation's classes
            (``nn.LayerNorm``, ``nn.GELU``; timm / torchvision injection).
        block_layer, downsample_layer: the block and patch-merging classes
            (torchvision's ``block`` / ``downsample_layer``): a second block
            type plugs in here (Swin V2, :mod:`.swin_v2`); ``block_layer``
            may also be a sequence, one per stage.
        speed: the :class:`~.fast.SpeedOptions` of this model (default: every
            measured speed path on, ``float_lanes`` from this CPU's ISA);
            ``SpeedOptions.plain()`` gives the reference formulation.

    ``forward(x)``: ``(B, in_chans, H, W)`` -> ``(B, num_classes)`` (or
    ``(B, C_last)`` when ``num_classes == 0``). ``forward_features(x)``: the
    final normed map ``(B, C_last, h, w)``; ``forward_intermediates(x)``:
    the stage maps ``(B, C * 2**i, H / (p * 2**i), ...)``.

    Raises:
        ValueError: inconsistent per-stage arguments, or bad inputs (wrong
            channel count, unpaddable size).
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int | Sequence[int] = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        ape: bool = False,
        patch_norm: bool = True,
        pad_input: bool = True,
        init: str = "official",
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        block_layer: Callable[..., nn.Module] = SwinTransformerBlock,
        downsample_layer: Callable[..., nn.Module] = PatchMerging,
        speed: SpeedOptions | None = None,
    ) -> None:
        super().__init__()
        depths = tuple(int(d) for d in depths)
        if not depths:
            raise ValueError("depths must name at least one stage")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.speed = speed = resolve_speed(speed)
        self.img_size = to_2tuple(img_size)
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.depths = depths
        self.num_heads = _per_stage(num_heads, len(depths), "num_heads")
        self.num_layers = len(depths)
        self.num_features = int(embed_dim * 2 ** (len(depths) - 1))
        self.mlp_ratio = mlp_ratio
        self.ape = ape

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm, pad=pad_input,
                                      norm_layer=norm_layer)
        grid = (math.ceil(self.img_size[0] / patch_size), math.ceil(self.img_size[1] / patch_size))
        self.patches_resolution = grid
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1], embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        else:
            self.absolute_pos_embed = None
        self.pos_drop = make_dropout(drop_rate, speed)
        block_args = dict(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate,
                          norm_layer=norm_layer, act_layer=act_layer, block_layer=block_layer, speed=speed)
        self.layers = self._build_stages(_per_stage(window_size, len(depths), "window_size"), drop_path_rate,
                                         downsample_layer, block_args)
        self.norm = norm_layer(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.init = init
        self._init_weights(init)

    def _build_stages(self, windows: tuple[int, ...], drop_path_rate: float, downsample_layer: Callable[..., nn.Module],
                      block_args: dict) -> nn.Sequential:
        """The stages; a stage whose map at ``img_size`` is not larger than its
        window gets the map size as window and no shift (official rule)."""
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths), device="cpu").tolist()
        blocks = block_args["block_layer"]
        blocks = tuple(blocks) if isinstance(blocks, (list, tuple)) else (blocks,) * len(self.depths)
        if len(blocks) != len(self.depths):
            raise ValueError(f"block_layer has {len(blocks)} entries, expected one per stage ({len(self.depths)})")
        self.window_sizes: list[int] = []
        layers = []
        res = self.patches_resolution
        for i, depth in enumerate(self.depths):
            ws, shift = (min(res), False) if min(res) <= windows[i] else (windows[i], True)
            self.window_sizes.append(ws)
            start = sum(self.depths[:i])
            layers.append(BasicLayer(dim=int(self.embed_dim * 2**i), depth=depth, num_heads=self.num_heads[i],
                                     window_size=ws, shift=shift, drop_path=dpr[start:start + depth],
                                     downsample=downsample_layer if i < len(self.depths) - 1 else None,
                                     **dict(block_args, block_layer=blocks[i])))
            res = (math.ceil(res[0] / 2), math.ceil(res[1] / 2))
        return nn.Sequential(*layers)

    def _init_weights(self, scheme: str) -> None:
        """Initialise as ``scheme`` says (see the class docstring)."""
        init_weights(self, scheme)
        if scheme == "keras":
            if self.absolute_pos_embed is not None:
                nn.init.uniform_(self.absolute_pos_embed, -0.05, 0.05)
            for name, p in self.named_parameters():
                if name.endswith("relative_position_bias_table"):
                    nn.init.zeros_(p)

    # ------------------------------------------------------------------ helpers
    def no_weight_decay(self) -> set[str]:
        """Parameter names the official recipe excludes from weight decay."""
        return {"absolute_pos_embed"}

    def no_weight_decay_keywords(self) -> set[str]:
        """Substrings of parameter names the official recipe excludes from
        weight decay (``relative_position_bias_table``; official
        ``optimizer.py``, ``set_weight_decay``)."""
        return {"relative_position_bias_table"}

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens before the first stage: ``(B, 3, H, W) -> (B, H/p', W/p', C)``
        (patch embedding, absolute position embedding, dropout)."""
        x = self.patch_embed(x)  # (B, Ph, Pw, C)
        if self.absolute_pos_embed is not None:
            Ph, Pw = x.shape[1:3]
            gh, gw = self.patches_resolution
            pos = self.absolute_pos_embed
            if (Ph, Pw) != (gh, gw):
                pos = pos.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
                pos = F.interpolate(pos, size=(Ph, Pw), mode="bicubic", align_corners=False)
                pos = pos.permute(0, 2, 3, 1)
            x = x + pos.reshape(1, Ph, Pw, -1)
        return self.pos_drop(x)
