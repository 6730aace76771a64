"""Models: pure PyTorch modules -- Swin V1 / Swin-S3 (:mod:`.swin`), ViT
(:mod:`.vit`), shared layers (:mod:`.layers`) -- and the data-only registry
(:mod:`.registry`, entries in :mod:`.zoo`). Building with pretrained weights
is :func:`swinlab.create_model` (``swinlab.factory``)."""

from . import zoo  # noqa: F401  (registers the configurations)
from .registry import (
    ModelSpec,
    build_model,
    default_preprocessing,
    get_model_spec,
    list_models,
    register_model,
    suggest_models,
)
from .swin import SwinTransformer
from .vit import VisionTransformer

__all__ = [
    "ModelSpec",
    "SwinTransformer",
    "VisionTransformer",
    "build_model",
    "default_preprocessing",
    "get_model_spec",
    "list_models",
    "register_model",
    "suggest_models",
]
