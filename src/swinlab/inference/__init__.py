"""Inference: load a trained model (:func:`load_model`), read images
(:func:`open_image`, :func:`expand_inputs`), predict (:func:`predict`),
extract pooled features (:func:`extract_features`) and draw attention maps
(:func:`attention_maps`; the figure is :func:`swinlab.plots.save_attention_figure`)."""

from .attention import attention_maps, denormalize, windows_to_map
from .features import extract_features, load_features, save_features
from .images import SkippedInput, close_archives, expand_inputs, open_image
from .loading import ModelInfo, eval_transform_for, load_model
from .predict import predict, predict_logits

__all__ = [
    "ModelInfo",
    "SkippedInput",
    "attention_maps",
    "close_archives",
    "denormalize",
    "eval_transform_for",
    "expand_inputs",
    "extract_features",
    "load_features",
    "load_model",
    "open_image",
    "predict",
    "predict_logits",
    "save_features",
    "windows_to_map",
]
