"""swinlab: hierarchical vision transformers (Swin, Swin-S3, ViT) for image
classification -- models, weights, training, inference and a CLI.

The names below are imported on first use, so that ``import swinlab`` (and
``swinlab --help``) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

# public name -> module that defines it
_EXPORTS = {
    "create_model": "swinlab.factory",
    "list_models": "swinlab.models.registry",
    "get_model_spec": "swinlab.models.registry",
    "SwinTransformer": "swinlab.models.swin",
    "SwinTransformerV2": "swinlab.models.swin_v2",
    "VisionTransformer": "swinlab.models.vit",
    "SpeedOptions": "swinlab.models.fast",
    "pretrained_cfg": "swinlab.models.registry",
    "save_pretrained": "swinlab.weights.pretrained",
    "from_pretrained": "swinlab.weights.pretrained",
    "load_pretrained": "swinlab.weights.loading",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'swinlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
