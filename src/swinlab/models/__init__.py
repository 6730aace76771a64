"""Models: Swin V1 / Swin-S3 (:mod:`.swin`), ViT (:mod:`.vit`) and the registry."""

from .registry import ModelSpec, create_model, get_model_spec, list_models, register_model
from .swin import SwinTransformer
from . import zoo  # noqa: F401  (registers the Swin configurations)
from .vit import VisionTransformer

__all__ = [
    "ModelSpec",
    "SwinTransformer",
    "VisionTransformer",
    "create_model",
    "get_model_spec",
    "list_models",
    "register_model",
]
