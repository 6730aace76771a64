"""Reading images named by the user: files, folders and members of zip archives.

An image *spec* is a string: a file path, or ``ARCHIVE.zip::MEMBER`` for a
member of a zip archive (so images can be read straight from, e.g., the
Tiny ImageNet zip without extracting it). :func:`expand_inputs` turns what a
user typed (files, folders, archives, archive folders) into specs;
:func:`open_image` reads one spec with bounded memory (files and members
over ``max_bytes`` are refused from their declared size, see
:mod:`.sources`) and decodes it with :func:`~swinlab.data.decode.decode_image`,
the decoder the data sets use.

Archives are read through :class:`~swinlab.data.sources.ZipSource` (the one
zip reader of swinlab); each archive is opened once per process and kept in a
small registry (:func:`close_archives` empties it), so the central directory
of a 110k-member archive is read once, not once per image.
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..constants import IMAGE_EXTENSIONS
from ..errors import CorruptImageError, InputNotFoundError, InvalidInputError
from .decode import DEFAULT_MAX_PIXELS, decode_image
from .sources import DEFAULT_MAX_BYTES, DirSource, ZipSource, read_file_capped

__all__ = [
    "IMAGE_EXTENSIONS",
    "ZIP_SEPARATOR",
    "SkippedInput",
    "archive_source",
    "close_archives",
    "expand_inputs",
    "is_image_name",
    "open_image",
    "read_spec",
    "spec_display_name",
    "split_spec",
]

#: separator of an archive path and a member name in a spec (``A.zip::dir/x.jpg``).
ZIP_SEPARATOR = "::"

_archives: dict[tuple[str, int], ZipSource] = {}
_archives_lock = threading.Lock()


@dataclass(frozen=True)
class SkippedInput:
    """An image left out because it could not be read (``--skip-corrupt``).

    Attributes:
        index: its position in the input list (or in the data set's index
            before the unreadable files were dropped).
        input: the spec or data-set member name.
        error: the reason, one line naming the file.
    """

    index: int
    input: str
    error: str

    def to_dict(self) -> dict[str, str]:
        """``{"input": ..., "error": ...}`` (the JSON form used in reports)."""
        return {"input": self.input, "error": self.error}


def is_image_name(name: str) -> bool:
    """True when ``name``'s extension is one of :data:`swinlab.constants.IMAGE_EXTENSIONS`."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"a.zip::dir/x.jpg"`` -> ``("a.zip", "dir/x.jpg")``; a plain path -> ``(path, None)``."""
    if ZIP_SEPARATOR in spec:
        archive, member = spec.split(ZIP_SEPARATOR, 1)
        return archive, member
    return spec, None


def archive_source(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> ZipSource:
    """The process's :class:`~swinlab.data.sources.ZipSource` of archive ``path``
    (opened on first use, then reused).

    Raises:
        InputNotFoundError: no such archive.
        InvalidInputError: not a readable zip archive.
    """
    key = (os.path.abspath(os.fspath(path)), int(max_bytes))
    with _archives_lock:
        source = _archives.get(key)
        if source is None:
            source = ZipSource(key[0], max_bytes=max_bytes)
            _archives[key] = source
        return source


def close_archives() -> None:
    """Close the archives opened by :func:`open_image` / :func:`expand_inputs`."""
    with _archives_lock:
        for source in _archives.values():
            source.close()
        _archives.clear()


def read_spec(spec: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The encoded bytes of a file or ``ARCHIVE.zip::MEMBER`` (at most ``max_bytes``).

    Raises:
        InputNotFoundError: the file, archive or member does not exist.
        CorruptImageError: a file / member over ``max_bytes`` (checked from the
            declared size before reading), damaged or unreadable.
        InvalidInputError: the archive is not a readable zip.
    """
    spec = os.fspath(spec)
    archive, member = split_spec(spec)
    if member is None and not os.path.isfile(spec):
        raise InputNotFoundError(f"image not found: {spec}")
    source = None if member is None else archive_source(archive, max_bytes)
    try:
        return read_file_capped(spec, max_bytes) if source is None else source.read(member)
    except (InputNotFoundError, CorruptImageError):
        raise
    except InvalidInputError as exc:  # too large, damaged, unreadable: an error of this one file
        raise CorruptImageError(str(exc)) from exc


def open_image(
    spec: str | os.PathLike[str],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> torch.Tensor:
    """Read and decode one image.

    Args:
        spec: a file path or ``ARCHIVE.zip::MEMBER``.
        max_pixels: pixel limit (width x height) of :func:`decode_image`;
            None = Pillow's guard only. Default 64 MPixel.
        max_bytes: the largest encoded file / member read [bytes]; default 256 MiB.

    Returns:
        uint8 tensor ``(3, H, W)``, RGB (see :mod:`swinlab.data.decode`).

    Raises:
        InputNotFoundError: the file, archive or member does not exist.
        CorruptImageError: unreadable, too large or not a decodable image (the
            message names the file and the reason).
        InvalidInputError: the archive is not a zip.
    """
    spec = os.fspath(spec)
    data = read_spec(spec, max_bytes)
    archive, member = split_spec(spec)
    if member is None:
        return decode_image(data, spec, max_pixels=max_pixels)
    return decode_image(data, member, archive, max_pixels=max_pixels)


def _expand_zip(archive: str, prefix: str | None) -> list[str]:
    source = archive_source(archive)
    if prefix and not prefix.endswith("/") and source.exists(prefix):
        return [f"{archive}{ZIP_SEPARATOR}{prefix}"]
    folder = "" if not prefix else prefix.rstrip("/")
    found = [n for n in source.names(folder) if is_image_name(n)]
    if not found:
        where = f"under {folder + '/'!r} " if folder else ""
        raise InputNotFoundError(f"no images {where}in zip archive {archive}")
    return [f"{archive}{ZIP_SEPARATOR}{n}" for n in found]


def _expand_folder(folder: str) -> list[str]:
    found = [str(Path(folder) / n) for n in DirSource(folder).names() if is_image_name(n)]
    if not found:
        raise InputNotFoundError(f"no images (extensions {sorted(IMAGE_EXTENSIONS)}) in folder {folder}")
    return found


def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Turn user inputs into a flat list of image specs.

    * a file -> itself (whatever its extension; decoding is checked later);
    * a folder -> its images (by extension, recursively), sorted by path;
    * ``A.zip`` or ``A.zip::FOLDER/`` -> the archive's images (under FOLDER),
      sorted by member name; ``A.zip::MEMBER`` -> that member.

    Order of the inputs is kept.

    Raises:
        InputNotFoundError: a path, archive or member that does not exist, or a
            folder / archive folder without images.
        InvalidInputError: no inputs at all, or an unreadable archive.
    """
    specs: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        archive, member = split_spec(item)
        if member is not None:
            specs.extend(_expand_zip(archive, member))
        elif os.path.isdir(item):
            specs.extend(_expand_folder(item))
        elif os.path.isfile(item):
            if item.lower().endswith(".zip") and zipfile.is_zipfile(item):
                specs.extend(_expand_zip(item, None))
            else:
                specs.append(item)
        else:
            raise InputNotFoundError(f"input not found: {item}")
    if not specs:
        raise InvalidInputError("no input images were given")
    return specs


def spec_display_name(spec: str) -> str:
    """A short file-system-safe stem for a spec (``a.zip::d/x.jpg`` -> ``x``)."""
    _, member = split_spec(spec)
    stem = Path(member if member is not None else spec).stem
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return safe or "image"
