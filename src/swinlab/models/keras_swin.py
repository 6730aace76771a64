"""Reference 000's Swin: the Keras CIFAR-100 Swin example as written
(keras.io ``examples/vision/swin_transformers.py``), as a small variant of
:class:`~.swin.SwinTransformer` so that the core class keeps the official
architecture's arguments only.

Its quirks, all here:

* ``branch_drop_rate``: element-wise dropout on each residual branch output
  (the example's ``drop_path`` layer is ``layers.Dropout``), in
  :class:`KerasSwinBlock`;
* ``mlp_repeat``: the block applies its MLP that many times (``x =
  self.mlp(x)`` appears twice in the example's ``call``: 2);
* ``merge_norm=False``: patch merging without a norm; ``final_norm=False``:
  average pooling without a final norm;
* ``pos_drop_rate``: dropout after the patch embedding (the example: none,
  while ``drop_rate`` is 0.03 elsewhere);
* ``init="keras"``: Keras' initialisers (a core option, see
  :func:`~.layers.init_weights`).

Parameter names are the core's (``layers.0.blocks.0.attn.qkv.weight``, ...);
patch merging without a norm and no final norm simply have no ``norm`` keys.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from .fast import make_dropout
from .swin import PatchMerging, SwinTransformer, SwinTransformerBlock

__all__ = ["KerasSwinBlock", "KerasSwinTransformer"]


class KerasSwinBlock(SwinTransformerBlock):
    """:class:`~.swin.SwinTransformerBlock` with the Keras example's element-wise
    dropout on each branch output (``branch_drop``) and its MLP applied
    ``mlp_repeat`` times. Input and output ``(B, H, W, C)``."""

    def __init__(self, *args, branch_drop: float = 0.0, mlp_repeat: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mlp_repeat = int(mlp_repeat)
        self.branch_drop = make_dropout(branch_drop, self.speed)

    def attention_branch(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout of the (S)W-MSA branch: ``(B, H, W, C) -> (B, H, W, C)``."""
        return self.branch_drop(super().attention_branch(x))

    def mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout of the MLP (``mlp_repeat`` times) of ``LN(x)``: ``(B, H, W, C) -> (B, H, W, C)``."""
        x = self.norm2(x)
        for _ in range(self.mlp_repeat):
            x = self.mlp(x)
        return self.branch_drop(x)


def _merging_without_norm(dim: int, norm_layer=None) -> PatchMerging:
    return PatchMerging(dim, norm_layer=None)


class KerasSwinTransformer(SwinTransformer):
    """Reference 000's Swin (see the module docstring). The Keras options
    default to off, so the class alone changes nothing; the registry entry
    ``swin_keras_cifar100_patch2_window2_32`` gives the example's values.

    Args:
        **kwargs: the official ones, as :class:`~.swin.SwinTransformer`
            (but ``block_layer`` / ``downsample_layer``, which this class sets).
        branch_drop_rate: element-wise dropout on each residual branch output.
        mlp_repeat: times each block applies its MLP.
        merge_norm: a norm inside patch merging. final_norm: a norm before pooling.
        pos_drop_rate: dropout after the patch embedding (None: ``drop_rate``).

    ``forward``: ``(B, in_chans, H, W) -> (B, num_classes)``.

    Raises:
        ValueError: as :class:`~.swin.SwinTransformer`.
    """

    def __init__(
        self,
        *,
        branch_drop_rate: float = 0.0,
        mlp_repeat: int = 1,
        merge_norm: bool = True,
        final_norm: bool = True,
        pos_drop_rate: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            block_layer=partial(KerasSwinBlock, branch_drop=branch_drop_rate, mlp_repeat=mlp_repeat),
            downsample_layer=PatchMerging if merge_norm else _merging_without_norm, **kwargs,
        )
        drop_rate = kwargs.get("drop_rate", 0.0)
        if not final_norm:
            self.norm = None  # type: ignore[assignment]
        self.pos_drop = make_dropout(drop_rate if pos_drop_rate is None else pos_drop_rate, self.speed)
