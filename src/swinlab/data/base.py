"""Common base of the image-classification data sets: items, corrupt-file handling, cache.

Unreadable files (``skip_corrupt=True``) are dropped from the index *before*
the data set is used -- by :meth:`ImageDataset.verify` (decode every file
once, threaded) or by :meth:`ImageDataset.build_cache` -- so ``len()``, the
loaders and ``evaluate`` count exactly the readable images, and no item ever
stands in for another. The dropped files are listed with their reasons in
``skipped_images``.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from ..errors import CorruptImageError, DataError, InputNotFoundError, InvalidInputError, UsageError
from ..io.progress import bars_shown, progress_bar
from .decode import DATASET_MAX_PIXELS, decode_image
from .images import SkippedInput
from .sources import Source

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
        UsageError: (a ``ValueError``) ``num_classes`` is not an int (bools rejected)
            in ``[1, available]``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 1 <= num_classes <= available:
        raise UsageError(f"num_classes must be an int in [1, {available}], got {num_classes!r}")


class ImageDataset(Dataset):
    """Base class: items are ``(image, label)``.

    ``image`` is a uint8 tensor ``(3, H, W)`` RGB (or whatever ``transform`` returns
    when given one), ``label`` an ``int`` in ``0 .. num_classes-1``.

    Attributes:
        classes: class ids in label order (e.g. WordNet ids).
        class_names: human-readable class names in label order.
        targets: label of every item.
        image_names: name of every item's file (archive member path or file path).
        skipped: number of unreadable files dropped from the index (``skip_corrupt=True``).
        skipped_images: those files, :class:`~swinlab.data.images.SkippedInput`
            ``(index, input, error)`` with the reason of each.
        source_path: the archive / folder the items come from.
        max_pixels: decoded-pixel limit of :func:`~swinlab.data.decode.decode_image`
            (default :data:`~swinlab.data.decode.DATASET_MAX_PIXELS`, Pillow's default).

    Subclasses fill the attributes, implement :meth:`_load` and end their
    ``__init__`` with :meth:`_prepare`.  With ``skip_corrupt=False`` a corrupt
    file raises :class:`CorruptImageError` (``ValueError``) naming it when it is
    read; with ``True`` every file is decoded once at construction
    (:meth:`verify`, or :meth:`build_cache` with ``cache=True``) and the
    unreadable ones are dropped from the index with one warning, so counts are
    exact.  A file that becomes unreadable later still raises: no item is ever
    substituted by another.
    """

    classes: list[str]
    class_names: list[str]
    targets: list[int]
    image_names: list[str]
    source_path: str

    def __init__(
        self,
        *,
        transform: Transform | None = None,
        skip_corrupt: bool = False,
        max_pixels: int | None = DATASET_MAX_PIXELS,
    ) -> None:
        self.transform = transform
        self.skip_corrupt = bool(skip_corrupt)
        self.max_pixels = max_pixels
        self.skipped = 0
        self.skipped_images: list[SkippedInput] = []
        self._verified = False
        self._cache: torch.Tensor | None = None
        self._cache_extra: dict[int, torch.Tensor] = {}

    # -- subclass hooks ------------------------------------------------------------------
    def _load(self, index: int) -> torch.Tensor:
        """Decode item ``index`` -> uint8 ``(3, H, W)``; raise :class:`CorruptImageError`."""
        raise NotImplementedError

    def _decode_member(self, source: Source, name: str) -> torch.Tensor:
        """Read ``name`` from ``source`` (bounded, see :mod:`.sources`) and decode it.

        Raises:
            CorruptImageError: missing, too large, unreadable or undecodable (named).
        """
        try:
            data = source.read(name)
        except InputNotFoundError as exc:
            raise CorruptImageError(f"cannot decode image '{name}' in {self.source_path}: file missing") from exc
        except InvalidInputError as exc:
            raise CorruptImageError(str(exc)) from exc
        return decode_image(data, name, self.source_path, max_pixels=self.max_pixels)

    def _prepare(self, cache: bool, cache_threads: int | None, progress: bool) -> None:
        """End of a subclass ``__init__``: build the cache (``cache``), else verify
        every file when ``skip_corrupt``, so that ``len()`` counts readable files only."""
        if cache:
            self.build_cache(cache_threads, progress=progress)
        elif self.skip_corrupt:
            self.verify(cache_threads, progress=progress)

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

    def cached_tensors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(images uint8 (N, 3, H, W), labels int64 (N,))`` straight from the cache, or None.

        Available when :meth:`build_cache` holds every image in the one tensor (all of the same
        size) and no ``transform`` is set, i.e. when ``self[i]`` is exactly
        ``(images[i], labels[i])``; the trainer then gathers its batches by indexing (on
        its device) instead of running a DataLoader.  The images tensor is the cache itself,
        not a copy.
        """
        if self._cache is None or self._cache_extra or self.transform is not None:
            return None
        return self._cache, torch.as_tensor(self.targets, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def get_image(self, index: int) -> torch.Tensor:
        """Decoded uint8 image ``(3, H, W)`` of item ``index`` (no transform).

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
        """``(image, label)`` of item ``index`` (``transform`` applied).

        Raises:
            CorruptImageError: the file cannot be decoded (also with
                ``skip_corrupt``: the unreadable files were dropped at construction,
                so this one became unreadable since).
        """
        index = int(index)
        image = self.get_image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]

    def _decode_all(
        self, num_threads: int | None, progress: bool, store: Callable[[int, torch.Tensor], None] | None
    ) -> list[tuple[int, Exception]]:
        """Decode every item with a thread pool (Pillow releases the GIL while
        decoding); pass each image to ``store``; return the corrupt ``(index, error)``
        list, sorted by index.

        Raises:
            CorruptImageError: the first corrupt file, when not ``skip_corrupt``.
        """
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
        name = os.path.basename(str(self.source_path))
        t0 = time.time()
        with progress_bar(progress, total=n, desc=f"decoding {name}", unit="img") as bar:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for start, errs in zip(starts, pool.map(work, starts)):
                    bad.extend(errs)
                    bar.update(min(chunk, n - start))
        if progress and not bars_shown():  # a log file gets one line instead of the bar
            print(f"decoded {n} images of {name} in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
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

    def _report_dropped(self, bad: list[tuple[int, Exception]]) -> None:
        """Record the unreadable files in ``skipped`` / ``skipped_images``, warn once, drop them.

        Raises:
            DataError: every file of the data set is unreadable.
        """
        if not bad:
            return
        self.skipped_images = [SkippedInput(i, self.image_names[i], str(exc)) for i, exc in bad]
        self.skipped = len(bad)
        if len(bad) == len(self):
            raise DataError(
                f"all {len(bad)} images of the data set in {self.source_path} are unreadable; first: {bad[0][1]}"
            )
        names = ", ".join(f"'{s.input}'" for s in self.skipped_images[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        warnings.warn(
            f"skipped {len(bad)} unreadable image(s) in {self.source_path}: {names}{more} "
            f"(reasons in .skipped_images)",
            RuntimeWarning,
            stacklevel=4,
        )
        self._drop([i for i, _ in bad])

    def verify(self, num_threads: int | None = None, progress: bool = False) -> int:
        """Decode every image once (thread pool); drop the unreadable ones when
        ``skip_corrupt`` (listed in ``skipped_images``). Done once: later calls
        return the count found.

        Returns:
            Number of unreadable files dropped (also in ``.skipped``).

        Raises:
            CorruptImageError: a file is unreadable and ``skip_corrupt`` is False.
            DataError: every file is unreadable.
        """
        if self._verified or self._cache is not None:
            return self.skipped
        bad = self._decode_all(num_threads, progress, None)
        self._report_dropped(bad)
        self._verified = True
        return len(bad)

    def _first_image(self) -> torch.Tensor:
        """The first readable image (its shape sizes the cache tensor)."""
        for i in range(len(self)):
            try:
                return self._load(i)
            except CorruptImageError:
                if not self.skip_corrupt:
                    raise
        raise DataError(f"all {len(self)} images of the data set in {self.source_path} are unreadable")

    def build_cache(self, num_threads: int | None = None, progress: bool = False) -> None:
        """Decode every image once into one uint8 tensor ``(N, 3, H, W)`` held in memory.

        Later epochs index the tensor instead of decoding (Tiny ImageNet train: 100,000 x
        3 x 64 x 64 = 1.2 GB).  Images whose size differs from the first one are kept
        separately.  Decoding runs on ``num_threads`` threads (default: all usable CPUs;
        Pillow releases the GIL while decoding).  Unreadable files are dropped when
        ``skip_corrupt`` (counted in ``.skipped``, listed in ``.skipped_images``), else raise.

        Raises:
            CorruptImageError: a file is unreadable and ``skip_corrupt`` is False.
            DataError: every file is unreadable.
        """
        if self._cache is not None or len(self) == 0:
            return
        first = self._first_image()
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
        self._verified = True
