"""Checkpoint files: atomic writes, content digests, RNG states, run folders and their lock."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from swinlab.errors import CheckpointError, DiskFullError, InputNotFoundError, RunLockedError
from swinlab.io import files
from swinlab.io.checkpoint import load_checkpoint, save_checkpoint
from swinlab.io.rundir import RunDir
from swinlab.training.checkpoint import capture_rng_state, restore_rng_state


def test_crash_during_save_leaves_previous_checkpoint_loadable(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}, "epoch": 1}, target)
    real_replace = os.replace

    def crash(*a, **k):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "epoch": 2}, target)
    monkeypatch.setattr(os, "replace", real_replace)
    loaded = load_checkpoint(target)
    assert loaded["epoch"] == 1 and torch.equal(loaded["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind


def test_full_disk_is_one_clear_error_and_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}, "epoch": 1}, target)
    real_fdopen = os.fdopen

    class Full(io.RawIOBase):
        def __init__(self, f):
            self.f = f

        def write(self, b):
            raise OSError(28, "No space left on device")

        def fileno(self):
            return self.f.fileno()

        def close(self):
            self.f.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Full(real_fdopen(fd, mode, *a, **k)))
    with pytest.raises(DiskFullError, match=r"cannot write .*last\.pt: no space left on the device \(it needs [\d,]+ bytes"):
        save_checkpoint({"model": {"w": torch.zeros(1000)}, "epoch": 2}, target)
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert load_checkpoint(target)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_damaged_empty_and_foreign_checkpoints_are_refused_by_name(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint({"model": {"w": torch.arange(4096, dtype=torch.float32)}, "epoch": 3}, good)
    data = bytearray(good.read_bytes())
    # flip bytes inside the tensor data (the zip container does not notice)
    start = data.find(np.arange(4096, dtype=np.float32).tobytes()[:64])
    assert start > 0
    data[start + 100: start + 108] = b"\xff" * 8
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flipped\.pt is damaged"):
        load_checkpoint(bad)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt is empty \(0 bytes\)"):
        load_checkpoint(empty)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt: cannot read"):
        load_checkpoint(junk)
    with pytest.raises(InputNotFoundError, match="nothere"):
        load_checkpoint(tmp_path / "nothere.pt")
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['model_name'\]"):
        load_checkpoint(good, require=("model", "model_name"))


def test_rng_state_round_trip_through_weights_only_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    save_checkpoint({"rng": [capture_rng_state()]}, tmp_path / "r.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"][0])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]
    with pytest.raises(CheckpointError, match="malformed RNG state"):
        restore_rng_state({"torch": torch.zeros(1)})


def test_run_dir_files(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "run")
    assert not RunDir.is_run_dir(rd.path)
    with pytest.raises(InputNotFoundError, match="has no best.pt or last.pt"):
        rd.model_file()
    with pytest.raises(CheckpointError, match="has no last.pt to resume from"):
        rd.read_resume()
    save_checkpoint({"model": {}, "model_name": "m", "epoch": 1, "step": 2}, rd.last)
    assert RunDir.is_run_dir(rd.path) and rd.model_file() == rd.last
    save_checkpoint({"model": {}, "model_name": "m", "epoch": 1, "step": 2}, rd.best)
    assert rd.model_file() == rd.best and rd.read_resume()["step"] == 2


_HOLDER = """
import sys, time
from swinlab.io.rundir import RunDir
lock = RunDir(sys.argv[1]).lock().acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_lock_refuses_a_second_owner_and_clears_a_dead_ones(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"in use: process {holder.pid} on .* is training into it"):
            RunDir(tmp_path).lock().acquire()
    finally:
        holder.kill()  # kill -9: the kernel drops its lock; the lock file (with its pid) stays
        holder.wait(30)
    lock = RunDir(tmp_path).lock().acquire()
    assert lock.stale_owner is not None and lock.stale_owner["pid"] == holder.pid
    lock.release()


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"x")
    (tmp_path / "config.json.tmp").write_text("{")
    (tmp_path / "keep.txt").write_text("k")
    removed = files.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".last.pt.abc123.tmp", "config.json.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
