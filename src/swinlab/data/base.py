"""Common base of the image-classification data sets: items, corrupt-file handling, cache."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .decode import CorruptImageError

__all__ = ["ImageDataset", "check_num_classes", "default_num_threads"]

Transform = Callable[[torch.Tensor], torch.Tensor]


def default_num_threads() -> int:
    """Threads for parallel decoding: the CPUs this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def check_num_classes(num_classes: object, available: int) -> None:
    """Validate a ``num_classes`` subset request against the ``available`` classes.

    Raises:
        ValueError: ``num_classes`` is not an int (bools rejected) in ``[1, available]``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 1 <= num_classes <= available:
        raise ValueError(f"num_classes must be an int in [1, {available}], got {num_classes!r}")


class ImageDataset(Dataset):
    """Base class: items are ``(image, label)``.

    ``image`` is a uint8 tensor ``(3, H, W)`` RGB (or whatever ``transform`` returns
    when given one), ``label`` an ``int`` in ``0 .. num_classes-1``.

    Attributes:
        classes: class ids in label order (e.g. WordNet ids).
        class_names: human-readable class names in label order.
        targets: label of every item.
        image_names: name of every item's file (archive member path or file path).
        skipped: number of corrupt files skipped so far (``skip_corrupt=True``) in this
            process; exact after :meth:`verify` or ``cache=True``.
        source_path: the archive / folder the items come from.

    Subclasses fill the attributes and implement :meth:`_load`.  With
    ``skip_corrupt=False`` a corrupt file raises :class:`CorruptImageError`
    (``ValueError``) naming it; with ``True`` it is skipped with a warning: at access time the
    next readable item is returned in its place, and :meth:`verify` / :meth:`build_cache`
    drop corrupt files from the index.
    """

    classes: list[str]
    class_names: list[str]
    targets: list[int]
    image_names: list[str]
    source_path: str

    def __init__(self, *, transform: Transform | None = None, skip_corrupt: bool = False) -> None:
        self.transform = transform
        self.skip_corrupt = bool(skip_corrupt)
        self.skipped = 0
        self._bad: set[int] = set()
        self._cache: torch.Tensor | None = None
        self._cache_extra: dict[int, torch.Tensor] = {}

    # -- subclass hook -------------------------------------------------------------------
    def _load(self, index: int) -> torch.Tensor:
        """Decode item ``index`` -> uint8 ``(3, H, W)``; raise :class:`CorruptImageError`."""
        raise NotImplementedError

    # -- public --------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def samples(self) -> list[tuple[str, int]]:
        """``(image_name, label)`` pairs, like torchvision's ``ImageFolder.samples``."""
        return list(zip(self.image_names, self.targets))

    @property
    def cached(self) -> bool:
        """True when every image is held decoded in memory."""
        return self._cache is not None

    def __len__(self) -> int:
        return len(self.targets)

    def get_image(self, index: int) -> torch.Tensor:
        """Decoded uint8 image ``(3, H, W)`` of item ``index`` (no transform, no skipping).

        Raises:
            IndexError: index out of range.
            CorruptImageError: the file cannot be decoded.
        """
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a data set of {n} items")
        index %= n
        if self._cache is not None:
            extra = self._cache_extra.get(index)
            return extra if extra is not None else self._cache[index]
        return self._load(index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        try:
            image = self.get_image(index)
        except CorruptImageError as exc:
            if not self.skip_corrupt:
                raise
            image, index = self._substitute(index % len(self), exc)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]

    def _substitute(self, index: int, exc: Exception) -> tuple[torch.Tensor, int]:
        self._note_bad(index, exc)
        n = len(self)
        for step in range(1, n):
            j = (index + step) % n
            if j in self._bad:
                continue
            try:
                return self.get_image(j), j
            except CorruptImageError as exc2:
                self._note_bad(j, exc2)
        raise CorruptImageError(f"every image of the data set in {self.source_path} is unreadable") from exc

    def _note_bad(self, index: int, exc: Exception) -> None:
        if index not in self._bad:
            self._bad.add(index)
            self.skipped += 1
            warnings.warn(f"skipping corrupt image: {exc}", RuntimeWarning, stacklevel=3)

    def _decode_all(
        self, num_threads: int | None, progress: bool, store: Callable[[int, torch.Tensor], None] | None
    ) -> list[tuple[int, Exception]]:
        """Decode every item with a thread pool; return the corrupt ``(index, error)`` list."""
        threads = num_threads or default_num_threads()
        bad: list[tuple[int, Exception]] = []
        n = len(self)
        chunk = 256

        def work(start: int) -> list[tuple[int, Exception]]:
            errs = []
            for i in range(start, min(start + chunk, n)):
                try:
                    img = self._load(i)
                except CorruptImageError as exc:
                    errs.append((i, exc))
                    continue
                if store is not None:
                    store(i, img)
            return errs

        starts = range(0, n, chunk)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc=f"decoding {os.path.basename(str(self.source_path))}", unit="img")
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for start, errs in zip(starts, pool.map(work, starts)):
                bad.extend(errs)
                if bar is not None:
                    bar.update(min(chunk, n - start))
        if bar is not None:
            bar.close()
        if bad and not self.skip_corrupt:
            raise bad[0][1]
        return bad

    def _drop(self, indices: Sequence[int]) -> None:
        """Remove items from the index (subclasses with more per-item lists extend this)."""
        drop = set(indices)
        keep = [i for i in range(len(self)) if i not in drop]
        self.targets = [self.targets[i] for i in keep]
        self.image_names = [self.image_names[i] for i in keep]
        if self._cache is not None:
            remap = {old: new for new, old in enumerate(keep)}
            self._cache = self._cache[torch.tensor(keep, dtype=torch.long)] if keep else self._cache[:0]
            self._cache_extra = {remap[k]: v for k, v in self._cache_extra.items() if k in remap}
        self._bad = set()

    def _report_dropped(self, bad: list[tuple[int, Exception]]) -> None:
        if not bad:
            return
        self.skipped = len(bad)
        names = ", ".join(f"'{self.image_names[i]}'" for i, _ in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        warnings.warn(
            f"skipped {len(bad)} corrupt image(s) in {self.source_path}: {names}{more}", RuntimeWarning, stacklevel=3
        )
        self._drop([i for i, _ in bad])

    def verify(self, num_threads: int | None = None, progress: bool = False) -> int:
        """Decode every image once (thread pool); drop corrupt ones when ``skip_corrupt``.

        Returns:
            Number of corrupt files found (also in ``.skipped``).

        Raises:
            CorruptImageError: a file is corrupt and ``skip_corrupt`` is False.
        """
        if self._cache is not None:
            return self.skipped
        bad = self._decode_all(num_threads, progress, None)
        self._report_dropped(bad)
        return len(bad)

    def build_cache(self, num_threads: int | None = None, progress: bool = False) -> None:
        """Decode every image once into one uint8 tensor ``(N, 3, H, W)`` held in memory.

        Later epochs index the tensor instead of decoding (Tiny ImageNet train: 100,000 x
        3 x 64 x 64 = 1.2 GB).  Images whose size differs from the first one are kept
        separately.  Decoding runs on ``num_threads`` threads (default: all usable CPUs;
        Pillow releases the GIL while decoding).  Corrupt files are dropped when
        ``skip_corrupt`` (counted in ``.skipped``), else raise.

        Raises:
            CorruptImageError: a file is corrupt and ``skip_corrupt`` is False.
        """
        if self._cache is not None or len(self) == 0:
            return
        first = None
        for i in range(len(self)):
            try:
                first = self._load(i)
                break
            except CorruptImageError:
                if not self.skip_corrupt:
                    raise
        if first is None:
            raise CorruptImageError(f"every image of the data set in {self.source_path} is unreadable")
        cache = torch.empty((len(self), *first.shape), dtype=torch.uint8)
        extra: dict[int, torch.Tensor] = {}

        def store(i: int, img: torch.Tensor) -> None:
            if img.shape == first.shape:
                cache[i] = img
            else:
                extra[i] = img

        bad = self._decode_all(num_threads, progress, store)
        self._cache, self._cache_extra = cache, extra
        self._report_dropped(bad)
