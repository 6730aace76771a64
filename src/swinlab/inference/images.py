"""Reading images for inference: files, folders and members of zip archives.

An image *spec* is a string: a file path, or ``ARCHIVE.zip::MEMBER`` for a
member of a zip archive (so images can be read straight from, e.g., the
Tiny ImageNet zip without extracting it). Decoding uses Pillow; every image
is converted to RGB (grayscale / palette / RGBA included).
"""

from __future__ import annotations

import io
import os
import threading
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import InputNotFoundError, InvalidInputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ZIP_SEPARATOR",
    "split_spec",
    "open_image",
    "expand_inputs",
    "close_archives",
    "spec_display_name",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
ZIP_SEPARATOR = "::"

_archives: dict[str, zipfile.ZipFile] = {}
_archives_lock = threading.Lock()


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"a.zip::dir/x.jpg"`` -> ``("a.zip", "dir/x.jpg")``; a plain path -> ``(path, None)``."""
    if ZIP_SEPARATOR in spec:
        archive, member = spec.split(ZIP_SEPARATOR, 1)
        return archive, member
    return spec, None


def _archive(path: str) -> zipfile.ZipFile:
    """An open, cached :class:`zipfile.ZipFile` (reading the central directory
    of a 110k-member archive once, not per image)."""
    key = os.path.abspath(path)
    with _archives_lock:
        zf = _archives.get(key)
        if zf is None:
            if not os.path.isfile(key):
                raise InputNotFoundError(f"zip archive not found: {path}")
            try:
                zf = zipfile.ZipFile(key)
            except zipfile.BadZipFile as e:
                raise InvalidInputError(f"{path} is not a readable zip archive: {e}") from None
            _archives[key] = zf
        return zf


def close_archives() -> None:
    """Close the zip archives opened by :func:`open_image` / :func:`expand_inputs`."""
    with _archives_lock:
        for zf in _archives.values():
            zf.close()
        _archives.clear()


def _decode(data: bytes, spec: str) -> torch.Tensor:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InvalidInputError(f"cannot decode image {spec}: {e}") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def open_image(spec: str | os.PathLike[str]) -> torch.Tensor:
    """Read and decode one image.

    Args:
        spec: a file path or ``ARCHIVE.zip::MEMBER``.

    Returns:
        uint8 tensor ``(3, H, W)``, RGB.

    Raises:
        FileNotFoundError: the file, archive or member does not exist.
        ValueError: the data is not a decodable image (the message names it),
            or the archive is not a zip.
    """
    spec = os.fspath(spec)
    archive, member = split_spec(spec)
    if member is None:
        if not os.path.isfile(spec):
            raise InputNotFoundError(f"image not found: {spec}")
        with open(spec, "rb") as f:
            data = f.read()
    else:
        zf = _archive(archive)
        try:
            data = zf.read(member)
        except KeyError:
            raise InputNotFoundError(f"member {member!r} not found in zip archive {archive}") from None
        except (zipfile.BadZipFile, OSError) as e:
            raise InvalidInputError(f"cannot read {spec}: {e}") from None
    return _decode(data, spec)


def _expand_zip(archive: str, prefix: str | None) -> list[str]:
    zf = _archive(archive)
    names = zf.namelist()
    if prefix and prefix in names and not prefix.endswith("/"):
        return [f"{archive}{ZIP_SEPARATOR}{prefix}"]
    folder = "" if not prefix else prefix.rstrip("/") + "/"
    found = sorted(n for n in names if n.startswith(folder) and not n.endswith("/") and _is_image_name(n))
    if not found:
        where = f"under {folder!r} " if folder else ""
        raise InputNotFoundError(f"no images {where}in zip archive {archive}")
    return [f"{archive}{ZIP_SEPARATOR}{n}" for n in found]


def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Turn user inputs into a flat list of image specs.

    * a file -> itself (whatever its extension; decoding is checked later);
    * a folder -> its images (by extension, recursively), sorted by path;
    * ``A.zip`` or ``A.zip::FOLDER/`` -> the archive's images (under FOLDER),
      sorted by member name; ``A.zip::MEMBER`` -> that member.

    Order of the inputs is kept.

    Raises:
        FileNotFoundError: a path, archive or member that does not exist, or a
            folder / archive folder without images.
        ValueError: no inputs at all, or an unreadable archive.
    """
    specs: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        archive, member = split_spec(item)
        if member is not None:
            specs.extend(_expand_zip(archive, member))
        elif os.path.isdir(item):
            root = Path(item)
            found = sorted(
                str(p) for p in root.rglob("*") if p.is_file() and _is_image_name(p.name)
            )
            if not found:
                raise InputNotFoundError(f"no images (extensions {sorted(IMAGE_EXTENSIONS)}) in folder {item}")
            specs.extend(found)
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
