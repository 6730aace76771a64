"""File containers that datasets read members from: a zip archive or a directory.

:class:`ZipSource` keeps one ``zipfile.ZipFile`` handle per process: it is opened
lazily and reopened after ``fork`` (DataLoader workers) and dropped on pickling
(``spawn`` workers), so every process reads through its own file descriptor.
Reads from several threads of one process share the handle; ``zipfile`` serialises
the raw reads internally, decoding then runs in parallel.

Memory is bounded for every read: a member or file larger than ``max_bytes``
(default :data:`DEFAULT_MAX_BYTES`, 256 MiB) is refused from its declared size
(``ZipInfo.file_size``, ``fstat``) before anything is read, and the read itself
goes in 1 MiB chunks and stops after ``max_bytes + 1`` bytes, so a zip header
that lies about the size (or a file that grows, or a device file) cannot make
it allocate more. (``ZipFile.read`` / ``ZipExtFile.read(n)`` decompress up to
``n`` bytes in one piece whatever the header says: a 1 MB member that inflates
to 1 GiB behind a header claiming 1,000 bytes costs 1 GiB through them.) The
peak is about twice the file's size (the chunks, then the joined bytes).

Member names are confined to the container: :func:`unsafe_name_reason` rejects
absolute names and ``..`` components, so a name taken from an annotation file
never reads outside an extracted data folder. (Symbolic links inside the folder
are followed: they are the user's own choice.)
"""

from __future__ import annotations

import os
import threading
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..errors import InputNotFoundError, InvalidInputError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Source",
    "ZipSource",
    "DirSource",
    "open_source",
    "read_file_capped",
    "unsafe_name_reason",
]

#: default largest file / archive member read (uncompressed size): 256 MiB.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

#: errors of a damaged / unsupported zip member (bad CRC, truncated or foreign compressed data,
#: encryption (RuntimeError), an unsupported compression method (NotImplementedError)).
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError)


def unsafe_name_reason(name: str) -> str | None:
    """Why a relative ``/``-separated member name could leave its container, or None if it cannot.

    Rejected: empty names, absolute names (``/x``, ``\\x``, ``C:x``), backslashes, NUL
    characters and ``..`` components.
    """
    if not name:
        return "the name is empty"
    if "\x00" in name:
        return "the name holds a NUL character"
    if "\\" in name:
        return "the name holds a backslash ('\\'); use '/' between folders"
    if name.startswith("/") or (len(name) > 1 and name[0].isalpha() and name[1] == ":"):
        return "the name is an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "the name has a '..' component that leaves the folder"
    return None


_CHUNK = 1 << 20


def _too_large(what: str, size: int, limit: int) -> InvalidInputError:
    return InvalidInputError(f"{what} is {size:,} bytes, over the limit of {limit:,} bytes (max_bytes)")


