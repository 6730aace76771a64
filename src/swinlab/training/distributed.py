"""torch.distributed helpers for data-parallel training under ``torchrun``.

``torchrun --nproc_per_node N -m swinlab train ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; with ``WORLD_SIZE > 1`` we initialise the default
process group (NCCL on CUDA, Gloo on CPU), wrap the model in
``DistributedDataParallel``, shard every epoch's shuffled order across ranks
(as ``torch.utils.data.DistributedSampler``: pad to a multiple of the world
size, rank r takes positions r, r + W, ...), and log / checkpoint on rank 0
only (official Swin ``main.py`` does the same).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import UsageError

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "epoch_indices",
    "all_reduce_sum",
    "any_rank",
    "gather_objects",
    "barrier",
    "resolve_device",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """True under torchrun with more than one process (``world_size > 1``)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs, checkpoints and evaluates."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"environment variable {name}={raw!r} is not an integer") from None


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``.

    Raises:
        UsageError: an unknown device string, or CUDA asked for but unavailable.
    """
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"device={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device={device!r} but CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the process group when ``WORLD_SIZE > 1`` (torchrun), pick the device.

    Returns:
        the :class:`DistInfo` of this process (world_size 1 without torchrun).

    Raises:
        ValueError: bad environment variables or device.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank)
    if world > 1:
        if not 0 <= rank < world:
            raise UsageError(f"RANK={rank} is outside [0, WORLD_SIZE={world})")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    """Destroy the process group if one was created."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Synchronise all ranks (no-op on one process)."""
    if info.enabled:
        dist.barrier()


def epoch_indices(n: int, info: DistInfo, seed: int, epoch: int) -> list[int]:
    """This rank's dataset indices for ``epoch``, in training order
    (``torch.utils.data.DistributedSampler``'s rule).

    The order is a permutation of ``range(n)`` seeded by ``(seed, epoch)``
    only, so a resumed run sees the same batches; it is padded by wrapping to
    a multiple of ``world_size`` and rank r gets positions ``r::world_size``.
    With one process that is the whole permutation. Consecutive global
    batches of ``world_size * batch`` positions hold the same images as a
    single process's batches of that size.
    """
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    order = torch.randperm(n, generator=g).tolist()
    total = -(-n // info.world_size) * info.world_size
    order += order[: total - n]
    return order[info.rank : total : info.world_size]


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` is true on any rank (every rank gets the same answer)."""
    return all_reduce_sum([float(flag)], info)[0] > 0


def gather_objects(obj: object, info: DistInfo) -> list[object]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (one process: ``[obj]``)."""
    if not info.enabled:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum ``values`` over all ranks (returned unchanged on one process)."""
    if not info.enabled:
        return list(values)
    dev = info.device if info.device.type == "cuda" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()
