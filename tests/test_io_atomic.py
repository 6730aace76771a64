"""One atomic-write mechanism (issue 20): downloads and new model folders go
through swinlab.io.files, and remove_stale_temporaries sweeps what an
interrupted one leaves."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest

from swinlab.errors import InvalidInputError
from swinlab.io.download import download_file
from swinlab.io.files import atomic_dir, remove_stale_temporaries


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D102
        pass


@pytest.fixture()
def served(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    (root / "w.bin").write_bytes(b"weights" * 1000)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/w.bin"
    httpd.shutdown()
    httpd.server_close()


def test_download_writes_atomically_and_keeps_nothing_on_a_bad_hash(served, tmp_path):
    out = tmp_path / "cache"
    good = hashlib.sha256(b"weights" * 1000).hexdigest()
    with pytest.raises(InvalidInputError):
        download_file(served, out / "w.bin", sha256="0" * 64)
    assert list(out.iterdir()) == []  # no file, no temporary
    assert download_file(served, out / "w.bin", sha256=good).read_bytes() == b"weights" * 1000
    assert [p.name for p in out.iterdir()] == ["w.bin"]


def test_atomic_dir_and_the_sweep(tmp_path):
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "a.txt").write_text("a")
        assert not (tmp_path / "model").exists()
    assert (tmp_path / "model" / "a.txt").read_text() == "a"
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "other") as tmp:
        (tmp / "b.txt").write_text("b")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # what a killed process leaves: a download's and a folder's temporaries
    (tmp_path / ".w.bin.abc123.tmp").write_bytes(b"part")
    (tmp_path / ".model.xyz.tmp").mkdir()
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".model.xyz.tmp", ".w.bin.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
