"""Building blocks shared by the Swin and ViT models in their plain form:
stochastic depth, the transformer MLP and the initialisers.

Follows timm's ``layers`` (``DropPath``, ``Mlp``) and the official Swin code
(stochastic depth from "Deep Networks with Stochastic Depth", Huang et al.
2016). The speed paths that replace some of these in a model (cheaper
dropout, stochastic depth that skips dropped samples, a blocked MLP) live
in :mod:`.fast` and are chosen per model by its
:class:`~.fast.SpeedOptions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = [
    "INITS",
    "AttentionModule",
    "record_attention",
    "DropPath",
    "Mlp",
    "init_weights",
    "init_weights_trunc_normal",
    "to_2tuple",
    "is_building_graph",
]

#: initialisation schemes accepted by :func:`init_weights`.
INITS = ("official", "keras")


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


class AttentionModule(nn.Module):
    """Base of the attention modules whose probabilities
    :func:`record_attention` collects. A subclass calls :meth:`record` with
    its probabilities and takes its explicit path while :attr:`recording`."""

    recorded: list[torch.Tensor] | None = None  # set per instance by record_attention only

    @property
    def recording(self) -> bool:
        """True inside :func:`record_attention` of a model holding this module."""
        return self.recorded is not None

    def record(self, probs: torch.Tensor) -> None:
        """Append ``probs`` to the recording list (no-op outside a recording)."""
        if self.recorded is not None:
            self.recorded.append(probs)


@contextmanager
def record_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the attention probabilities of every :class:`AttentionModule`
    of ``model`` during the forward passes inside the ``with`` block (the
    ``forward_intermediates`` idea of timm, without changing what any module
    returns).

    Yields:
        a list that fills with one tensor per attention call, in call order
        (Swin: ``(B, nW, heads, N, N)`` per block; ViT: ``(B, heads, T, T)``).
        While recording the attention takes its explicit path (the fused
        kernel gives no probabilities), and stochastic depth does not skip
        samples. Under ``torch.utils.checkpoint`` a recomputed block records
        again.

    Example::

        with record_attention(model) as attns:
            logits = model(images)
    """
    modules = [m for m in model.modules() if isinstance(m, AttentionModule)]
    recorded: list[torch.Tensor] = []
    for m in modules:
        m.recorded = recorded
    try:
        yield recorded
    finally:
        for m in modules:
            m.recorded = None


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


class Mlp(nn.Module):
    """Two-layer transformer MLP: ``fc1 -> act -> dropout -> fc2 -> dropout``
    (official Swin ``Mlp``, timm ``layers.Mlp``).

    Args:
        in_features, hidden_features, out_features (default ``in_features``): widths.
        act_layer: the activation's class (``nn.GELU``).
        drop: dropout probability. drop_layer: the dropout's class
            (``nn.Dropout``; a model's :func:`~.fast.make_dropout` for the
            fast one).

    Parameter names ``fc1``/``fc2`` are those of the official Swin and timm
    code. Shapes: ``(..., in_features) -> (..., out_features)``.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None,
                 act_layer: Callable[[], nn.Module] = nn.GELU, drop: float = 0.0,
                 drop_layer: Callable[[float], nn.Module] = nn.Dropout) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)
        self.drop = drop_layer(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


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
