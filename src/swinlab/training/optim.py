"""AdamW with the official Swin parameter groups, lr scaling and layer decay.

Follows the official Swin training code (microsoft/Swin-Transformer
``optimizer.py``: ``set_weight_decay`` -- no weight decay for 1-d parameters
(norms), biases, the names of ``model.no_weight_decay()`` and the keywords of
``model.no_weight_decay_keywords()``; ``main.py``: linear lr scaling by
``global batch / 512``) and BEiT / SimMIM fine-tuning for layer-wise lr decay
(Bao et al. 2021).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

__all__ = [
    "no_weight_decay_names",
    "param_groups",
    "layer_id_for",
    "num_lr_layers",
    "scaled_lr",
    "build_optimizer",
    "freeze_for_linear_probe",
]

# Always excluded by name: relative position bias tables, position embeddings, tokens.
_DEFAULT_SKIP_KEYWORDS = ("relative_position_bias_table", "absolute_pos_embed", "pos_embed", "cls_token")


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Names of the trainable parameters that get no weight decay.

    A parameter is excluded when it is 1-d or 0-d (norm weights, biases), its
    name ends with ``.bias``, it is named by ``model.no_weight_decay()`` or
    contains a keyword of ``model.no_weight_decay_keywords()`` (official Swin),
    or it contains one of ``relative_position_bias_table``,
    ``absolute_pos_embed``, ``pos_embed``, ``cls_token``.
    """
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    keywords = set(getattr(model, "no_weight_decay_keywords", lambda: set())()) | set(_DEFAULT_SKIP_KEYWORDS)
    out = set()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or name in skip or any(k in name for k in keywords):
            out.add(name)
    return out


def num_lr_layers(model: nn.Module) -> int:
    """Number of layer ids of the model's own grouping (its ``num_lr_layers()``:
    embedding + blocks + head); 1 for a model without ``group_matcher``."""
    return int(model.num_lr_layers()) if callable(getattr(model, "group_matcher", None)) else 1


def layer_id_for(name: str, model: nn.Module, groups: list[tuple[str, int]] | None = None) -> int:
    """Layer id of parameter ``name`` for layer-wise lr decay, from the
    model's own ``group_matcher()`` (timm's idea): the id of the first
    ``(prefix, id)`` whose prefix starts ``name``, else the last layer
    (final norm, head). Swin: embeddings 0, block k (counted over all
    stages) k + 1, the patch merging after stage i the id of that stage's
    last block, the rest ``sum(depths) + 1`` (SimMIM ``get_swin_layer``).
    ViT: embeddings and tokens 0, block i i + 1, the rest ``depth + 1``.
    A model without ``group_matcher``: 0. ``groups``: the matcher's list,
    when the caller has it already.
    """
    if not callable(getattr(model, "group_matcher", None)):
        return 0
    for prefix, lid in groups if groups is not None else model.group_matcher():
        if name.startswith(prefix):
            return int(lid)
    return num_lr_layers(model) - 1


def freeze_for_linear_probe(model: nn.Module) -> list[str]:
    """Freeze every parameter except the classifier ``head`` (linear probing).

    Returns:
        the names left trainable.

    Raises:
        ValueError: the model has no ``head`` parameters.
    """
    trainable = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("head."))
        if p.requires_grad:
            trainable.append(name)
    if not trainable:
        raise ConfigError("linear_probe: the model has no 'head' parameters to train (num_classes=0?)")
    return trainable


def param_groups(
    model: nn.Module, weight_decay: float, layer_decay: float | None = None, decay_all: bool = False
) -> list[dict[str, Any]]:
    """Parameter groups: decay / no-decay, split per layer when ``layer_decay``.

    Each group has ``params``, ``weight_decay``, ``lr_scale`` (1.0, or
    ``layer_decay ** (num_layers - 1 - layer_id)``) and ``param_names`` (the
    parameter names, for inspection). Frozen parameters are left out. With
    ``decay_all`` every parameter is decayed (Keras ``AdamW``, reference 000).
    """
    skip = set() if decay_all else no_weight_decay_names(model)
    n_layers = num_lr_layers(model)
    matcher = model.group_matcher() if layer_decay is not None and n_layers > 1 else None
    groups: dict[tuple[str, int], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = name in skip
        lid = layer_id_for(name, model, matcher) if layer_decay is not None else 0
        key = ("no_decay" if no_decay else "decay", lid)
        if key not in groups:
            scale = layer_decay ** (n_layers - 1 - lid) if layer_decay is not None else 1.0
            groups[key] = {
                "params": [],
                "param_names": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr_scale": float(scale),
            }
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[1], k[0]))]


def scaled_lr(lr: float, global_batch: int, reference_batch: int | None) -> float:
    """Official linear scaling: ``lr * global_batch / reference_batch`` (unchanged when
    ``reference_batch`` is None)."""
    return lr if reference_batch is None else lr * global_batch / reference_batch


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] | list[float] = (0.9, 0.999),
    eps: float = 1e-8,
    layer_decay: float | None = None,
    decay_all: bool = False,
) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019) over :func:`param_groups` (official
    Swin: betas (0.9, 0.999), eps 1e-8; Keras: eps 1e-7, ``decay_all``).

    Raises:
        ValueError: no trainable parameters.
    """
    groups = param_groups(model, weight_decay, layer_decay, decay_all)
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
