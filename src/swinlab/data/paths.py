"""Where data sets are looked for and downloaded to.

Search order when no ``root`` is given: ``$SWINLAB_DATA`` (a file, or a folder holding the
archive / extracted folder), ``$SWINLAB_SHARED/data``, then the download cache
(:func:`swinlab.io.download.cache_dir`: ``$SWINLAB_CACHE``, default ``~/.cache/swinlab``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import InputNotFoundError
from ..io.download import cache_dir, download_file

__all__ = ["candidate_dirs", "locate"]


def candidate_dirs() -> list[Path]:
    """Folders searched for data archives, in order (see the module docstring)."""
    dirs: list[Path] = []
    env = os.environ.get("SWINLAB_DATA")
    if env and Path(env).expanduser().is_dir():
        dirs.append(Path(env).expanduser())
    shared = os.environ.get("SWINLAB_SHARED")
    if shared:
        dirs.append(Path(shared).expanduser() / "data")
    dirs.append(cache_dir())
    out: list[Path] = []
    for d in dirs:
        d = d.resolve()
        if d not in out:
            out.append(d)
    return out


def locate(
    what: str,
    names: Sequence[str],
    root: str | os.PathLike[str] | None,
    *,
    download: bool,
    url: str,
    md5: str | None,
) -> Path:
    """Find a data set's archive or folder, downloading it if asked.

    Args:
        what: data set name for messages.
        names: accepted file/folder names, archive first (e.g. ``("cifar-10-python.tar.gz",
            "cifar-10-batches-py")``).
        root: explicit path (archive file, extracted folder, or a folder holding one of
            ``names``), or None to search (module docstring).
        download: fetch ``url`` (checked against ``md5``) when nothing is found: into
            ``root`` (a file path, or a folder) if given, else into :func:`cache_dir`.

    Returns:
        An existing path: the archive / folder found, or ``root`` itself when it exists
        but holds none of ``names`` (the data set then checks its layout).

    Raises:
        FileNotFoundError: nothing found and ``download`` is False (the message lists the
            places searched).
    """
    archive = names[0]
    if root is not None:
        p = Path(root).expanduser()
        if p.is_dir():
            for n in names:
                if (p / n).exists():
                    return p / n
            if not download:
                return p
            return download_file(url, p / archive, md5=md5, progress=True)
        if p.exists():
            return p
        if download:
            dest = p if p.name.endswith(Path(archive).suffix) else p / archive
            return download_file(url, dest, md5=md5, progress=True)
        raise InputNotFoundError(f"{what} data not found at {p} (pass download=True to fetch {url})")
    env = os.environ.get("SWINLAB_DATA")
    if env:
        e = Path(env).expanduser()
        if e.is_file() and e.name in names:
            return e
    looked: list[str] = []
    for d in candidate_dirs():
        for n in names:
            looked.append(str(d / n))
            if (d / n).exists():
                return d / n
    if download:
        return download_file(url, cache_dir() / archive, md5=md5, progress=True)
    raise InputNotFoundError(
        f"{what} data not found; looked for: {', '.join(looked)}. Pass root=..., set $SWINLAB_DATA, "
        f"or use download=True to fetch {url} into {cache_dir()}"
    )
