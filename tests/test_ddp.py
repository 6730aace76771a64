"""Data-parallel training on the CPU: 2 processes under ``torchrun`` (gloo).

* only rank 0 writes (rank 1's writes are made to fail the run);
* the loss, metrics and weights equal a single-process run with the same
  global batch (2 x 4 vs 1 x 8; deterministic augmentation) within a stated
  tolerance (float sums in another order);
* a DDP run stopped by Ctrl-C inside an epoch and resumed under torchrun
  equals the uninterrupted DDP run bit for bit (every rank's RNG state is in
  the checkpoint);
* resuming with another number of processes is refused;
* killing one rank makes the other exit within a bounded time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from runs_helpers import DRIVER, assert_same_run, make_squares, records, run_cli, tiny_recipe, weights

#: relative tolerance of DDP vs one process: the same sums in another order (fp32).
TOLERANCE = 1e-4


def _torchrun(args: list[str], env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(DRIVER), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ddp")
    data = make_squares(tmp / "data")
    common = dict(aug={"img_size": 32, "random_resized_crop": False, "hflip": 0.0}, epochs=2,
                  model_overrides={"img_size": 32, "embed_dim": 16, "depths": [2, 2], "num_heads": [1, 2],
                                   "window_size": 4, "drop_path_rate": 0.0}, ema_decay=None)
    single = tiny_recipe(tmp / "single.json", batch_size=8, **common)
    ddp = tiny_recipe(tmp / "ddp.json", batch_size=4, **common)
    out = {"tmp": tmp, "data": data, "single": single, "ddp": ddp}
    res = run_cli(["train", "--config", str(single), "--data-root", str(data), "--out", str(tmp / "one")])
    assert res.returncode == 0, res.stderr
    res = _torchrun(["train", "--config", str(ddp), "--data-root", str(data), "--out", str(tmp / "two")],
                    env={"SWINLAB_TEST_NO_WRITE_RANK": "1"})
    assert res.returncode == 0, res.stderr
    return out


def test_only_rank0_writes_and_ddp_equals_one_process_with_the_same_global_batch(setup):
    one, two = setup["tmp"] / "one", setup["tmp"] / "two"
    # rank 1 ran with every write made to fail; the folder holds one run's files
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    ra, rb = records(one), records(two)
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == [6, 12]
    for a, b in zip(ra, rb):
        for key in ("train_loss", "val_loss", "val_top1", "lr"):
            assert b[key] == pytest.approx(a[key], rel=TOLERANCE, abs=1e-6), key
    wa, wb = weights(one / "last.pt"), weights(two / "last.pt")
    for k in wa:
        assert torch.allclose(wa[k], wb[k], rtol=TOLERANCE, atol=1e-5), k
    state = torch.load(two / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # every rank's RNG states
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])


def test_ddp_resume_equals_the_uninterrupted_ddp_run(setup):
    run = setup["tmp"] / "interrupted"
    args = ["train", "--config", str(setup["ddp"]), "--data-root", str(setup["data"]), "--out", str(run)]
    res = _torchrun(args, env={"SWINLAB_TEST_SIGNAL_STEP": "8"})  # epoch 2, step 2 of 6, on both ranks
    assert res.returncode != 0 and "Resume with: swinlab train --resume" in res.stderr, res.stderr
    state = torch.load(run / "last.pt", weights_only=True)
    assert (state["epoch"], state["batch"], state["step"]) == (1, 2, 8)
    res = run_cli(["train", "--resume", str(run)])  # one process: refused
    assert res.returncode == 2 and "trained by 2 process(es) and this is 1" in res.stderr
    res = _torchrun(["train", "--resume", str(run)], env={"SWINLAB_TEST_NO_WRITE_RANK": "1"})
    assert res.returncode == 0, res.stderr
    assert_same_run(run, setup["tmp"] / "two")


def test_killing_one_rank_stops_the_other_quickly(setup, tmp_path):
    run, pids = tmp_path / "run", tmp_path / "pids"
    pids.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(DRIVER),
           "train", "--config", str(setup["ddp"]), "--data-root", str(setup["data"]), "--out", str(run),
           "--epochs", "500"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "SWINLAB_TEST_PID_DIR": str(pids)})
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics_steps.csv").is_file():
        time.sleep(0.1)
    assert (run / "metrics_steps.csv").is_file(), "training did not start"
    rank0, rank1 = (int((pids / f"rank{r}.pid").read_text()) for r in (0, 1))
    t0 = time.time()
    os.kill(rank1, signal.SIGKILL)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.time() - t0
    assert elapsed < 30, f"rank 0 kept running {elapsed:.1f}s after rank 1 died"
    with pytest.raises(ProcessLookupError):
        os.kill(rank0, 0)
