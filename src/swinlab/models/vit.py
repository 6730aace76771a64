"""Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words",
arXiv:2010.11929), with the parameter names of timm's ``vision_transformer.py``
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.i.{norm1,
attn.{qkv,proj},norm2,mlp.{fc1,fc2}}``, ``norm``, ``head``).

Also covers the compact Keras ViT of reference 004 (resize to 72, patch 6,
dim 64, 4 heads of key_dim 64, 8 layers, MLP [128, 64] with GELU after both
layers, no class token, flattened tokens into a [2048, 1024] MLP head) through
the options ``attn_head_dim``, ``mlp_hidden_dims``, ``global_pool='flatten'``,
``head_hidden_dims`` and ``resize_to``.

Speed paths (fused attention, cheaper dropout, the residual step) are chosen
by the model's :class:`~.fast.SpeedOptions` (``speed``), as for Swin; the
attention probabilities come out through :func:`~.layers.record_attention`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import fast
from .backbone import BackboneMixin, check_output_fmt, feature_take_indices
from .fast import SpeedOptions, make_dropout, resolve_speed
from .layers import AttentionModule, DropPath, init_weights_trunc_normal, to_2tuple

__all__ = ["VisionTransformer", "Attention", "Block"]


class Attention(AttentionModule):
    """Multi-head self attention (paper Eq. 2; Vaswani et al. 2017).

    ``head_dim`` may differ from ``dim // num_heads`` (Keras
    ``MultiHeadAttention(key_dim=...)``). ``(B, N, dim) -> (B, N, dim)``;
    inside :func:`~.layers.record_attention` the probabilities
    ``(B, heads, N, N)`` are recorded. With ``speed.fused_attn`` the
    explicit ``softmax(q k^T / sqrt(d)) v`` is replaced by
    ``F.scaled_dot_product_attention`` when nothing is recorded and no
    attention dropout is active (see :mod:`.fast`).
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int | None = None, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, speed: SpeedOptions | None = None) -> None:
        super().__init__()
        self.speed = speed = resolve_speed(speed)
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
            head_dim = dim // num_heads
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        inner = num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.attn_drop = make_dropout(attn_drop, speed)
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = make_dropout(proj_drop, speed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        dropping = self.attn_drop.training and self.attn_drop.p > 0
        if self.speed.fused_attn and not (self.recording or dropping):
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            probs = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            self.record(probs)
            out = self.attn_drop(probs) @ v
        out = out.transpose(1, 2).reshape(B, N, -1)
        return self.proj_drop(self.proj(out))


class MlpStack(nn.Module):
    """Linear layers each followed by GELU and dropout (reference 004's
    ``mlp``), or the standard ``fc1 -> GELU -> fc2`` when ``gelu_last`` is off.
    Layers are named ``fc1``, ``fc2``, ... ``(..., in) -> (..., dims[-1])``."""

    def __init__(self, in_features: int, dims: Sequence[int], drop: float = 0.0, gelu_last: bool = True,
                 speed: SpeedOptions | None = None) -> None:
        super().__init__()
        self.num = len(dims)
        self.gelu_last = gelu_last
        prev = in_features
        for i, d in enumerate(dims):
            self.add_module(f"fc{i + 1}", nn.Linear(prev, d))
            prev = d
        self.act = nn.GELU()
        self.drop = make_dropout(drop, resolve_speed(speed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num):
            x = getattr(self, f"fc{i + 1}")(x)
            if i < self.num - 1 or self.gelu_last:
                x = self.act(x)
            x = self.drop(x)
        return x


class Block(nn.Module):
    """Pre-norm transformer encoder block (paper Eq. 2-3). ``(B, N, D) -> (B, N, D)``."""

    def __init__(self, dim: int, num_heads: int, mlp_dims: Sequence[int], head_dim: int | None = None,
                 qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 norm_eps: float = 1e-6, mlp_gelu_last: bool = False, speed: SpeedOptions | None = None) -> None:
        super().__init__()
        self.speed = speed = resolve_speed(speed)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, head_dim, qkv_bias, attn_drop, drop, speed)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MlpStack(dim, mlp_dims, drop, gelu_last=mlp_gelu_last, speed=speed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.residual(x, lambda t: self.attn(self.norm1(t)), skip_dropped=not self.attn.recording)
        return self.residual(x, lambda t: self.mlp(self.norm2(t)))

    def residual(self, x: torch.Tensor, branch, skip_dropped: bool = True) -> torch.Tensor:
        """``x + DropPath(branch(x))``; with the residual speed paths on,
        :func:`~.fast.drop_path_residual` (same result)."""
        if self.speed.skip_dropped_samples or self.speed.in_place_residual:
            return fast.drop_path_residual(x, branch, self.drop_path, self.speed, skip_dropped)
        return x + self.drop_path(branch(x))


class VisionTransformer(BackboneMixin, nn.Module):
    """Vision Transformer classifier and backbone.

    Backbone API as timm's ``VisionTransformer``: ``forward_intermediates``
    (block outputs as maps ``(B, D, H/p, W/p)`` or tokens), ``feature_info``
    (``blocks.i``, ``embed_dim`` channels, reduction ``patch_size``),
    ``prune_intermediate_layers``, ``set_grad_checkpointing`` (every block
    under ``torch.utils.checkpoint``, :class:`~.backbone.BackboneMixin`),
    ``group_matcher``, ``get_classifier`` / ``reset_classifier``.

    Args:
        img_size: default input size; the position embedding is laid out for
            it and bicubic-resized at run time for another grid.
        patch_size, in_chans, num_classes (0: no head), embed_dim, depth,
        num_heads, mlp_ratio, qkv_bias: the usual ViT options.
        class_token: prepend a learnable class token.
        global_pool: ``'token'`` (class token), ``'avg'`` (mean of patch
            tokens) or ``'flatten'`` (all tokens flattened, reference 004).
        attn_head_dim: per-head width when not ``embed_dim // num_heads``.
        mlp_hidden_dims: the block MLP's layers (default ``[D*mlp_ratio, D]``);
            with it, GELU follows every layer (Keras reference 004).
        head_hidden_dims: hidden layers of an MLP head (GELU + dropout each).
        head_drop_rate: dropout before the head's hidden layers.
        resize_to: resize inputs (bilinear) to this size first (reference 004).
        drop_rate, attn_drop_rate, drop_path_rate: regularisation.
        norm_eps: LayerNorm epsilon (1e-6 as in the official ViT).
        speed: the model's :class:`~.fast.SpeedOptions` (default: the
            measured paths on; ``SpeedOptions.plain()``: none).

    ``forward``: ``(B, in_chans, H, W) -> (B, num_classes)``.

    Raises:
        ValueError: bad arguments, wrong channel count or a size not divisible
            by the patch size.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        class_token: bool = True,
        global_pool: str = "token",
        attn_head_dim: int | None = None,
        mlp_hidden_dims: Sequence[int] | None = None,
        head_hidden_dims: Sequence[int] = (),
        head_drop_rate: float = 0.0,
        resize_to: int | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        speed: SpeedOptions | None = None,
    ) -> None:
        super().__init__()
        self.speed = speed = resolve_speed(speed)
        if global_pool not in ("token", "avg", "flatten"):
            raise ValueError(f"global_pool must be 'token', 'avg' or 'flatten', got {global_pool!r}")
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs class_token=True")
        self.img_size = to_2tuple(resize_to if resize_to else img_size)
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.global_pool = global_pool
        self.resize_to = resize_to
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.num_prefix_tokens = 1 if class_token else 0

        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + self.num_prefix_tokens, embed_dim))
        self.pos_drop = make_dropout(drop_rate, speed)
        if mlp_hidden_dims is None:
            mlp_dims, gelu_last = (int(embed_dim * mlp_ratio), embed_dim), False
        else:
            mlp_dims, gelu_last = tuple(mlp_hidden_dims), True
            if mlp_dims[-1] != embed_dim:
                raise ValueError(f"mlp_hidden_dims must end with embed_dim={embed_dim}, got {mlp_dims}")
        dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.Sequential(*(
            Block(embed_dim, num_heads, mlp_dims, attn_head_dim, qkv_bias, drop_rate, attn_drop_rate, dpr[i],
                  norm_eps, gelu_last, speed)
            for i in range(depth)
        ))
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        feat = embed_dim * num_patches if global_pool == "flatten" else embed_dim
        self.head_drop = make_dropout(head_drop_rate, speed)
        self.head_mlp = MlpStack(feat, head_hidden_dims, head_drop_rate, speed=speed) if head_hidden_dims else None
        self.num_features = head_hidden_dims[-1] if head_hidden_dims else feat
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        self.apply(init_weights_trunc_normal)

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay (position embedding, token)."""
        return {"pos_embed", "cls_token"}

    def _pos_embed(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        pos = self.pos_embed
        prefix, patches = pos[:, : self.num_prefix_tokens], pos[:, self.num_prefix_tokens :]
        if grid != self.grid_size:
            if self.global_pool == "flatten":
                raise ValueError(
                    f"this model flattens a {self.grid_size} token grid into its head; got a {grid} grid "
                    f"(input must be {self.img_size[0]}x{self.img_size[1]} or use resize_to)"
                )
            gh, gw = self.grid_size
            patches = patches.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
            patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
            patches = patches.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + torch.cat([prefix, patches], dim=1)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected images of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        if self.resize_to:
            x = F.interpolate(x, size=self.img_size, mode="bilinear", align_corners=False)
        H, W = x.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"input size {H}x{W} is not divisible by the patch size {self.patch_size}")
        x = self.patch_embed.proj(x)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        return self.pos_drop(self._pos_embed(x, grid))

    def group_matcher(self) -> list[tuple[str, int]]:
        """Layer-wise lr decay groups (timm's ``group_matcher``, BEiT):
        ``(parameter name prefix, layer id)``, first match wins, the rest
        (final norm, head) the last layer. Embeddings and tokens 0, block i
        ``i + 1``; ``num_lr_layers = depth + 2``."""
        groups = [("patch_embed.", 0), ("pos_embed", 0), ("cls_token", 0)]
        return groups + [(f"blocks.{i}.", i + 1) for i in range(len(self.blocks))]

    def num_lr_layers(self) -> int:
        """Layer ids of :meth:`group_matcher`: embedding, one per block, the head."""
        return len(self.blocks) + 2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normed tokens ``(B, 3, H, W) -> (B, prefix + N, D)``."""
        return self.norm(self._run_blocks(self.blocks, self._tokens(x)))

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool (per ``global_pool``) and classify: ``(B, T, D) -> (B, num_classes)``
        (``global_pool=""``: every token, ``(B, T, num_classes)``)."""
        if self.global_pool == "token":
            x = tokens[:, 0]
        elif self.global_pool == "avg":
            x = tokens[:, self.num_prefix_tokens :].mean(dim=1)
        elif self.global_pool == "flatten":
            x = tokens[:, self.num_prefix_tokens :].flatten(1)
        else:  # "" (reset_classifier): no pooling, the head sees every token
            x = tokens
        x = self.head_drop(x)
        if self.head_mlp is not None:
            x = self.head_mlp(x)
        return x if pre_logits else self.head(x)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before the final linear layer, ``(B, num_features)``."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, num_classes)``."""
        return self.forward_head(self.forward_features(x))

    # ------------------------------------------------------------------ backbone API
    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """One dict per block (timm's): ``num_chs`` ``embed_dim``, ``reduction``
        ``patch_size`` [input pixels per token, of the resized input when
        ``resize_to`` is set], ``module`` ``blocks.i``."""
        return [dict(num_chs=self.embed_dim, reduction=self.patch_size, module=f"blocks.{i}")
                for i in range(len(self.blocks))]

    @property
    def default_out_indices(self) -> int:
        """Levels ``features_only`` returns by default: the last 3 blocks (timm's)."""
        return min(3, len(self.blocks))

    def _grid(self, x: torch.Tensor) -> tuple[int, int]:
        """Token grid of images ``x`` ``(B, C, H, W)``."""
        H, W = self.img_size if self.resize_to else x.shape[-2:]
        return H // self.patch_size, W // self.patch_size

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Any] | tuple[torch.Tensor, list[Any]]:
        """Block outputs (timm's ``VisionTransformer.forward_intermediates``).

        Args:
            x: images ``(B, in_chans, H, W)``.
            indices: blocks to return: None all, an int n the last n, or a
                sequence of indices (negative from the end).
            return_prefix_tokens: each entry becomes ``(map, prefix tokens
                (B, num_prefix_tokens, D))``.
            norm: apply the final norm to every block output taken.
            stop_early: stop after the last block taken.
            output_fmt: ``"NCHW"`` ``(B, D, H/p, W/p)``, ``"NHWC"``, or
                ``"NLC"`` (patch tokens ``(B, N, D)``).
            intermediates_only: return the list only.

        Returns:
            the block outputs without the prefix tokens, and unless
            ``intermediates_only`` first the final normed tokens
            ``(B, prefix + N, D)`` (:meth:`forward_features`).

        Raises:
            ValueError: bad ``indices`` or ``output_fmt``, bad input.
        """
        fmt = check_output_fmt(output_fmt, ("NCHW", "NHWC", "NLC"))
        take, last = feature_take_indices(len(self.blocks), indices)
        B, (gh, gw) = x.shape[0], self._grid(x)
        x = self._tokens(x)
        out = []
        for i, block in enumerate(self.blocks):
            if stop_early and i > last:
                break
            x = self._run_blocks((block,), x)
            if i in take:
                out.append(self.norm(x) if norm else x)
        prefix = [y[:, : self.num_prefix_tokens] for y in out]
        out = [y[:, self.num_prefix_tokens :] for y in out]
        if fmt != "NLC":
            out = [y.reshape(B, gh, gw, -1) for y in out]
            out = [y.permute(0, 3, 1, 2).contiguous() for y in out] if fmt == "NCHW" else out
        if return_prefix_tokens:
            out = list(zip(out, prefix))
        return out if intermediates_only else (self.norm(x), out)

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the blocks after the last of ``indices`` (and the final norm /
        the head) that a feature backbone does not run (timm's method).

        Returns:
            the absolute indices taken. Raises: ValueError: bad ``indices``.
        """
        take, last = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: last + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            if self.head_mlp is not None:
                self.num_features, self.head_mlp = self.head_mlp.fc1.in_features, None
            self.reset_classifier(0, "" if self.global_pool != "flatten" else None)
        return take

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the final linear layer by a fresh one with ``num_classes``
        outputs (0: none) and set the pooling: ``"token"``, ``"avg"``, ``""``
        (none) or None (keep); timm's signature. A ``"flatten"`` model keeps
        its pooling (its head's width depends on it).

        Raises:
            ValueError: another ``global_pool``, ``"token"`` without a class
                token, a change to or from ``"flatten"``, ``num_classes < 0``.
        """
        if global_pool is not None and global_pool != self.global_pool:
            if "flatten" in (global_pool, self.global_pool):
                raise ValueError(f"global_pool {self.global_pool!r} -> {global_pool!r}: the 'flatten' pooling "
                                 "fixes the head's input width; build the model with the pooling instead")
            if global_pool not in ("token", "avg", ""):
                raise ValueError(f"global_pool={global_pool!r} is not one of 'token', 'avg', ''")
            if global_pool == "token" and self.cls_token is None:
                raise ValueError("global_pool='token' needs a class token (class_token=True)")
            self.global_pool = global_pool
        if int(num_classes) < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = int(num_classes)
        self.head = nn.Linear(self.num_features, self.num_classes) if self.num_classes > 0 else nn.Identity()
        if self.num_classes > 0:
            init_weights_trunc_normal(self.head)
