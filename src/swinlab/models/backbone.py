"""The backbone API of every model family, following timm's conventions
(``timm/models/_features.py``: ``feature_take_indices``, ``FeatureInfo``,
``FeatureGetterNet``; ``swin_transformer.py`` / ``vision_transformer.py``:
``forward_intermediates``, ``prune_intermediate_layers``,
``set_grad_checkpointing``, ``get_classifier``, ``reset_classifier``), so
that detectron2 / MMDetection / torchvision-detection code written for timm
backbones plugs in.

* :class:`BackboneMixin`: what every family shares -- gradient checkpointing
  per block (``torch.utils.checkpoint``, non-reentrant: the blocks return
  tensors), ``get_classifier``, ``forward_attention``.
* :class:`StagedBackboneMixin`: the hierarchical (Swin) families -- V1,
  Swin-S3, and any model with the same structure (``patch_embed``,
  ``layers`` whose stages have ``blocks`` and an optional ``downsample`` at
  their END as in the official checkpoints, ``norm``, ``head``): the stage
  loop, ``forward`` / ``forward_features`` / ``forward_head``,
  ``forward_intermediates``, ``feature_info``, ``group_matcher``,
  ``reset_classifier``. A Swin family class inherits it (before
  ``nn.Module``) and provides ``_embed``.
* :class:`FeatureBackbone`: what ``create_model(name, features_only=True)``
  returns -- the list of maps at ``out_indices`` and a :class:`FeatureInfo`.

Stage outputs of the Swin families are the maps after each stage's blocks,
*before* its patch merging (timm's stage i merges first and then runs its
blocks, so its ``layers.i`` gives the same map); ``feature_info`` names
the module whose output it is: ``layers.i.blocks`` (timm: ``layers.i``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import init_weights, record_attention

__all__ = [
    "OUTPUT_FORMATS",
    "feature_take_indices",
    "to_output_fmt",
    "FeatureInfo",
    "BackboneMixin",
    "StagedBackboneMixin",
    "FeatureBackbone",
]

#: map layouts the backbone API gives: channels first / channels last (and
#: ``NLC`` tokens for ViT).
OUTPUT_FORMATS = ("NCHW", "NHWC")


def feature_take_indices(num_features: int, indices: int | Sequence[int] | None = None) -> tuple[list[int], int]:
    """Absolute indices of the features to take, and the largest (timm's
    ``feature_take_indices``).

    Args:
        num_features: features (stages, blocks) there are.
        indices: None: all; an int n: the last n; a sequence: those indices
            (negative ones count from the end).

    Returns:
        ``(take_indices, max_index)``.

    Raises:
        ValueError: n not in ``[1, num_features]``, or an index out of range.
    """
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ValueError(f"indices={indices} (the last n) must be in 1..{num_features}")
        take = list(range(num_features - indices, num_features))
    else:
        take = []
        for i in indices:
            idx = num_features + int(i) if int(i) < 0 else int(i)
            if not 0 <= idx < num_features:
                raise ValueError(f"feature index {i} is out of range for {num_features} features "
                                 f"(0..{num_features - 1}, or negative from the end)")
            take.append(idx)
        if not take:
            raise ValueError("indices is an empty sequence; give at least one feature index")
    return take, max(take)


def check_output_fmt(output_fmt: str, accepted: Sequence[str] = OUTPUT_FORMATS) -> str:
    """``output_fmt`` upper-cased, if it is one of ``accepted``.

    Raises:
        ValueError: any other value (the message names the accepted ones).
    """
    fmt = str(output_fmt).upper()
    if fmt not in accepted:
        raise ValueError(f"output_fmt={output_fmt!r} is not one of {list(accepted)}")
    return fmt


def to_output_fmt(x: torch.Tensor, output_fmt: str) -> torch.Tensor:
    """A channels-last map ``(B, H, W, C)`` in ``output_fmt``: itself for
    ``"NHWC"``, ``(B, C, H, W)`` (contiguous) for ``"NCHW"``."""
    return x.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else x


class FeatureInfo:
    """Per-level description of a backbone's maps (timm's ``FeatureInfo``).

    Args:
        info: one dict per level the model has: ``num_chs`` (channels),
            ``reduction`` (input pixels per map pixel, per side) and
            ``module`` (the module whose output the map is).
        out_indices: the levels a feature backbone returns.

    The accessors (``channels``, ``reduction``, ``module_name``,
    ``get_dicts``) answer for ``out_indices`` when ``idx`` is None, else for
    the level(s) ``idx``; ``info[i]`` and ``len(info)`` index all levels.
    """

    def __init__(self, info: Sequence[dict[str, Any]], out_indices: Sequence[int]) -> None:
        self.info = [dict(d, index=d.get("index", i)) for i, d in enumerate(copy.deepcopy(list(info)))]
        self.out_indices = tuple(int(i) for i in out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        """``key`` of each returned level (``idx`` None), of level ``idx``, or of each of ``idx``."""
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def get_dicts(self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None) -> Any:
        """The info dicts (restricted to ``keys``) of the returned levels, or of ``idx``."""
        def pick(i: int) -> dict[str, Any]:
            return dict(self.info[i]) if keys is None else {k: self.info[i][k] for k in keys}
        if isinstance(idx, int):
            return pick(idx)
        return [pick(i) for i in (self.out_indices if idx is None else idx)]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        """Channels of the returned levels (or of ``idx``)."""
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        """Output stride [input pixels per map pixel] of the returned levels (or of ``idx``)."""
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        """Module names of the returned levels (or of ``idx``)."""
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.get_dicts(keys=('num_chs', 'reduction', 'module'))})"


class BackboneMixin:
    """What the backbone API of every family shares (mix in before ``nn.Module``).

    ``grad_checkpointing`` (off; :meth:`set_grad_checkpointing`): in
    training, every block runs under ``torch.utils.checkpoint`` (non-
    reentrant, random state preserved, so dropout and stochastic depth draw
    the same in the recomputation): only block inputs are kept for backward,
    each block's activations are recomputed there (timm's
    ``checkpoint_seq``; Chen et al. 2016, "Training Deep Nets with Sublinear
    Memory Cost"). Gradients equal those without, to float rounding. Not
    applied without autograd, nor while tracing / scripting.
    """

    grad_checkpointing: bool = False
    #: layout of the maps of ``create_model(..., features_only=True)`` by default (timm's).
    features_output_fmt: str = "NCHW"

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch gradient checkpointing of every block on or off (timm's method)."""
        self.grad_checkpointing = bool(enable)

    def _checkpointing(self) -> bool:
        return self.grad_checkpointing and torch.is_grad_enabled() \
            and not (torch.jit.is_tracing() or torch.jit.is_scripting())

    def _run_blocks(self, blocks: Iterable[nn.Module], x: torch.Tensor) -> torch.Tensor:
        """``x`` through ``blocks`` in turn, each under ``torch.utils.checkpoint``
        while gradient checkpointing is on and autograd records."""
        if self._checkpointing():
            for block in blocks:
                x = checkpoint(block, x, use_reentrant=False)
            return x
        if isinstance(blocks, nn.Sequential):
            return blocks(x)  # one module call: hooks on the container run
        for block in blocks:
            x = block(x)
        return x

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``nn.Identity`` without a head)."""
        return self.head  # type: ignore[attr-defined]

    def forward_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the attention probabilities of every block, in call
        order (through :func:`~.layers.record_attention`).

        Returns:
            ``(logits (B, num_classes), attentions)``. Swin: ``attentions[k]``
            is ``(B, num_windows, num_heads, N, N)`` for block k (counted over
            all stages), N = window*window of that block at this input size;
            windows are those of the cyclically shifted map for SW-MSA
            blocks. ViT: ``(B, num_heads, T, T)`` per block (T tokens).
        """
        with record_attention(self) as attns:  # type: ignore[arg-type]
            logits = self(x)  # type: ignore[operator]
        return logits, attns


