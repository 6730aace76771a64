"""Training: run configuration and recipes (:mod:`.config`), AdamW parameter
groups (:mod:`.optim`), the warmup + cosine schedule (:mod:`.schedule`), the
loop (:mod:`.engine`), checkpoints (:mod:`.checkpoint`), EMA (:mod:`.ema`),
metric logs and curves (:mod:`.logging`, :mod:`.plots`), DDP helpers
(:mod:`.distributed`) and metrics (:mod:`.metrics`)."""

from .config import ConfigError, TrainConfig, apply_overrides, load_config

__all__ = ["ConfigError", "TrainConfig", "apply_overrides", "load_config", "train"]


def __getattr__(name: str):  # lazy: the engine pulls in the data and model packages
    if name == "train":
        from .engine import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
