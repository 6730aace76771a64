"""swinlab: hierarchical vision transformers (Swin, Swin-S3, ViT) for image
classification -- models, weights, training, inference and a CLI."""

from .models import SwinTransformer, VisionTransformer, create_model, list_models

__version__ = "0.1.0"
__all__ = ["SwinTransformer", "VisionTransformer", "create_model", "list_models", "__version__"]