def _read_chunks(f: BinaryIO, limit: int, what: str) -> bytes:
    """Read ``f`` to its end in chunks of at most 1 MiB, refusing more than ``limit`` bytes.

    Raises:
        InvalidInputError: more than ``limit`` bytes.
    """
    parts: list[bytes] = []
    total = 0
    while total <= limit:
        part = f.read(min(_CHUNK, limit + 1 - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
    if total > limit:
        raise _too_large(what, total, limit)
    return b"".join(parts)


def read_file_capped(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES,
                     what: str | None = None) -> bytes:
    """The bytes of a file, refusing files larger than ``max_bytes``.

    The size is checked with ``fstat`` first, and at most ``max_bytes + 1``
    bytes are read (1 MiB chunks), so memory stays bounded even for a file
    that grows or a device file.

    Args:
        path: the file. max_bytes: the largest size accepted [bytes].
        what: how to name the file in messages (default ``'<path>'``).

    Raises:
        InputNotFoundError: no such file.
        InvalidInputError: a folder, unreadable (permissions, I/O error) or too large.
    """
    what = what or f"'{os.fspath(path)}'"
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise _too_large(what, size, max_bytes)
            return _read_chunks(f, max_bytes, what)
    except FileNotFoundError:
        raise InputNotFoundError(f"{what} not found") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{what} is a folder, not a file") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {what}: {exc.strerror or exc}") from None


class Source:
    """Read-only container of files addressed by '/'-separated relative names.

    Attributes:
        path: the archive or directory (used in messages).
        max_bytes: the largest member :meth:`read` returns [bytes].
    """

    path: Path
    max_bytes: int = DEFAULT_MAX_BYTES

    def names(self, under: str = "") -> list[str]:
        """File names (no directories), sorted: all of them, or those below folder ``under``."""
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        """Raw bytes of member ``name`` (at most :attr:`max_bytes`).

        Raises:
            InputNotFoundError: no such member (message names member and container).
            InvalidInputError: a member that is too large, damaged or unreadable,
                or a name that leaves the container.
        """
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        """True if member ``name`` exists."""
        raise NotImplementedError

    def __str__(self) -> str:
        return str(self.path)


class ZipSource(Source):
    """Members of a (ZIP64-capable) zip file, read without extraction.

    Args:
        path: the archive.
        max_bytes: the largest member (uncompressed) :meth:`read` accepts [bytes];
            default :data:`DEFAULT_MAX_BYTES`.

    Raises:
        InputNotFoundError: ``path`` does not exist.
        InvalidInputError: ``path`` is not a readable zip archive.
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise InputNotFoundError(f"zip archive not found: {self.path}")
        self.max_bytes = int(max_bytes)
        self._handle: zipfile.ZipFile | None = None
        self._pid = -1
        self._lock = threading.Lock()
        zf = self._zip()
        self._names = sorted(i.filename for i in zf.infolist() if not i.is_dir())
        self._name_set = frozenset(self._names)

    def _zip(self) -> zipfile.ZipFile:
        if self._handle is None or self._pid != os.getpid():
            with self._lock:
                if self._handle is None or self._pid != os.getpid():
                    try:
                        handle = zipfile.ZipFile(self.path)
                    except (zipfile.BadZipFile, OSError) as exc:
                        raise InvalidInputError(f"cannot read zip archive {self.path}: {exc}") from None
                    self._handle, self._pid = handle, os.getpid()
        return self._handle  # type: ignore[return-value]

    def names(self, under: str = "") -> list[str]:
        if not under:
            return list(self._names)
        start = under.rstrip("/") + "/"
        return [n for n in self._names if n.startswith(start)]

    def exists(self, name: str) -> bool:
        return name in self._name_set

    def read(self, name: str) -> bytes:
        """Bytes of member ``name``: refused from its declared size when over
        :attr:`max_bytes`, else streamed through ``ZipFile.open`` in 1 MiB chunks
        up to ``max_bytes + 1`` bytes (see the module docstring).

        Raises:
            InputNotFoundError: no such member.
            InvalidInputError: too large, damaged (bad CRC, truncated), encrypted or
                compressed with an unsupported method.
        """
        if name not in self._name_set:
            raise InputNotFoundError(f"'{name}' not found in zip archive {self.path}")
        what = f"'{name}' in {self.path}"
        zf = self._zip()
        info = zf.getinfo(name)
        if info.file_size > self.max_bytes:
            raise _too_large(what, info.file_size, self.max_bytes)
        try:
            with zf.open(info) as f:
                return _read_chunks(f, self.max_bytes, what)
        except _ZIP_READ_ERRORS as exc:
            raise InvalidInputError(f"cannot read {what}: {exc}") from None

    def close(self) -> None:
        """Close this process's handle (it is reopened on the next read)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"], state["_pid"], state["_lock"] = None, -1, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class DirSource(Source):
    """Files under a directory; names are relative '/'-separated paths, confined
    to the directory (:func:`unsafe_name_reason`).

    Args:
        path: the directory.
        max_bytes: the largest file :meth:`read` accepts [bytes]; default
            :data:`DEFAULT_MAX_BYTES`.

    Raises:
        InputNotFoundError: ``path`` is not a directory.
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_dir():
            raise InputNotFoundError(f"directory not found: {self.path}")
        self.max_bytes = int(max_bytes)

    def names(self, under: str = "") -> list[str]:
        """Sorted relative names of the files below ``under`` (recursive; symbolic
        links to folders are not followed)."""
        base = self.path / under if under else self.path
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.path).as_posix()
            prefix = "" if rel == "." else rel + "/"
            out.extend(prefix + f for f in filenames)
        return sorted(out)

    def exists(self, name: str) -> bool:
        return unsafe_name_reason(name) is None and (self.path / name).is_file()

    def read(self, name: str) -> bytes:
        """Bytes of file ``name`` (at most :attr:`max_bytes`, see :func:`read_file_capped`).

        Raises:
            InputNotFoundError: no such file.
            InvalidInputError: a name that leaves the directory, a folder, an
                unreadable or too large file.
        """
        reason = unsafe_name_reason(name)
        if reason is not None:
            raise InvalidInputError(f"refusing to read {name!r} in {self.path}: {reason}")
        return read_file_capped(self.path / name, self.max_bytes, what=f"'{name}' in {self.path}")


def open_source(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> Source:
    """:class:`ZipSource` for a file, :class:`DirSource` for a directory.

    Raises:
        InputNotFoundError: ``path`` does not exist.
        InvalidInputError: a file that is not a readable zip archive.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        return DirSource(p, max_bytes)
    if p.is_file():
        return ZipSource(p, max_bytes)
    raise InputNotFoundError(f"no such file or directory: {p}")
