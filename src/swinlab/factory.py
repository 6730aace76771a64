"""``create_model``: build a registered model and load pretrained weights.

The one place where the model registry (:mod:`swinlab.models`, data only)
meets the weight loaders (:mod:`swinlab.weights`), as timm's ``_builder``
does; neither of the two imports the other's builder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from .errors import UsageError
from .models.backbone import FeatureBackbone
from .models.registry import build_model
from .weights.loading import load_pretrained

__all__ = ["create_model"]


def create_model(
    name: str,
    num_classes: int | None = None,
    img_size: int | tuple[int, int] | None = None,
    drop_path_rate: float | None = None,
    pretrained: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    output_fmt: str | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model, optionally with pretrained weights.

    Args:
        name: a name from :func:`swinlab.list_models`.
        num_classes: classes of the head (0: no head, the model returns pooled
            features ``(B, C)``); default: the configuration's.
        img_size: default input size [pixels]; default: the configuration's.
        drop_path_rate: stochastic depth rate; default: the configuration's.
        pretrained: weights to load: a file, a folder (Hugging Face layout, a
            ``save_pretrained`` folder or a ``swinlab train`` run folder), a
            URL, a Hub id, ``"official"`` / ``"hf"`` (the entry's release), or
            an in-memory state dict; loaded by
            :func:`swinlab.weights.load_pretrained` (layouts converted, head
            and position tables adapted).
        features_only: return the model as a feature backbone
            (:class:`~swinlab.models.backbone.FeatureBackbone`, timm's
            ``features_only``): its forward gives the list of maps at
            ``out_indices``, its ``feature_info`` their channels, reductions
            and module names. Weights are loaded before it is pruned.
        out_indices: levels of the backbone (None: every stage of a Swin,
            the last 3 blocks of a ViT; an int n: the last n; negative
            indices count from the end). Only with ``features_only``.
        output_fmt: layout of the backbone's maps, ``"NHWC"`` or ``"NCHW"``
            (None: timm's, NHWC for Swin, NCHW for ViT). Only with
            ``features_only``.
        **overrides: any other constructor argument of the model class.

    Returns:
        the model in training mode; with ``pretrained``, its
        ``pretrained_report`` attribute holds the
        :class:`~swinlab.weights.LoadReport`.

    Raises:
        UnknownModelError: unknown name. UsageError: an unknown override,
            ``out_indices`` / ``output_fmt`` without ``features_only``, or bad
            ``out_indices`` / ``output_fmt``.
        InputNotFoundError / InvalidInputError / DownloadError: weights that
            cannot be found, read or fitted (see ``load_pretrained``).
    """
    if not features_only and (out_indices is not None or output_fmt is not None):
        raise UsageError(f"create_model({name!r}): out_indices / output_fmt need features_only=True")
    model = build_model(name, num_classes=num_classes, img_size=img_size, drop_path_rate=drop_path_rate,
                        **overrides)
    if pretrained is not None and pretrained != "":
        model.pretrained_report = load_pretrained(model, pretrained)  # type: ignore[attr-defined]
    if features_only:
        report = getattr(model, "pretrained_report", None)
        try:
            model = FeatureBackbone(model, out_indices=out_indices, output_fmt=output_fmt)
        except (ValueError, TypeError) as err:
            raise UsageError(f"create_model({name!r}, features_only=True): {err}") from None
        if report is not None:
            model.pretrained_report = report  # type: ignore[attr-defined]
    return model
