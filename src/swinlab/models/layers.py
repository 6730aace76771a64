"""Small building blocks shared by the Swin and ViT models.

Follows timm's ``layers`` (``DropPath``, ``Mlp``) and the official Swin code
(``drop_path`` from the Deep Networks with Stochastic Depth paper, Huang et
al. 2016).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DropPath", "Mlp", "to_2tuple", "init_weights_trunc_normal"]


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


class Mlp(nn.Module):
    """Two-layer transformer MLP: ``fc1 -> GELU -> dropout -> fc2 -> dropout``.

    Parameter names ``fc1``/``fc2`` are those of the official Swin and timm code.

    Shapes: ``(..., in_features) -> (..., out_features)``.
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
