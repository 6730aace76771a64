"""DataLoader construction with (seed, epoch)-determined shuffling."""

from __future__ import annotations

import random
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

__all__ = ["build_loader", "cached_batches", "epoch_seed", "collate_images"]


def epoch_seed(seed: int, epoch: int) -> int:
    """63-bit shuffling seed from ``(seed, epoch)`` (numpy ``SeedSequence`` mixing, no collisions
    between nearby pairs)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def collate_images(batch: Sequence[tuple[Any, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(image, label)`` items -> ``(images (B, ...), labels int64 (B,))``.

    Raises:
        ValueError: images of different sizes (message suggests ``ResizeUint8``).
    """
    images = [b[0] for b in batch]
    if isinstance(images[0], torch.Tensor):
        shapes = {tuple(im.shape) for im in images}
        if len(shapes) > 1:
            raise ValueError(
                f"cannot batch images of different sizes {sorted(shapes)[:4]}; "
                "pass transform=swinlab.data.ResizeUint8(size) to the data set"
            )
        return torch.stack(images), torch.as_tensor([int(b[1]) for b in batch], dtype=torch.int64)
    return default_collate(batch)


def _worker_init(worker_id: int) -> None:
    # numpy / random seeded from torch's per-worker seed (itself derived from the loader generator)
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """DataLoader yielding ``(images uint8 (B, 3, H, W), labels int64 (B,))``.

    The shuffling order (and worker seeds) come from a ``torch.Generator`` seeded with
    :func:`epoch_seed` ``(seed, epoch)``: the same pair always gives the same order (a resumed
    run sees the same batches), different epochs give different orders.  Build one loader per
    epoch.  Workers reopen archives lazily in their own process.

    Raises:
        ValueError: ``batch_size < 1`` or ``num_workers < 0``.
    """
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if int(num_workers) < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers!r}")
    g = torch.Generator()
    g.manual_seed(epoch_seed(seed, epoch))
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["worker_init_fn"] = _worker_init
        kwargs["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=shuffle,
        num_workers=int(num_workers),
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=g,
        collate_fn=collate_images,
        **kwargs,
    )


def cached_batches(
    images: torch.Tensor, labels: torch.Tensor, order: Sequence[int], batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches ``(images[idx] (B, 3, H, W), labels[idx] (B,))`` for consecutive ``batch_size``
    chunks ``idx`` of ``order``, gathered on the tensors' device.

    The DataLoader-free path for a data set decoded into one tensor
    (:meth:`ImageDataset.cached_tensors`): with the tensors on a GPU each batch is one
    gather there, with no worker processes and no host-to-device copy.  Yields the same
    batches, in the same order, as :func:`build_loader` over ``Subset(dataset, order)``
    with ``shuffle=False``; a last partial chunk is yielded too (trim ``order`` for full
    batches only).

    Raises:
        ValueError: ``batch_size < 1``, or ``images`` and ``labels`` of different lengths.
    """
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    index = torch.as_tensor(list(order), dtype=torch.int64, device=images.device)
    for start in range(0, index.numel(), int(batch_size)):
        idx = index[start : start + int(batch_size)]
        yield images.index_select(0, idx), labels.index_select(0, idx)
