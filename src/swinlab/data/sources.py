"""File containers that datasets read members from: a zip archive or a directory.

:class:`ZipSource` keeps one ``zipfile.ZipFile`` handle per process: it is opened
lazily and reopened after ``fork`` (DataLoader workers) and dropped on pickling
(``spawn`` workers), so every process reads through its own file descriptor.
Reads from several threads of one process share the handle; ``zipfile`` serialises
the raw reads internally, decoding then runs in parallel.
"""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path

__all__ = ["Source", "ZipSource", "DirSource", "open_source"]


class Source:
    """Read-only container of files addressed by '/'-separated relative names."""

    #: path of the archive or directory (used in messages).
    path: Path

    def names(self, under: str = "") -> list[str]:
        """File names (no directories), sorted: all of them, or those below folder ``under``."""
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        """Raw bytes of member ``name``.

        Raises:
            FileNotFoundError: no such member (message names member and container).
        """
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        """True if member ``name`` exists."""
        raise NotImplementedError

    def __str__(self) -> str:
        return str(self.path)


class ZipSource(Source):
    """Members of a (ZIP64-capable) zip file, read without extraction.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a readable zip archive.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise FileNotFoundError(f"zip archive not found: {self.path}")
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
                        raise ValueError(f"cannot read zip archive {self.path}: {exc}") from exc
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
        if name not in self._name_set:
            raise FileNotFoundError(f"'{name}' not found in zip archive {self.path}")
        try:
            return self._zip().read(name)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            # a damaged member (bad CRC, truncated data): treat like an undecodable image
            raise ValueError(f"cannot read '{name}' from {self.path}: {exc}") from exc

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
    """Files under a directory; names are relative '/'-separated paths.

    Raises:
        FileNotFoundError: ``path`` is not a directory.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_dir():
            raise FileNotFoundError(f"directory not found: {self.path}")

    def names(self, under: str = "") -> list[str]:
        """Sorted relative names of the files below ``under`` (recursive)."""
        base = self.path / under if under else self.path
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.path).as_posix()
            prefix = "" if rel == "." else rel + "/"
            out.extend(prefix + f for f in filenames)
        return sorted(out)

    def exists(self, name: str) -> bool:
        return (self.path / name).is_file()

    def read(self, name: str) -> bytes:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"'{name}' not found in {self.path}") from None
        except OSError as exc:
            raise ValueError(f"cannot read '{name}' in {self.path}: {exc}") from exc


def open_source(path: str | os.PathLike[str]) -> Source:
    """:class:`ZipSource` for a file, :class:`DirSource` for a directory.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        return DirSource(p)
    if p.is_file():
        return ZipSource(p)
    raise FileNotFoundError(f"no such file or directory: {p}")
