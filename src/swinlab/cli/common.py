"""Pieces shared by the command modules: argument types and the model
SOURCE arguments of evaluate / predict / features (and export / serve)."""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "fraction", "add_source_args"]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return v


def add_source_args(p: argparse.ArgumentParser) -> None:
    """SOURCE plus ``--device`` and ``--ema``."""
    p.add_argument("source", metavar="SOURCE",
                   help="run folder (its best.pt, else last.pt), training checkpoint (.pt), save_pretrained folder "
                        "(config.json + model.safetensors) or a model name")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")

