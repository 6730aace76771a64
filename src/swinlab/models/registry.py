"""Model registry: named configurations and :func:`create_model`.

Names follow the official releases (``swin_tiny_patch4_window7_224``, the
``_in22k`` forms of the published collection, ``swin_s3_*_224``,
``vit_*_patch16_224``) plus the compact configurations of the reference
documents (see ``MODEL_NOTES``).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

__all__ = ["ModelSpec", "register_model", "create_model", "list_models", "get_model_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """A named configuration: the class to build and its keyword arguments."""

    name: str
    builder: Callable[..., nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    pretrained_url: str | None = None
    hf_hub_id: str | None = None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry.

    Raises:
        ValueError: if the name is taken.
    """
    if spec.name in _REGISTRY:
        raise ValueError(f"model name {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered names matching a shell-style ``pattern`` (``"swin_s3*"``)."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``.

    Raises:
        ValueError: unknown name (the message lists close matches).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see swinlab.list_models()"
        raise ValueError(f"unknown model name {name!r}{hint}") from None


def _accepted_kwargs(builder: Callable[..., nn.Module]) -> set[str]:
    return {
        p.name
        for p in inspect.signature(builder).parameters.values()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def create_model(
    name: str,
    num_classes: int | None = None,
    img_size: int | tuple[int, int] | None = None,
    drop_path_rate: float | None = None,
    pretrained: str | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`.
        num_classes: classes of the head (0: no head, the model returns pooled
            features ``(B, C)``); default: the configuration's.
        img_size: default input size; default: the configuration's.
        drop_path_rate: stochastic depth rate; default: the configuration's.
        pretrained: weights to load (a file, folder, URL or Hub id), handled
            by :func:`swinlab.weights.load_pretrained` when given.
        **overrides: any other constructor argument of the model class
            (``window_size``, ``embed_dim``, ...).

    Returns:
        the model, in training mode; with ``pretrained``, its
        ``pretrained_report`` attribute holds the load report (what was
        loaded, re-initialised or adapted).

    Raises:
        ValueError: unknown name or an override the model class does not take.
    """
    spec = get_model_spec(name)
    kwargs = dict(spec.kwargs)
    for key, value in (("num_classes", num_classes), ("img_size", img_size), ("drop_path_rate", drop_path_rate)):
        if value is not None:
            overrides[key] = value
    accepted = _accepted_kwargs(spec.builder)
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ValueError(
            f"unknown override(s) {unknown} for model {name!r}; accepted: {sorted(accepted)}"
        )
    kwargs.update(overrides)
    model = spec.builder(**kwargs)
    model.model_name = name  # type: ignore[attr-defined]
    model.model_kwargs = kwargs  # type: ignore[attr-defined]
    if pretrained:
        from ..weights import load_pretrained  # local import: weights depends on models

        model.pretrained_report = load_pretrained(model, pretrained)  # type: ignore[attr-defined]
    return model