class StagedBackboneMixin(BackboneMixin):
    """Backbone API and forward of the hierarchical (Swin) families.

    The class mixing it in has ``patch_embed``, ``layers`` (an indexable
    sequence of stages, each with ``blocks`` -- iterable, each a tensor in
    and out, ``(B, H, W, C)`` -- and ``downsample`` (a module or None) run
    after them), ``norm`` (a module or None), ``head``, ``embed_dim``,
    ``patch_size``, ``num_features``, ``depths``, ``num_classes``, and
    ``_embed(x)``: ``(B, 3, H, W) -> (B, H/p, W/p, C)`` tokens before the
    first stage (the default here: ``patch_embed`` then ``pos_drop`` when it
    has one). ``global_pool``: ``"avg"`` (mean over the map, the official
    head) or ``""`` (none: the head is applied at every position).
    """

    global_pool: str = "avg"
    features_output_fmt = "NHWC"  # timm's Swin features_only maps are channels last

    # --------------------------------------------------------------- the forward
    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # type: ignore[attr-defined]
        drop = getattr(self, "pos_drop", None)
        return drop(x) if drop is not None else x

    def _run_stage(self, layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One stage, its blocks and its merging called in turn (the stage's
        own forward is called by :meth:`_features` when no block is
        checkpointed): ``(its blocks' output, the map after its patch
        merging)``, both channels last."""
        feat = self._run_blocks(layer.blocks, x)
        downsample = getattr(layer, "downsample", None)
        return feat, (downsample(feat) if downsample is not None else feat)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, h, w, C_last)``, final-normed (channels last)."""
        x = self._embed(x)
        checkpointing = self._checkpointing()
        for layer in self.layers:  # type: ignore[attr-defined]
            x = self._run_stage(layer, x)[1] if checkpointing else layer(x)
        return self.norm(x) if self.norm is not None else x  # type: ignore[attr-defined]

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, h, w, C)`` -> ``(B, C)`` (``"avg"``) or unchanged (``""``)."""
        return x.mean(dim=(1, 2)) if self.global_pool == "avg" else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Final normed feature map: ``(B, 3, H, W) -> (B, C_last, H/32', W/32')``
        (``'``: sizes rounded up at every padding)."""
        return self._features(x).permute(0, 3, 1, 2)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool and classify the map of :meth:`forward_features`: ``(B, C, h, w)
        -> (B, num_classes)`` (``(B, C)`` with ``pre_logits`` or no head);
        with ``global_pool=""`` unpooled, channels last ``(B, h, w, ...)``."""
        pooled = self._pool(features.permute(0, 2, 3, 1))
        return pooled if pre_logits else self.head(pooled)  # type: ignore[attr-defined]

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Alias of ``forward_head(forward_features(x), pre_logits=True)``:
        pooled, final-normed features ``(B, 3, H, W) -> (B, C_last)``."""
        return self._pool(self._features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, num_classes)`` (or ``(B, C)`` without a head)."""
        return self.head(self._pool(self._features(x)))  # type: ignore[attr-defined]

    # --------------------------------------------------------------- backbone API
    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """One dict per stage (timm's ``model.feature_info``): ``num_chs``
        ``embed_dim * 2**i``, ``reduction`` ``patch_size * 2**i`` [pixels],
        ``module`` ``layers.i.blocks`` (the stage's map before its merging)."""
        p, c = int(self.patch_size), int(self.embed_dim)  # type: ignore[attr-defined]
        return [dict(num_chs=c * 2**i, reduction=p * 2**i, module=f"layers.{i}.blocks")
                for i in range(len(self.layers))]  # type: ignore[attr-defined]

    @property
    def default_out_indices(self) -> tuple[int, ...]:
        """Levels ``features_only`` returns by default: every stage (timm's)."""
        return tuple(range(len(self.layers)))  # type: ignore[attr-defined]

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage maps (timm's ``forward_intermediates``).

        Args:
            x: images ``(B, in_chans, H, W)``.
            indices: stages to return: None all, an int n the last n, or a
                sequence of indices (negative from the end).
            norm: apply the final norm to the last stage's map when it is
                taken (the only stage with a norm after it, as timm).
            stop_early: stop after the last stage taken.
            output_fmt: ``"NCHW"`` ``(B, C_i, H_i, W_i)`` or ``"NHWC"``.
            intermediates_only: return the list only.

        Returns:
            the maps of the stages taken, in order (stage i: ``C * 2**i``
            channels, ``ceil(H / (p * 2**i))`` rows ...), and unless
            ``intermediates_only`` first the final normed map ``(B, h, w,
            C_last)`` -- channels last, as timm's.

        Raises:
            ValueError: bad ``indices`` or ``output_fmt``.
        """
        fmt = check_output_fmt(output_fmt)
        num_stages = len(self.layers)  # type: ignore[attr-defined]
        take, last = feature_take_indices(num_stages, indices)
        x = self._embed(x)
        out = []
        for i, layer in enumerate(self.layers):  # type: ignore[attr-defined]
            if stop_early and i > last:
                break
            feat, x = self._run_stage(layer, x)
            if i in take:
                use_norm = norm and i == num_stages - 1 and self.norm is not None  # type: ignore[attr-defined]
                out.append(to_output_fmt(self.norm(feat) if use_norm else feat, fmt))  # type: ignore[attr-defined]
        if intermediates_only:
            return out
        return (self.norm(x) if self.norm is not None else x), out  # type: ignore[attr-defined]

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last of ``indices`` (and the final norm /
        the head) that a feature backbone does not run (timm's method).

        Returns:
            the absolute indices taken (valid for the pruned model).

        Raises:
            ValueError: bad ``indices``.
        """
        take, last = feature_take_indices(len(self.layers), indices)  # type: ignore[attr-defined]
        self.layers = self.layers[: last + 1]  # type: ignore[attr-defined]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take

    def group_matcher(self) -> list[tuple[str, int]]:
        """Layer-wise lr decay groups (timm's ``group_matcher``, SimMIM's
        ``get_swin_layer``): ``(parameter name prefix, layer id)`` pairs, the
        first matching prefix wins; a name matching none belongs to the last
        layer (final norm, head). Embeddings 0, block k counted over all
        stages k + 1, the patch merging after stage i the id of that stage's
        last block; ``num_lr_layers = sum(depths) + 2``. (timm returns regex
        dicts; the ids here are what ``swinlab.training.optim`` uses.)"""
        groups = [("patch_embed.", 0), ("absolute_pos_embed", 0)]
        start = 0
        for i, layer in enumerate(self.layers):  # type: ignore[attr-defined]
            n = len(layer.blocks)
            groups += [(f"layers.{i}.blocks.{j}.", start + j + 1) for j in range(n)]
            groups.append((f"layers.{i}.downsample.", start + n))
            start += n
        return groups

    def num_lr_layers(self) -> int:
        """Layer ids of :meth:`group_matcher`: embedding, one per block, the head."""
        return sum(len(layer.blocks) for layer in self.layers) + 2  # type: ignore[attr-defined]

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head by a fresh ``Linear(num_features, num_classes)``
        (0: none), initialised as the model was (``init``), and set the
        pooling: ``"avg"``, ``""`` (none) or None (keep; timm's signature).

        Raises:
            ValueError: another ``global_pool``, or ``num_classes < 0``.
        """
        if global_pool is not None and global_pool not in ("avg", ""):
            raise ValueError(f"global_pool={global_pool!r}: a Swin model pools 'avg' or '' (none)")
        if int(num_classes) < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if global_pool is not None:
            self.global_pool = global_pool
        self.num_classes = int(num_classes)
        dim = int(self.num_features)  # type: ignore[attr-defined]
        self.head = nn.Linear(dim, self.num_classes) if self.num_classes > 0 else nn.Identity()
        if self.num_classes > 0:
            init_weights(self.head, getattr(self, "init", "official"))


class FeatureBackbone(nn.Module):
    """A model as a feature backbone (timm's ``FeatureGetterNet``): ``forward``
    returns the list of maps at ``out_indices``, from the model's
    ``forward_intermediates``; the model is pruned of the stages / blocks,
    the norm and the head it does not need.

    Args:
        model: a model with the backbone API (any swinlab family); kept as
            ``self.model`` (parameters are named ``model.<its name>``).
        out_indices: levels to return (None: the model's
            ``default_out_indices``: every stage of a Swin, the last 3
            blocks of a ViT, as timm); an int n: the last n.
        output_fmt: ``"NHWC"`` or ``"NCHW"`` (None: the family's
            ``features_output_fmt``: NHWC for Swin, NCHW for ViT, as timm).
        norm: apply the final norm where the family does (then it is kept).

    ``forward(x)``: ``(B, in_chans, H, W)`` -> ``[map_i]``, map i
    ``(B, feature_info.channels()[i], H / r_i, W / r_i)`` in NCHW (r_i:
    ``feature_info.reduction()[i]``, sizes rounded up), or its NHWC form.
    ``feature_info``: a :class:`FeatureInfo` of the levels returned.

    Raises:
        TypeError: the model has no backbone API. ValueError: bad
            ``out_indices`` or ``output_fmt``.
    """

    def __init__(self, model: nn.Module, out_indices: int | Sequence[int] | None = None,
                 output_fmt: str | None = None, norm: bool = False) -> None:
        super().__init__()
        if not callable(getattr(model, "forward_intermediates", None)):
            raise TypeError(f"{type(model).__name__} has no forward_intermediates(); it cannot be a feature backbone")
        self.output_fmt = check_output_fmt(output_fmt or model.features_output_fmt)
        indices = model.default_out_indices if out_indices is None else out_indices
        take = model.prune_intermediate_layers(indices, prune_norm=not norm)
        self.model = model
        self.out_indices = tuple(take)
        self.norm = bool(norm)
        self.feature_info = FeatureInfo(model.feature_info, take)
        for attr in ("model_name", "model_kwargs"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))
        self.num_classes = 0

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Gradient checkpointing of the model's blocks (see :class:`BackboneMixin`)."""
        self.model.set_grad_checkpointing(enable)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images ``(B, 3, H, W)`` -> one map per level of ``out_indices``, shaped as
        ``feature_info`` says (``(B, C_i, H / r_i, W / r_i)`` for NCHW, ``(B, H / r_i, W / r_i, C_i)``
        for NHWC; timm's ``FeatureGetterNet``)."""
        return self.model.forward_intermediates(x, indices=self.out_indices, norm=self.norm,
                                                output_fmt=self.output_fmt, intermediates_only=True)
