"""Training checkpoints: what ``last.pt`` / ``best.pt`` hold, and the RNG states.

A checkpoint is a plain dict (tensors, numbers, strings, lists and dicts
only: it loads with ``torch.load(weights_only=True)``) written by
:func:`swinlab.io.checkpoint.save_checkpoint` (atomic, with a content
digest). Keys::

    model, model_name, model_kwargs, class_names, classes, aug_config, config,
    optimizer, scheduler, scaler, ema,
    rng            one capture_rng_state() dict per rank, in rank order
    world_size     processes that trained (resume needs the same number)
    epoch          epochs completed
    batch          micro-batches done in epoch ``epoch + 1`` (0 at an epoch boundary)
    step           optimizer steps done
    epoch_sums     [loss_sum, correct, seen] of the unfinished epoch, per rank
    best_top1, best_epoch, history (the epoch records), budget, swinlab_version

``batch > 0`` marks a state saved inside an epoch (Ctrl-C, SIGTERM): resume
continues with the next batch of that epoch, exactly.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError

__all__ = ["capture_rng_state", "restore_rng_state", "TRAINING_KEYS"]

#: keys a checkpoint must hold to be resumed.
TRAINING_KEYS = ("model", "model_name", "optimizer", "scheduler", "rng", "epoch", "batch", "step")


def capture_rng_state() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and python RNG states, as tensors and lists."""
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
        raise CheckpointError(f"malformed RNG state in checkpoint: {e}") from None
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
