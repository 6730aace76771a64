"""Model registry: named configurations as data, and :func:`build_model`.

A :class:`ModelSpec` says which class to build with which arguments, and
its :class:`PretrainedCfg` (timm's ``pretrained_cfg``) what its released
weights need: the release URL, the Hugging Face Hub id, the input size,
the number of classes and their names, and the preprocessing the weights
were trained with (mean, std, crop ratio, interpolation) -- the one place
for these constants. :func:`pretrained_cfg` resolves it for a built model;
``create_model``, inference's ``ModelInfo``, export metadata, serving and
``save_pretrained`` all read it from there. Loading weights is not
done here: :func:`swinlab.create_model` (``swinlab.factory``) builds with
:func:`build_model` and loads with :mod:`swinlab.weights`.

Names follow the official releases (``swin_tiny_patch4_window7_224``, the
``_in22k`` forms of the published collection, ``swin_s3_*_224``,
``vit_*_patch16_224``) plus the compact configurations of the reference
documents (:mod:`.zoo`).
"""

from __future__ import annotations

import difflib
import fnmatch
import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..constants import DEFAULT_CROP_RATIO, DEFAULT_INTERPOLATION, IMAGENET_MEAN, IMAGENET_STD
from ..errors import UnknownModelError, UsageError

__all__ = [
    "PretrainedCfg",
    "ModelSpec",
    "pretrained_cfg",
    "register_model",
    "unregister_model",
    "build_model",
    "list_models",
    "get_model_spec",
    "suggest_models",
    "check_overrides",
    "default_preprocessing",
]


@dataclass(frozen=True)
class PretrainedCfg:
    """What a model's released weights need (timm's ``pretrained_cfg``).

    Attributes:
        url: official release file (``pretrained="official"``).
        hf_hub_id: Hugging Face Hub id (``pretrained="hf"``).
        input_size: ``(H, W)`` [pixels] the weights were trained at (the
            registry fills it from the entry's ``img_size``; a resolved
            config has the built model's).
        num_classes: outputs of the head (filled from the entry / the model).
        class_names: one name per output, or None (``class_0``, ...).
        mean, std: RGB normalisation of [0, 1] pixels the weights expect.
        crop_ratio: evaluation resize-then-centre-crop ratio; None: the
            official rule (0.875 below 384 px, 1.0 from 384 px on;
            microsoft/Swin-Transformer ``data/build.py``).
        interpolation: evaluation resize mode.
    """

    url: str | None = None
    hf_hub_id: str | None = None
    input_size: tuple[int, int] | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_ratio: float | None = None
    interpolation: str = DEFAULT_INTERPOLATION

    def eval_crop_ratio(self) -> float:
        """``crop_ratio``, or the official rule for ``input_size`` when None."""
        if self.crop_ratio is not None:
            return float(self.crop_ratio)
        return 1.0 if self.input_size is not None and min(self.input_size) >= 384 else DEFAULT_CROP_RATIO

    def preprocessing(self) -> dict[str, Any]:
        """The evaluation preprocessing dict of ``save_pretrained`` / export
        metadata: ``mean``, ``std``, ``input_size`` ``[H, W]``, ``crop_ratio``
        (resolved), ``interpolation``."""
        size = self.input_size or (224, 224)
        return {"mean": list(self.mean), "std": list(self.std), "input_size": [int(size[0]), int(size[1])],
                "crop_ratio": self.eval_crop_ratio(), "interpolation": self.interpolation}


