"""Training checkpoints: atomic writes, RNG state capture and resume lookup.

A checkpoint is a plain dict saved with ``torch.save`` that loads with
``torch.load(weights_only=True)`` (tensors, numbers, strings, lists and dicts
only; numpy RNG state stored as lists). Keys::

    model, model_name, model_kwargs, class_names, classes, aug_config, config,
    optimizer, scheduler, scaler, ema, rng {torch, cuda, numpy, python},
    epoch (epochs completed), step (optimizer steps), best_top1, elapsed_s,
    swinlab_version

Writes go to a temporary file in the same directory, are fsync'ed, then
``os.replace``-d over the target (atomic on POSIX), so a crash mid-write
leaves the previous checkpoint intact (as the official Swin code's
``save_checkpoint`` does not; this follows the usual write-rename pattern).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..io.checkpoint import load_checkpoint as io_load_checkpoint
from ..io.checkpoint import save_checkpoint

__all__ = [
    "CheckpointError",
    "atomic_torch_save",
    "capture_rng_state",
    "restore_rng_state",
    "load_checkpoint",
    "resolve_resume_path",
    "LAST",
    "BEST",
]

LAST = "last.pt"
BEST = "best.pt"


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Save a checkpoint dict atomically with its content digest
    (:func:`swinlab.io.checkpoint.save_checkpoint`)."""
    return save_checkpoint(obj, path)


def capture_rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and python RNG states, as tensors and lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [str(kind), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "python": [int(version), [int(v) for v in internal], gauss_next],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore a :func:`capture_rng_state` dict (CUDA states when present and usable).

    Raises:
        CheckpointError: a malformed state.
    """
    try:
        torch.set_rng_state(state["torch"].cpu())
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
        version, internal, gauss_next = state["python"]
        random.setstate((int(version), tuple(int(v) for v in internal), gauss_next))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"malformed RNG state in checkpoint: {e}") from e
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def resolve_resume_path(source: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or a run directory (its ``last.pt``).

    Raises:
        CheckpointError: nothing usable at ``source``.
    """
    p = Path(source)
    if p.is_dir():
        cand = p / LAST
        if not cand.is_file():
            raise CheckpointError(f"--resume {str(source)!r}: run directory has no {LAST}")
        return cand
    if not p.is_file():
        raise CheckpointError(f"--resume {str(source)!r}: no such checkpoint file or run directory")
    return p


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and verify a training checkpoint (keys ``model`` and ``epoch`` required).

    Raises:
        CheckpointError: unreadable, damaged, or not a training checkpoint.
    """
    try:
        return io_load_checkpoint(path, require=("model", "epoch"), what="training checkpoint")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
