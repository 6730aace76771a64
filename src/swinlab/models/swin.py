"""Swin Transformer V1 (Liu et al. 2021, "Swin Transformer: Hierarchical Vision
Transformer using Shifted Windows", arXiv:2103.14030).

Module and parameter names follow the official Microsoft code
(``microsoft/Swin-Transformer``, ``models/swin_transformer.py``) so that its
checkpoints load without renaming: ``patch_embed.{proj,norm}``,
``absolute_pos_embed``, ``layers.i.blocks.j.{norm1,attn.{qkv,proj,
relative_position_bias_table},norm2,mlp.{fc1,fc2}}``, ``layers.i.downsample.
{norm,reduction}`` (patch merging at the END of stage i), ``norm``, ``head``.

Differences from the official classification code, all of them without effect
at the sizes the official code accepts:

* any input size at run time. H and W are zero-padded to a multiple of the
  patch size, each block pads its (normalised) map to a multiple of its window
  and patch merging pads to an even size -- the padding scheme of the official
  detection backbone, which timm and Hugging Face transformers share. The
  shift mask is built for the padded size and cached.
* the window rule of the official code (``min(resolution) <= window``: the
  window shrinks to the resolution and the shift is switched off) is applied at
  construction for ``img_size`` *and* again at run time for the actual size. A
  run-time window smaller than the one built uses the matching sub-block of the
  ``relative_position_bias_table`` (the relative offsets of a smaller window
  are a subset of those of a larger one), so nothing is resized and
  ``forward`` never changes the module.
* attention goes through ``torch.nn.functional.scaled_dot_product_attention``
  (4-D, PyTorch's fused flash kernel on the CPU) with the relative position
  bias and the shift mask added into one mask; the explicit path
  (``forward_attention``, and training, where the bias table needs the mask
  gradient) computes ``softmax(q k^T / sqrt(d) + mask) v`` with matmuls.
* the shift mask holds ``MASK_FILL`` (-1e4) instead of the official -100:
  same outputs to float32 resolution, but no denormal softmax weights, which
  made the training step several times slower in the attention backward.

Speed notes (eager CPU; see ``benchmarks/bench_cpu_speed.py`` and
``benchmarks/RESULTS_models.md``): the cyclic shift + window partition (and
their inverses) are one token gather each (:func:`window_order`); residual
adds are done in place in the fresh branch output; masks are cached for
inference; the MLP runs in cache-sized blocks (:class:`.layers.Mlp`).

Tensor layout: images are NCHW ``(B, 3, H, W)``; inside the network tokens are
kept as ``(B, H, W, C)`` (channels last, as timm does); every public output
map is NCHW ``(B, C, H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DropPath, Mlp, _eager, drop_path_residual, init_weights_trunc_normal, to_2tuple

__all__ = [
    "SwinTransformer",
    "SwinTransformerBlock",
    "WindowAttention",
    "PatchEmbed",
    "PatchMerging",
    "BasicLayer",
    "window_partition",
    "window_reverse",
    "relative_position_index",
    "shift_attention_mask",
    "window_order",
    "expand_window_mask",
    "MASK_FILL",
]


_EXPANDED_MASK_CACHE_BYTES = 64 * 2**20  # per block; larger batch masks are expanded per call


# Python-side caches (and the custom autograd gathers) are skipped while
# tracing, scripting or compiling.
_caching_allowed = _eager


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Split a map into non-overlapping square windows.

    Args:
        x: ``(B, H, W, C)`` with H and W multiples of ``window_size``.
        window_size: window side M in tokens.

    Returns:
        ``(B * num_windows, M * M, C)``, windows in row-major order per image
        (the official ``window_partition`` order).
    """
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, C)


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`.

    Args:
        windows: ``(B * num_windows, M * M, C)``.
        window_size: window side M.
        H, W: padded map size (multiples of M).

    Returns:
        ``(B, H, W, C)``.
    """
    C = windows.shape[-1]
    x = windows.view(-1, H // window_size, W // window_size, window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


@lru_cache(maxsize=64)
@torch.inference_mode(False)  # cached: must stay usable by autograd
def _window_order_cpu(H: int, W: int, window_size: int, shift_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    grid = torch.arange(H * W, device="cpu").view(1, H, W, 1)
    if shift_size:
        grid = torch.roll(grid, shifts=(-shift_size, -shift_size), dims=(1, 2))
    order = window_partition(grid, window_size).reshape(-1)
    return order, torch.argsort(order)


def window_order(
    H: int, W: int, window_size: int, shift_size: int = 0, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token permutation that does the cyclic shift and the window partition
    in one gather (and its inverse), the same arrangement as
    ``window_partition(torch.roll(x, (-shift, -shift), (1, 2)), M)``.

    For a map flattened to ``(B, H*W, C)``, ``x.index_select(1, order)``
    viewed as ``(B*nW, M*M, C)`` equals the official roll + partition, and
    ``y.index_select(1, inverse)`` undoes it (window reverse + roll back).

    Args:
        H, W: padded map size (multiples of ``window_size``).
        window_size: M. shift_size: cyclic shift s (0: none).

    Returns:
        ``(order, inverse)``, each ``(H*W,)`` int64 (cached on the CPU; do
        not modify).
    """
    build = _window_order_cpu if _caching_allowed() else _window_order_cpu.__wrapped__
    order, inverse = build(H, W, window_size, shift_size)
    if device is not None and torch.device(device) != order.device:
        order, inverse = order.to(device), inverse.to(device)
    return order, inverse


class _PermuteTokens(torch.autograd.Function):
    """``x.index_select(1, order)`` whose backward is the inverse gather
    (cheaper than ``index_select``'s scatter-add backward)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return x.index_select(1, order)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(1, inverse), None, None


def _permute_tokens(x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """``x[:, order]`` for ``x`` ``(B, L, C)`` and a permutation ``order`` of L."""
    if x.requires_grad and _caching_allowed():
        return _PermuteTokens.apply(x, order, inverse)
    return x.index_select(1, order)


@lru_cache(maxsize=64)
@torch.inference_mode(False)  # cached: must stay usable by autograd
def relative_position_index(window_size: int, table_window_size: int | None = None) -> torch.Tensor:
    """Index into a relative position bias table for an M x M window.

    Paper Sec. 3.2, "Relative position bias": offsets along each axis lie in
    [-M+1, M-1], so the table has (2M-1)^2 rows. With ``table_window_size`` T >=
    M, the index points into a table built for a T x T window (its rows for
    the offsets a smaller window uses).

    Returns:
        ``(M*M, M*M)`` int64 tensor on the CPU (cached; do not modify).

    Raises:
        ValueError: if ``table_window_size`` is smaller than ``window_size``.
    """
    T = window_size if table_window_size is None else table_window_size
    if T < window_size:
        raise ValueError(f"table window {T} is smaller than window {window_size}")
    ar = torch.arange(window_size, device="cpu")  # explicit: cached, so never the meta device
    coords = torch.stack(
        torch.meshgrid(ar, ar, indexing="ij")
    ).flatten(1)  # (2, M*M)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 2)
    rel = rel + (T - 1)
    return rel[..., 0] * (2 * T - 1) + rel[..., 1]


@lru_cache(maxsize=64)
@torch.inference_mode(False)  # cached: must stay usable by autograd
def _shift_mask_cpu(H: int, W: int, window_size: int, shift_size: int, fill: float) -> torch.Tensor:
    img_mask = torch.zeros((1, H, W, 1), device="cpu")
    cnt = 0
    for h in (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None)):
        for w in (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None)):
            img_mask[:, h, w, :] = cnt
            cnt += 1
    mask_windows = window_partition(img_mask, window_size).squeeze(-1)  # (nW, N)
    mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, fill).masked_fill(mask == 0, 0.0)


# Value the model puts between tokens of different regions of the shifted map.
# The official code uses -100: its masked softmax weights, e^-100 ~ 4e-44, are
# float32 *denormals*, which make the softmax backward and the matmuls that
# read the probabilities 4-5x slower on x86 CPUs (measured: 203 ms vs 41 ms
# for one stage-1 SW-MSA attention, batch 8). -1e4 gives weights of exactly 0;
# the outputs differ from the official ones by ~e^-100 relative, far below
# float32 resolution (the reference logits match to < 1e-6).
MASK_FILL = -1.0e4


def shift_attention_mask(
    H: int, W: int, window_size: int, shift_size: int, device=None, dtype=None, fill: float = -100.0
) -> torch.Tensor:
    """Additive attention mask of SW-MSA (paper Sec. 3.2, "Efficient batch
    computation for shifted configuration"), as the official code builds it:
    ``fill`` (official: -100) between tokens that came from different regions
    of the cyclically shifted map, 0 elsewhere. The model itself uses
    ``fill=MASK_FILL`` (see there).

    Args:
        H, W: padded map size in tokens (multiples of ``window_size``).
        window_size: M. shift_size: the cyclic shift, 0 < shift < M.

    Returns:
        ``(num_windows, M*M, M*M)``.
    """
    build = _shift_mask_cpu if _caching_allowed() else _shift_mask_cpu.__wrapped__
    return build(H, W, window_size, shift_size, float(fill)).to(device=device, dtype=dtype)


class _SplitQKV(torch.autograd.Function):
    """``(B_, N, 3*h*d) -> q, k, v`` each ``(B_, h, N, d)`` (strided views),
    whose backward writes the three gradients straight into one
    ``(B_, N, 3*h*d)`` tensor (autograd's unbind + permute backward makes two
    full copies)."""

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, num_heads: int, head_dim: int):  # type: ignore[override]
        B_, N, _ = qkv.shape
        ctx.dims = (B_, N, num_heads, head_dim)
        return qkv.view(B_, N, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gq, gk, gv):  # type: ignore[override]
        B_, N, h, d = ctx.dims
        ref = next(g for g in (gq, gk, gv) if g is not None)
        grad = ref.new_empty(B_, N, 3, h, d)
        for i, g in enumerate((gq, gk, gv)):
            if g is None:
                grad[:, :, i].zero_()
            else:
                grad[:, :, i].copy_(g.transpose(1, 2))
        return grad.view(B_, N, 3 * h * d), None, None


class PatchEmbed(nn.Module):
    """Image to patch tokens: a conv with kernel = stride = ``patch_size``,
    optionally followed by LayerNorm (official ``PatchEmbed``).

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
    ) -> None:
        super().__init__()
        self.patch_size = to_2tuple(patch_size)
        self.in_chans = in_chans
        self.pad = pad
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

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


class WindowAttention(nn.Module):
    """Window based multi-head self attention with relative position bias
    (paper Sec. 3.2, Eq. 4: ``softmax(QK^T / sqrt(d) + B) V``).

    Args:
        dim: channels C. window_size: the window M it is built for (the bias
            table has ``(2M-1)^2`` rows). num_heads: heads h (C % h == 0).

    ``forward(x, attn_mask, num_windows)``: ``x`` is ``(B*nW, N, C)`` with
    N = m*m for a run-time window m <= M. Returns ``(B*nW, N, C)``.
    """

    def __init__(
        self,
        dim: int,
        window_size: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.window_size = int(window_size)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * self.window_size - 1) ** 2, num_heads)
        )
        self.register_buffer(
            "relative_position_index", relative_position_index(self.window_size).clone(), persistent=False
        )
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.attn_drop_p = float(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self, window_size: int | None = None) -> torch.Tensor:
        """Bias ``(num_heads, N, N)`` for a run-time window ``m <= M`` (N = m*m)."""
        m = self.window_size if window_size is None else window_size
        if m == self.window_size:
            index = self.relative_position_index
        else:
            index = relative_position_index(m, self.window_size).to(self.relative_position_bias_table.device)
        N = m * m
        bias = self.relative_position_bias_table[index.reshape(-1)].view(N, N, -1)
        return bias.permute(2, 0, 1).contiguous()

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B_, N, C = x.shape
        qkv = self.qkv(x)
        if qkv.requires_grad and _caching_allowed():
            return _SplitQKV.apply(qkv, self.num_heads, self.head_dim)
        qkv = qkv.reshape(B_, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)  # each (B_, h, N, d)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor,
        num_windows: int,
        return_attn: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention over windows.

        Args:
            x: ``(B*nW, N, C)``, windows of each image consecutive.
            attn_mask: additive mask (relative position bias plus shift
                mask), ``(nW, h, N, N)`` or ``(1, h, N, N)`` (broadcast over
                the batch), or already expanded to ``(B*nW, h, N, N)``.
            num_windows: nW, windows per image.
            return_attn: also return the probabilities (explicit path).

        Returns:
            ``(out, attn)``: ``out`` ``(B*nW, N, C)``; ``attn``
            ``(B, nW, h, N, N)`` or None.

        Two paths with the same result (to float rounding): the explicit one
        (``softmax(q k^T / sqrt(d) + mask) v`` with matmuls) when the
        probabilities are asked for or a gradient must flow into the mask
        (training the bias table: PyTorch's fused CPU kernels do not give
        mask gradients), else ``scaled_dot_product_attention`` on 4-D
        ``(B*nW, h, N, d)`` tensors, which runs PyTorch's fused (flash) CPU
        kernel -- 2-3x faster than the 5-D form, which falls back to the
        unfused "math" kernel.
        """
        B_, N, C = x.shape
        nW = num_windows
        q, k, v = self._qkv(x)  # each (B*nW, h, N, d), strided views
        explicit = return_attn or (attn_mask.requires_grad and torch.is_grad_enabled())
        if explicit:
            h, d = self.num_heads, self.head_dim
            if attn_mask.shape[0] == B_ and B_ != nW:
                attn_mask = attn_mask.view(-1, nW, h, N, N)
            # scores as a fresh (B, nW, h, N, N) tensor, scaled and masked in place
            attn = q.view(-1, nW, h, N, d) @ k.view(-1, nW, h, N, d).transpose(-2, -1)
            attn = attn.mul_(self.scale).add_(attn_mask).softmax(dim=-1)
            out = self.attn_drop(attn) @ v.view(-1, nW, h, N, d)  # (B, nW, h, N, d)
            out = out.view(B_, h, N, d)
            probs = attn if return_attn else None
        else:
            if attn_mask.shape[0] not in (1, B_):
                attn_mask = expand_window_mask(attn_mask, B_ // nW)
            if attn_mask.dtype != q.dtype:
                attn_mask = attn_mask.to(q.dtype)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop_p if self.training else 0.0
            )
            probs = None
        out = out.transpose(1, 2).reshape(B_, N, C)  # (B*nW, N, h, d) -> (B*nW, N, C)
        out = self.proj_drop(self.proj(out))
        return out, probs


def expand_window_mask(mask: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat a per-window mask for every image: ``(nW, h, N, N) ->
    (batch*nW, h, N, N)`` (a copy; the fused SDPA kernel takes 4-D masks that
    broadcast only over size-1 dimensions)."""
    return mask.unsqueeze(0).expand(batch, *mask.shape).reshape(-1, *mask.shape[1:])


class SwinTransformerBlock(nn.Module):
    """Swin Transformer block (paper Sec. 3.2, Eq. 3): pre-norm W-MSA or SW-MSA
    and a 2-layer MLP, each with a residual connection and stochastic depth.

    ``window_size``/``shift_size`` are those chosen at construction; the run
    time rule (:meth:`window_and_shift`) may shrink the window for a small map.

    Input and output ``(B, H, W, C)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < max(window_size, 1):
            raise ValueError(f"shift_size must be in [0, window_size={window_size}), got {shift_size}")
        self.dim = dim
        self.window_size = int(window_size)
        self.shift_size = int(shift_size)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, self.window_size, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self._mask_cache: dict = {}
        self._expanded_mask: tuple[tuple, torch.Tensor] | None = None

    def train(self, mode: bool = True) -> "SwinTransformerBlock":
        """Switch mode and drop the inference mask caches: weights written
        without bumping the bias table's version counter (fused optimizers,
        ``.data`` writes) must not leave a stale bias behind."""
        self._mask_cache.clear()
        self._expanded_mask = None
        return super().train(mode)

    def window_and_shift(self, H: int, W: int) -> tuple[int, int]:
        """Window and shift used for an ``H x W`` map (official rule: if
        ``min(H, W) <= window`` the window becomes ``min(H, W)``, unshifted)."""
        if min(H, W) <= self.window_size:
            return min(H, W), 0
        return self.window_size, self.shift_size

    def _attn_mask(self, Hp: int, Wp: int, ws: int, shift: int, dtype: torch.dtype) -> torch.Tensor:
        """Relative position bias plus shift mask, ``(nW, heads, N, N)``.

        The sum is cached per (size, window, shift, device, dtype) when no
        gradient flows into the bias table (inference), keyed by the table's
        version counter so that loading new weights invalidates it.
        """
        table = self.attn.relative_position_bias_table
        cacheable = _caching_allowed() and not (torch.is_grad_enabled() and table.requires_grad)
        key = self._cache_key(Hp, Wp, ws, shift, dtype) if cacheable else None
        if cacheable:
            hit = self._mask_cache.get(key)
            if hit is not None:
                return hit
        bias = self.attn.relative_position_bias(ws).to(dtype)  # (h, N, N)
        if shift > 0:
            mask = shift_attention_mask(Hp, Wp, ws, shift, device=table.device, dtype=dtype, fill=MASK_FILL)
            attn_mask = bias.unsqueeze(0) + mask.unsqueeze(1)
        else:
            attn_mask = bias.unsqueeze(0)
        if cacheable:
            if len(self._mask_cache) > 16:
                self._mask_cache.clear()
            self._mask_cache[key] = attn_mask
        return attn_mask

    def _cache_key(self, Hp: int, Wp: int, ws: int, shift: int, dtype: torch.dtype) -> tuple:
        """Cache key of the masks; only called eagerly (not while compiling)."""
        table = self.attn.relative_position_bias_table
        return (Hp, Wp, ws, shift, table.device, dtype, table._version, torch.is_inference_mode_enabled())

    def _sdpa_mask(self, mask: torch.Tensor, batch: int, key: tuple) -> torch.Tensor:
        """``mask`` expanded to ``(batch*nW, h, N, N)`` for the fused kernel.

        Without autograd into the mask, the expansion for the last batch size
        is kept (one entry per block, at most ``_EXPANDED_MASK_CACHE_BYTES``;
        e.g. 30 MB for the first SW-MSA block of Swin-T at batch 16)."""
        if mask.shape[0] == 1:
            return mask
        if torch.jit.is_tracing():  # batch-generic graph: always expand
            return expand_window_mask(mask, batch)
        if batch == 1:
            return mask
        cacheable = _caching_allowed() and not mask.requires_grad
        nbytes = batch * mask.numel() * mask.element_size()
        if not cacheable or nbytes > _EXPANDED_MASK_CACHE_BYTES:
            return expand_window_mask(mask, batch)
        key = self._cache_key(*key) + (batch,)
        if self._expanded_mask is not None and self._expanded_mask[0] == key:
            return self._expanded_mask[1]
        expanded = expand_window_mask(mask, batch)
        self._expanded_mask = (key, expanded)  # one entry per block: bounded memory
        return expanded

    def forward(self, x: torch.Tensor, return_attn: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, H, W, C) -> ((B, H, W, C), attn)``; ``attn`` is
        ``(B, nW, heads, N, N)`` when ``return_attn`` else None.

        ``x + drop_path(attention(norm1(x)))``, then ``x + drop_path(mlp(norm2(x)))``
        (:func:`.layers.drop_path_residual`: in training, stochastic depth
        skips the branch work of dropped samples).
        """
        x, attn = drop_path_residual(
            x, lambda t: self._attention_branch(t, return_attn), self.drop_path, skip_dropped=not return_attn
        )
        x, _ = drop_path_residual(x, lambda t: (self.mlp(self.norm2(t)), None), self.drop_path)
        return x, attn

    def _attention_branch(self, x: torch.Tensor, return_attn: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(S)W-MSA of ``norm1(x)``: ``(B, H, W, C) -> ((B, H, W, C), attn)``.

        The cyclic shift and window partition (and their inverses) are done
        as one token gather each (:func:`window_order`); the result is that
        of the official roll + ``window_partition`` / ``window_reverse`` + roll.
        """
        B, H, W, C = x.shape
        ws, shift = self.window_and_shift(H, W)
        x = self.norm1(x)
        pad_h, pad_w = (-H) % ws, (-W) % ws
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        Hp, Wp = H + pad_h, W + pad_w
        nW = (Hp // ws) * (Wp // ws)
        order, inverse = window_order(Hp, Wp, ws, shift, device=x.device)
        windows = _permute_tokens(x.reshape(-1, Hp * Wp, C), order, inverse).view(-1, ws * ws, C)
        attn_mask = self._attn_mask(Hp, Wp, ws, shift, windows.dtype)
        if not (return_attn or (attn_mask.requires_grad and torch.is_grad_enabled())):
            attn_mask = self._sdpa_mask(attn_mask, B, (Hp, Wp, ws, shift, attn_mask.dtype))
        windows, attn = self.attn(windows, attn_mask, nW, return_attn)
        x = _permute_tokens(windows.view(-1, Hp * Wp, C), inverse, order).view(-1, Hp, Wp, C)
        if pad_h or pad_w:
            x = x[:, :H, :W, :].contiguous()
        return x, attn


class PatchMerging(nn.Module):
    """Patch merging (paper Sec. 3.1): concatenate each 2x2 group of
    neighbours (official order x[0::2,0::2], x[1::2,0::2], x[0::2,1::2],
    x[1::2,1::2]), LayerNorm(4C) and Linear(4C -> out_dim, no bias).

    ``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), out_dim)``; odd sizes are
    zero-padded (bottom/right) first.
    """

    def __init__(self, dim: int, out_dim: int | None = None, norm: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.out_dim = out_dim or 2 * dim
        self.norm = nn.LayerNorm(4 * dim) if norm else None
        self.reduction = nn.Linear(4 * dim, self.out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
            H, W = H + H % 2, W + W % 2
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        if self.norm is not None:
            x = self.norm(x)
        return self.reduction(x)


class BasicLayer(nn.Module):
    """One Swin stage: ``depth`` blocks alternating W-MSA and SW-MSA, then an
    optional patch merging (official ``BasicLayer``; the downsample sits at the
    END of the stage, as in the official checkpoints).

    ``forward(x)``: ``(B, H, W, C)`` -> ``(stage_out (B, H, W, C), next_in,
    attentions)`` where ``next_in`` is the merged map (or ``stage_out``).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        shift: bool,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: Sequence[float] = (),
        downsample: bool = False,
        merge_norm: bool = True,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.depth = depth
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim,
                num_heads,
                window_size=window_size,
                shift_size=(window_size // 2) if (shift and i % 2 == 1) else 0,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=drop_path[i] if len(drop_path) else 0.0,
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim, norm=merge_norm) if downsample else None

    def forward(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        attns: list[torch.Tensor] = []
        for blk in self.blocks:
            x, a = blk(x, return_attn)
            if a is not None:
                attns.append(a)
        nxt = self.downsample(x) if self.downsample is not None else x
        return x, nxt, attns


def _per_stage(value, num_stages: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * num_stages
    t = tuple(int(v) for v in value)
    if len(t) != num_stages:
        raise ValueError(f"{name} has {len(t)} entries, expected one per stage ({num_stages}): {value!r}")
    return t


class SwinTransformer(nn.Module):
    """Swin Transformer V1 classifier and backbone.

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
        patch_norm: LayerNorm after the patch embedding.
        merge_norm: LayerNorm inside patch merging. final_norm: LayerNorm
            before pooling (both on in the official models; off in reference
            000's compact Keras model).
        pad_input: pad inputs whose size is not a multiple of the patch size
            (else a ValueError).

    ``forward(x)``: ``(B, in_chans, H, W)`` -> ``(B, num_classes)`` (or
    ``(B, C_last)`` when ``num_classes == 0``).

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
        merge_norm: bool = True,
        final_norm: bool = True,
        pad_input: bool = True,
    ) -> None:
        super().__init__()
        depths = tuple(int(d) for d in depths)
        num_stages = len(depths)
        if num_stages == 0:
            raise ValueError("depths must name at least one stage")
        num_heads = _per_stage(num_heads, num_stages, "num_heads")
        windows = _per_stage(window_size, num_stages, "window_size")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.img_size = to_2tuple(img_size)
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.depths = depths
        self.num_heads = num_heads
        self.num_layers = num_stages
        self.num_features = int(embed_dim * 2 ** (num_stages - 1))
        self.mlp_ratio = mlp_ratio
        self.ape = ape

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm, pad=pad_input)
        grid = (math.ceil(self.img_size[0] / patch_size), math.ceil(self.img_size[1] / patch_size))
        self.patches_resolution = grid
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1], embed_dim))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        else:
            self.absolute_pos_embed = None
        self.pos_drop = nn.Dropout(drop_rate)

        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.window_sizes: list[int] = []
        layers = []
        res = grid
        for i in range(num_stages):
            ws, shift = windows[i], True
            if min(res) <= ws:  # official rule, at the default size
                ws, shift = min(res), False
            self.window_sizes.append(ws)
            layers.append(
                BasicLayer(
                    dim=int(embed_dim * 2**i),
                    depth=depths[i],
                    num_heads=num_heads[i],
                    window_size=ws,
                    shift=shift,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=dpr[sum(depths[:i]) : sum(depths[: i + 1])],
                    downsample=i < num_stages - 1,
                    merge_norm=merge_norm,
                )
            )
            res = (math.ceil(res[0] / 2), math.ceil(res[1] / 2))
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(self.num_features) if final_norm else None
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_weights_trunc_normal)

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

    def _run(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        x = self._embed(x)
        stages: list[torch.Tensor] = []
        attns: list[torch.Tensor] = []
        for layer in self.layers:
            out, x, a = layer(x, return_attn)
            stages.append(out)
            attns.extend(a)
        if self.norm is not None:
            x = self.norm(x)
        return x, stages, attns

    # ------------------------------------------------------------------ public
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Final normed feature map: ``(B, 3, H, W) -> (B, C_last, H/32', W/32')``
        (``'``: sizes rounded up at every padding)."""
        x, _, _ = self._run(x)
        return x.permute(0, 3, 1, 2)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool and head: ``(B, C, h, w) -> (B, num_classes)``
        (``(B, C)`` with ``pre_logits`` or ``num_classes == 0``)."""
        pooled = features.mean(dim=(-2, -1))
        return pooled if pre_logits else self.head(pooled)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, final-normed features ``(B, 3, H, W) -> (B, C_last)``."""
        x, _, _ = self._run(x)
        return x.mean(dim=(1, 2))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-stage maps for dense tasks: a list of ``(B, C_i, H_i, W_i)``
        (output of each stage's blocks, before its patch merging; no norm)."""
        _, stages, _ = self._run(x)
        return [s.permute(0, 3, 1, 2) for s in stages]

    def forward_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the attention probabilities of every block.

        Returns:
            ``(logits (B, num_classes), attentions)`` where ``attentions[k]``
            is ``(B, num_windows, num_heads, N, N)`` for block k (counted over
            all stages), N = window*window of that block at this input size;
            windows are those of the cyclically shifted map for SW-MSA blocks.
        """
        feats, _, attns = self._run(x, return_attn=True)
        return self.head(feats.mean(dim=(1, 2))), attns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, num_classes)`` (or ``(B, C)`` without a head)."""
        x, _, _ = self._run(x)
        return self.head(x.mean(dim=(1, 2)))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh ``Linear(C, num_classes)`` (0: no head)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            init_weights_trunc_normal(self.head)
