"""Downloads: one function for data sets and weights, with a hash check and a
cache folder.

:func:`download_file` fetches a URL to a chosen file; :func:`download_to_cache`
names the file after the URL inside the cache folder (:func:`cache_dir`) and
reuses it on later calls. Both write through a temporary file that is renamed
into place only after the hash matched, so a partial or wrong download is
never kept.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import DownloadError, InputNotFoundError, InvalidInputError, UsageError
from .files import atomic_write
from .progress import progress_bar

__all__ = ["cache_dir", "file_digest", "download_file", "download_to_cache"]

_HASH_PREFIX = re.compile(r"-([a-f0-9]{8,64})\.")
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The download cache: ``$SWINLAB_CACHE``, else ``~/.cache/swinlab``."""
    env = os.environ.get("SWINLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "swinlab"


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file (``"sha256"``, ``"md5"``, any :mod:`hashlib` name)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _check(digest: str, expected: str, algorithm: str, url: str) -> None:
    """Compare a digest with an expected one (an sha256 may be given as a prefix)."""
    expected = expected.lower()
    ok = digest.startswith(expected) if algorithm == "sha256" else digest == expected
    if not ok:
        name = "MD5" if algorithm == "md5" else algorithm
        raise InvalidInputError(
            f"{name} mismatch for {url}: expected {expected}, got {digest}; the downloaded file was removed "
            f"(corrupt or changed on the server)"
        )


def _fetch(url: str, out, timeout: float, progress: bool, hashers: list) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "swinlab"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - a URL the user chose
    except urllib.error.HTTPError as err:
        if err.code in (404, 410):
            raise InputNotFoundError(f"cannot download {url}: not found on the server (HTTP {err.code})") from None
        raise DownloadError(f"cannot download {url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise DownloadError(f"cannot download {url}: {getattr(err, 'reason', err)}") from None
    with response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with progress_bar(progress, total=total, unit="B", unit_scale=True,
                          desc=f"downloading {Path(url).name}") as bar:
            while block := response.read(_CHUNK):
                out.write(block)
                for h in hashers:
                    h.update(block)
                bar.update(len(block))


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
    progress: bool = False,
) -> Path:
    """Fetch ``url`` to ``dest`` unless ``dest`` already holds it.

    An existing ``dest`` is reused when it matches the given hash (or when
    no hash is given). The download goes to a temporary file next to
    ``dest``, is checked, then renamed into place.

    Args:
        url: ``http(s)://`` address; a ``#sha256=<hex>`` fragment gives the hash.
        dest: the file to write (its folder is created).
        sha256: expected sha256 (hex, a prefix is enough).
        md5: expected MD5 (hex, whole).
        timeout: seconds per network operation.
        progress: show a tqdm bar.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        UsageError: not an http(s) URL.
        InputNotFoundError: the server answers 404/410.
        InvalidInputError: a hash mismatch (nothing is kept).
        DownloadError: any other network or HTTP failure (names the URL).
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        raise UsageError(f"not an http(s) URL: {url!r}")
    if parsed.fragment.startswith("sha256=") and sha256 is None:
        sha256 = parsed.fragment[len("sha256="):]
    url = urllib.parse.urlunsplit(parsed._replace(fragment=""))
    dest = Path(dest).expanduser()
    checks = [(a, e) for a, e in (("sha256", sha256), ("md5", md5)) if e]
    if dest.is_file():
        if all(_matches(dest, a, e) for a, e in checks):
            return dest
    hashers = [hashlib.new(a) for a, _ in checks]

    def fetch(out) -> None:  # a failed check raises here: atomic_write keeps nothing
        _fetch(url, out, timeout, progress, hashers)
        for (algorithm, expected), h in zip(checks, hashers):
            _check(h.hexdigest(), expected, algorithm, url)

    atomic_write(dest, fetch)  # temporary .<name>.*.tmp: swept by remove_stale_temporaries
    return dest


def _matches(path: Path, algorithm: str, expected: str) -> bool:
    digest = file_digest(path, algorithm)
    return digest.startswith(expected.lower()) if algorithm == "sha256" else digest == expected.lower()


def download_to_cache(
    url: str,
    folder: str | os.PathLike[str] | None = None,
    *,
    sha256: str | None = None,
    check_hash_prefix: bool = False,
    timeout: float = 60.0,
    progress: bool = False,
) -> Path:
    """Download ``url`` into the cache folder, or reuse the cached copy.

    The file is ``<folder>/<first 16 hex of sha256(url)>-<name>``, so two
    URLs never share a file.

    Args:
        url: ``http(s)://`` address (``#sha256=<hex>`` fragment allowed).
        folder: the cache (default :func:`cache_dir`).
        sha256: expected sha256 (hex or a prefix).
        check_hash_prefix: take the torch.hub convention ``name-<hexprefix>.ext``
            as the expected sha256 prefix.
        timeout, progress: as :func:`download_file`.

    Returns:
        the cached file.

    Raises:
        see :func:`download_file`.
    """
    parsed = urllib.parse.urlsplit(url)
    name = Path(urllib.parse.unquote(parsed.path)).name or "download"
    if sha256 is None and parsed.fragment.startswith("sha256="):
        sha256 = parsed.fragment[len("sha256="):]
    if sha256 is None and check_hash_prefix and (m := _HASH_PREFIX.search(name)):
        sha256 = m.group(1)
    bare = urllib.parse.urlunsplit(parsed._replace(fragment=""))
    root = Path(folder).expanduser() if folder is not None else cache_dir()
    dest = root / f"{hashlib.sha256(bare.encode()).hexdigest()[:16]}-{name}"
    return download_file(bare, dest, sha256=sha256, timeout=timeout, progress=progress)