@dataclass(frozen=True)
class ModelSpec:
    """A named configuration: the class to build, its keyword arguments and
    the pretrained configuration of its released weights.

    Attributes:
        name: registry name. builder: the model class (or any callable).
        kwargs: constructor arguments. description: one line for listings.
        pretrained_cfg: what the released weights need (:class:`PretrainedCfg`).
        num_params: parameters at the default arguments (None: not recorded).
    """

    name: str
    builder: Callable[..., nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    pretrained_cfg: PretrainedCfg = field(default_factory=PretrainedCfg)
    num_params: int | None = None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry.

    Raises:
        ValueError: if the name is taken.
    """
    if spec.name in _REGISTRY:
        raise ValueError(f"model name {spec.name!r} is already registered")
    spec = dataclasses.replace(spec, pretrained_cfg=_with_model(spec.pretrained_cfg, spec.kwargs.get("img_size"),
                                                                spec.kwargs.get("num_classes")))
    _REGISTRY[spec.name] = spec
    return spec


def unregister_model(name: str) -> ModelSpec:
    """Remove ``name`` from the registry (a test's or plug-in's own entry).

    Returns:
        the removed spec.

    Raises:
        UnknownModelError: not registered.
    """
    spec = get_model_spec(name)
    del _REGISTRY[name]
    return spec


def _with_model(cfg: PretrainedCfg, img_size: Any, num_classes: Any) -> PretrainedCfg:
    """``cfg`` with ``input_size`` / ``num_classes`` filled from a model's arguments where it has none."""
    size = cfg.input_size
    if img_size is not None:
        size = (int(img_size), int(img_size)) if isinstance(img_size, int) else tuple(int(v) for v in img_size)
    return dataclasses.replace(cfg, input_size=size,
                               num_classes=int(num_classes) if num_classes is not None else cfg.num_classes)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered names matching a shell-style ``pattern`` (``"swin_s3*"``)."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def suggest_models(name: str, n: int = 3) -> list[str]:
    """Registered names closest to a mistyped ``name``, best first.

    A name scores by the better of its similarity to ``name`` as a whole and
    of its first ``len(name)`` characters to ``name`` (so ``swin_tinyy``
    ranks ``swin_tiny_patch4_window7_224`` above ``swin_s3_tiny_224``), ties
    broken by whole-name similarity; scores below 0.6 are left out.
    """
    query = name.lower()

    def score(candidate: str) -> tuple[float, float]:
        whole = difflib.SequenceMatcher(None, query, candidate).ratio()
        prefix = difflib.SequenceMatcher(None, query, candidate[: len(query)]).ratio()
        return max(whole, prefix), whole

    ranked = sorted(_REGISTRY, key=lambda c: (score(c), -len(c)), reverse=True)
    return [c for c in ranked if score(c)[0] >= 0.6][:n]


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``.

    Raises:
        UnknownModelError: unknown name (a ``ValueError``; the message lists
            the closest names).
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        close = suggest_models(str(name))
        hint = f"; did you mean {', '.join(close)}?" if close else "; 'swinlab models' lists them"
        raise UnknownModelError(f"unknown model name {name!r}{hint}") from None


def _accepted_kwargs(builder: Callable[..., nn.Module]) -> set[str]:
    """Keyword arguments ``builder`` takes; a class whose ``__init__`` passes
    ``**kwargs`` on (a variant such as ``KerasSwinTransformer``) also takes
    its base classes' (down the MRO until an ``__init__`` without them)."""
    accepted: set[str] = set()
    for fn in ([c.__init__ for c in builder.__mro__ if "__init__" in vars(c)] if inspect.isclass(builder)
               else [builder]):
        params = inspect.signature(fn).parameters.values()
        accepted |= {p.name for p in params if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                          inspect.Parameter.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return accepted - {"self"}


def check_overrides(name: str, overrides: dict[str, Any]) -> None:
    """Check that every key of ``overrides`` is a constructor argument of model ``name``.

    Raises:
        UnknownModelError: unknown name.
        UsageError: an argument the model class does not take (with the list of those it takes).
    """
    accepted = _accepted_kwargs(get_model_spec(name).builder)
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        close = {k: difflib.get_close_matches(k, accepted, n=1) for k in unknown}
        hints = "".join(f"; did you mean {c[0]!r} for {k!r}?" for k, c in close.items() if c)
        raise UsageError(f"unknown override(s) {unknown} for model {name!r}; accepted: {sorted(accepted)}{hints}")


def build_model(
    name: str,
    num_classes: int | None = None,
    img_size: int | tuple[int, int] | None = None,
    drop_path_rate: float | None = None,
    speed: Any = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model with fresh weights.

    Args:
        name: a name from :func:`list_models`.
        num_classes: classes of the head (0: no head, the model returns pooled
            features ``(B, C)``); default: the configuration's.
        img_size: default input size [pixels]; default: the configuration's.
        drop_path_rate: stochastic depth rate; default: the configuration's.
        speed: the model's :class:`~swinlab.models.fast.SpeedOptions`
            (default: the measured speed paths; not recorded in
            ``model_kwargs``: it changes how the model computes, not what).
        **overrides: any other constructor argument of the model class
            (``window_size``, ``embed_dim``, ``init``, ...).

    Returns:
        the model, in training mode, with ``model_name`` and ``model_kwargs``
        (the full constructor arguments but ``speed``) recorded on it.

    Raises:
        UnknownModelError: unknown name. UsageError: an override the class
            does not take, or arguments the class rejects (its message).
    """
    spec = get_model_spec(name)
    for key, value in (("num_classes", num_classes), ("img_size", img_size), ("drop_path_rate", drop_path_rate)):
        if value is not None:
            overrides[key] = value
    check_overrides(name, overrides)
    kwargs = {**spec.kwargs, **overrides}
    try:
        model = spec.builder(**kwargs, **({"speed": speed} if speed is not None else {}))
    except (ValueError, TypeError) as err:
        changed = {k: kwargs[k] for k in overrides}
        raise UsageError(f"cannot build model {name!r} with {changed}: {err}") from None
    model.model_name = name  # type: ignore[attr-defined]
    model.model_kwargs = kwargs  # type: ignore[attr-defined]
    return model


def pretrained_cfg(model: nn.Module | str) -> PretrainedCfg:
    """The :class:`PretrainedCfg` of a registry name, or of a built model
    resolved for it: its registry entry's, with ``input_size`` the
    ``img_size`` the model was built with and ``num_classes`` its head's. A
    model outside the registry gets the ImageNet defaults.

    Raises:
        UnknownModelError: an unknown name (a model is never refused).
    """
    if isinstance(model, str):
        return get_model_spec(model).pretrained_cfg
    spec = _REGISTRY.get(getattr(model, "model_name", None) or "")
    cfg = spec.pretrained_cfg if spec is not None else PretrainedCfg()
    size = (getattr(model, "model_kwargs", None) or {}).get("img_size") or getattr(model, "img_size", None)
    return _with_model(cfg, size or cfg.input_size or 224, getattr(model, "num_classes", None))


def default_preprocessing(model: nn.Module) -> dict[str, Any]:
    """Evaluation preprocessing of ``model``: ``pretrained_cfg(model).preprocessing()``.

    Keys: ``mean``, ``std`` (RGB, inputs in [0, 1]); ``input_size`` ``[H, W]``
    in pixels: the ``img_size`` the model was built with; ``crop_ratio``:
    the entry's, else 0.875 below 384 px and 1.0 from 384 px on (resize the
    short side to ``size / crop_ratio``, centre crop ``size``);
    ``interpolation``.
    """
    return pretrained_cfg(model).preprocessing()
