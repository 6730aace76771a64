"""Models: pure PyTorch modules -- Swin V1 / Swin-S3 (:mod:`.swin`), Swin V2
(:mod:`.swin_v2`), reference
000's Keras variant (:mod:`.keras_swin`), ViT (:mod:`.vit`), the plain shared
layers (:mod:`.layers`), the speed paths and their per-model options
(:mod:`.fast`, :class:`SpeedOptions`) -- and the data-only registry
(:mod:`.registry`, entries in :mod:`.zoo`); the backbone API of every
family (``forward_intermediates``, ``features_only``, gradient
checkpointing: :mod:`.backbone`). Building with pretrained weights
is :func:`swinlab.create_model` (``swinlab.factory``)."""

from . import zoo  # noqa: F401  (registers the configurations)
from .backbone import FeatureBackbone, FeatureInfo
from .fast import SpeedOptions
from .keras_swin import KerasSwinTransformer
from .layers import record_attention
from .registry import (
    ModelSpec,
    PretrainedCfg,
    build_model,
    default_preprocessing,
    get_model_spec,
    list_models,
    pretrained_cfg,
    register_model,
    suggest_models,
)
from .swin import SwinTransformer
from .swin_v2 import SwinTransformerV2
from .vit import VisionTransformer

__all__ = [
    "FeatureBackbone",
    "FeatureInfo",
    "KerasSwinTransformer",
    "ModelSpec",
    "PretrainedCfg",
    "SpeedOptions",
    "SwinTransformer",
    "SwinTransformerV2",
    "VisionTransformer",
    "build_model",
    "default_preprocessing",
    "get_model_spec",
    "list_models",
    "pretrained_cfg",
    "record_attention",
    "register_model",
    "suggest_models",
]
