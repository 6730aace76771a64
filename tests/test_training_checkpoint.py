"""Atomic checkpoint writes, RNG state round trips, resume lookup errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from swinlab.training import checkpoint as ck


def test_crash_during_save_leaves_previous_checkpoint_loadable(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.pt"
    ck.atomic_torch_save({"model": {"w": torch.ones(3)}, "epoch": 1}, target)
    real_save = torch.save

    def crashing_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # write everything ...
        f.seek(0)
        f.truncate(10)  # ... then lose most of it, and die mid-way
        raise OSError("simulated crash (disk full)")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="simulated crash"):
        ck.atomic_torch_save({"model": {"w": torch.zeros(3)}, "epoch": 2}, target)
    monkeypatch.setattr(torch, "save", real_save)
    loaded = ck.load_checkpoint(target)
    assert loaded["epoch"] == 1 and torch.equal(loaded["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind


def test_rng_state_round_trip_through_weights_only_file(tmp_path: Path) -> None:
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # leave a cached gaussian in numpy's state
    state = ck.capture_rng_state()
    first = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)], np.random.randn())
    ck.atomic_torch_save({"model": {}, "epoch": 0, "rng": state}, tmp_path / "r.pt")
    restored = torch.load(tmp_path / "r.pt", weights_only=True)["rng"]
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    ck.restore_rng_state(restored)
    again = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)], np.random.randn())
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2] == again[2] and first[3] == again[3]


def test_resume_lookup_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ck.CheckpointError, match="no such checkpoint"):
        ck.resolve_resume_path(tmp_path / "missing.pt")
    with pytest.raises(ck.CheckpointError, match="has no last.pt"):
        ck.resolve_resume_path(tmp_path)
    ck.atomic_torch_save({"model": {}, "epoch": 3}, tmp_path / "last.pt")
    assert ck.resolve_resume_path(tmp_path) == tmp_path / "last.pt"
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ck.CheckpointError, match="not a swinlab training checkpoint"):
        ck.load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ck.CheckpointError, match="junk.pt"):
        ck.load_checkpoint(tmp_path / "junk.pt")
