"""Weights: checkpoint layouts (official / timm / Hugging Face / torchvision), loading,
adaptation to other sizes and saving."""

from .adapt import adapt_state_dict
from .layouts import (
    LAYOUTS,
    detect_layout,
    hf_config_from_swin,
    swin_kwargs_from_hf_config,
    swinlab_to_hf,
    swinv2_kwargs_from_hf_config,
    to_swinlab,
    unwrap_checkpoint,
)
from .loading import LoadReport, load_pretrained, read_checkpoint, resolve_source
from .pretrained import from_pretrained, save_pretrained

__all__ = [
    "LAYOUTS",
    "LoadReport",
    "adapt_state_dict",
    "detect_layout",
    "from_pretrained",
    "hf_config_from_swin",
    "load_pretrained",
    "read_checkpoint",
    "resolve_source",
    "save_pretrained",
    "swin_kwargs_from_hf_config",
    "swinlab_to_hf",
    "swinv2_kwargs_from_hf_config",
    "to_swinlab",
    "unwrap_checkpoint",
]
