"""Crash-safe file writes: temporary file, fsync, rename.

Every file swinlab writes for a user (checkpoints, configs, metrics, model
folders, exports, downloads) goes through :func:`atomic_write` (a new folder
through :func:`atomic_dir`): the bytes go to a
temporary file in the target's folder (``.<name>.<random>.tmp``), are
flushed and fsync'ed, and the temporary file is renamed over the target
(``os.replace``, atomic on POSIX), then the folder is fsync'ed. A crash at
any instant leaves either the old file or the new one, never a mix; the
temporaries a crash leaves behind are removed by
:func:`remove_stale_temporaries`.

A write that fails for lack of space raises :class:`~swinlab.errors.DiskFullError`
naming the file and the bytes it needed.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import DiskFullError, InvalidInputError

__all__ = [
    "TMP_SUFFIX",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_dir",
    "fsync_dir",
    "remove_stale_temporaries",
    "ensure_dir",
]

#: suffix of the temporary files of :func:`atomic_write`.
TMP_SUFFIX = ".tmp"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: permissions of written files: as ``open()`` would create them (mkstemp makes 0600 files).
_FILE_MODE = 0o666 & ~_umask()


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """fsync a folder so that a rename inside it survives a power cut
    (silently skipped on file systems that do not allow it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_dir(folder: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create ``folder`` (and parents) unless it exists.

    Raises:
        InvalidInputError: ``folder`` (or a parent) exists and is a file.
        DiskFullError: no space to create it.
    """
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"{what} {path} is a file, not a folder; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InvalidInputError(f"{what} {path}: a parent of it is a file, not a folder") from None
    except NotADirectoryError:
        raise InvalidInputError(f"{what} {path}: a parent of it is a file, not a folder") from None
    except OSError as err:
        if err.errno in _NO_SPACE:
            raise DiskFullError(f"cannot create {what} {path}: no space left on the device") from None
        raise
    return path


def _disk_full(path: Path, needed: int | None) -> DiskFullError:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    need = f"{needed:,} bytes" if needed is not None else "more space"
    have = f"; {free:,} bytes are free there" if free is not None else ""
    return DiskFullError(f"cannot write {path}: no space left on the device (it needs {need}{have})")


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None],
                 size_hint: int | None = None) -> Path:
    """Write ``path`` crash-safely: ``write(f)`` fills a temporary file in
    the same folder, which is fsync'ed and renamed over ``path``.

    Args:
        path: the file to (re)place; its folder is created.
        write: called with the open binary temporary file.
        size_hint: bytes the file will take, quoted if the disk is full.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        DiskFullError: the device ran out of space (``path`` untouched, the
            temporary file removed).
        InvalidInputError: ``path`` is a folder, or its folder is a file.
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"cannot write {path}: it is a folder")
    ensure_dir(path.parent, "folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as err:
        if err.errno in _NO_SPACE:
            raise _disk_full(path, size_hint) from None
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            raise _disk_full(path, size_hint) from None
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """:func:`atomic_write` of ``data``; checks the free space first.

    Raises:
        DiskFullError: not enough space for ``len(data)`` bytes.
    """
    path = Path(path)
    return atomic_write(path, lambda f: f.write(data), size_hint=len(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write` of UTF-8 ``text`` (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_dir(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a NEW folder crash-safely: the ``with`` block fills a temporary
    sibling (``.<name>.<random>.tmp``), which is renamed to ``directory``
    when the block ends without error (then the parent is fsync'ed) and
    removed otherwise.

    Yields:
        the temporary folder.

    Raises:
        FileExistsError / OSError: ``directory`` appeared meanwhile (the
            rename fails; the temporary folder is removed).
    """
    directory = Path(directory)
    ensure_dir(directory.parent, "folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=TMP_SUFFIX, dir=directory.parent))
    try:
        yield tmp
        os.rename(tmp, directory)
        fsync_dir(directory.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries that interrupted writes left in ``folder``
    (every ``*.tmp`` entry: :func:`atomic_write`'s ``.<name>.*.tmp`` files,
    downloads included, older ``<name>.tmp`` ones and :func:`atomic_dir`'s
    folders; not recursive).

    Call it only while holding the folder's lock: a temporary of a running
    writer would be removed too.

    Returns:
        the files removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.endswith(TMP_SUFFIX) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
        elif p.name.endswith(TMP_SUFFIX) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed
