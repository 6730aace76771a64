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
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be found, read or used."""


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)`` atomically: temp file in the same directory,
    flush + fsync, ``os.replace``, fsync of the directory.

    On any error the temp file is removed and ``path`` is untouched.

    Returns:
        the final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some file systems do not allow fsync on directories
        pass
    return path


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


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with a clear error.

    Raises:
        CheckpointError: unreadable file, or not a swinlab training checkpoint
            (no ``model`` / ``epoch`` keys).
    """
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {e}") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "epoch" not in ckpt:
        keys = sorted(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{str(path)!r} is not a swinlab training checkpoint (expected keys 'model', 'epoch'; got {keys})"
        )
    return ckpt
