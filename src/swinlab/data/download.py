"""Download a file over HTTP(S) atomically, with an MD5 check."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["download_file", "file_md5"]


def file_md5(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex MD5 digest of a file."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    md5: str | None = None,
    *,
    timeout: float = 60.0,
    progress: bool = False,
) -> Path:
    """Fetch ``url`` to ``dest``: written to a temporary file in the same folder, checked,
    then renamed into place (so ``dest`` is never a partial file).

    If ``dest`` already exists with the right MD5 (or no MD5 is given) nothing is fetched.

    Args:
        url: http(s) URL.
        dest: final file path (parent folders are created).
        md5: expected hex MD5 of the file, or None to skip the check.
        timeout: socket timeout [seconds].
        progress: show a tqdm progress bar.

    Returns:
        ``dest`` as a Path.

    Raises:
        ValueError: the downloaded file's MD5 differs from ``md5`` (the file is removed).
        OSError: the URL cannot be fetched (message names the URL and the destination).
    """
    dest = Path(dest).expanduser()
    if dest.is_file() and (md5 is None or file_md5(dest) == md5.lower()):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - user-chosen URL
            except (urllib.error.URLError, OSError) as exc:
                raise OSError(f"cannot download {url} to {dest}: {exc}") from exc
            with response:
                total = int(response.headers.get("Content-Length") or 0) or None
                bar = None
                if progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}")
                while True:
                    block = response.read(1 << 20)
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    if bar is not None:
                        bar.update(len(block))
                if bar is not None:
                    bar.close()
        got = h.hexdigest()
        if md5 is not None and got != md5.lower():
            raise ValueError(
                f"MD5 mismatch for {url}: expected {md5.lower()}, got {got}; the downloaded file was removed"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest

