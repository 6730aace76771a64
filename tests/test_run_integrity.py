"""Run folders a user can trust (issue 9): resume stays in its folder, runs
can be extended without an lr jump or a stale budget, one writer per folder,
crash-safe writes (kill -9 during each kind of write), verified checkpoints,
Ctrl-C inside an epoch. Most runs go through ``tests/integrity_driver.py``
(a real ``swinlab train`` process, with faults injected)."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from runs_helpers import assert_same_run, make_squares, records, run_cli, tiny_recipe
from swinlab.cli.main import main
from swinlab.io.rundir import RunDir


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    """The data, the recipe and one uninterrupted 3-epoch run to compare with."""
    tmp = tmp_path_factory.mktemp("integrity")
    data = make_squares(tmp / "data")
    recipe = tiny_recipe(tmp / "tiny.json")
    ref = tmp / "reference"
    res = run_cli(["train", "--config", str(recipe), "--data-root", str(data), "--out", str(ref)])
    assert res.returncode == 0, res.stderr
    return {"tmp": tmp, "data": data, "recipe": recipe, "ref": ref}


def _train(base: dict, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(["train", "--config", str(base["recipe"]), "--data-root", str(base["data"]), "--out", str(out),
                    *extra], env=env)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_of_a_copy_changes_only_the_copy(base, tmp_path):
    original = tmp_path / "runs" / "original"
    assert _train(base, original, "--epochs", "1").returncode == 0
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    before = _snapshot(original)
    # resume the copy by a relative path from another working directory
    res = run_cli(["train", "--resume", "copy", "--epochs", "2"], cwd=copy.parent)
    assert res.returncode == 0, res.stderr
    assert _snapshot(original) == before  # byte-identical
    assert [r["epoch"] for r in records(copy)] == [1, 2]
    assert not (copy.parent / "runs").exists()
    res = run_cli(["train", "--resume", str(copy), "--epochs", "3", "--out", str(original)])
    assert res.returncode == 2 and "--resume continues in its own folder" in res.stderr


def _lrs(run: Path) -> list[tuple[int, float]]:
    with (run / "metrics_steps.csv").open() as f:
        return [(int(r["step"]), float(r["lr"])) for r in csv.DictReader(f)]


def test_epochs_extension_continues_the_lr_without_a_jump(base, tmp_path):
    run = tmp_path / "run"
    assert _train(base, run, "--epochs", "2", "--set", "log_every=1").returncode == 0
    before = _lrs(run)
    res = run_cli(["train", "--resume", str(run), "--epochs", "4"])
    assert res.returncode == 0, res.stderr
    after = [lr for step, lr in _lrs(run) if step > before[-1][0]]
    assert len(after) == 2 * 12  # two more epochs of 12 steps
    assert after[0] <= before[-1][1] + 1e-12  # no jump back up
    assert all(b <= a + 1e-12 for a, b in zip(after, after[1:]))  # still decaying
    assert after[-1] == pytest.approx(1e-5, rel=1e-6)  # reaches min_lr at the new end
    assert [r["epoch"] for r in records(run)] == [1, 2, 3, 4]


def test_budgeted_resume_trains_for_the_granted_minutes(base, tmp_path):
    run = tmp_path / "run"
    first = _train(base, run, "--epochs", "200", "--time-budget-min", "0.0001")
    assert first.returncode == 0, first.stderr
    steps_before = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    t0 = time.time()
    res = run_cli(["train", "--resume", str(run), "--time-budget-min", "0.2"])  # 12 s more
    assert res.returncode == 0, res.stderr
    assert time.time() - t0 >= 12.0
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] > steps_before + 12  # trained (more than an epoch), not one step
    assert "time budget reached" in res.stderr


def test_second_training_into_a_locked_folder_is_refused(base, tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom swinlab.io.rundir import RunDir\n"
                               "RunDir(sys.argv[1]).lock().acquire()\nprint('locked', flush=True)\ntime.sleep(60)",
                               str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc = main(["train", "--config", str(base["recipe"]), "--data-root", str(base["data"]), "--out", str(run)])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("swinlab train: error: run folder") and f"process {holder.pid}" in err
        assert not (run / "last.pt").exists()
    finally:
        holder.kill()
        holder.wait(30)
    # the holder died (kill -9): its stale lock is taken over
    rc = main(["train", "--config", str(base["recipe"]), "--data-root", str(base["data"]), "--out", str(run),
               "--epochs", "1"])
    assert rc == 0 and (run / "last.pt").is_file()


@pytest.mark.parametrize("kill_at", ["last.pt:2", "best.pt:1", "metrics.jsonl:2", "config.json"])
def test_kill_during_a_write_then_resume_equals_the_uninterrupted_run(base, tmp_path, kill_at):
    run = tmp_path / "run"
    if kill_at == "config.json":  # the config write of a resumed invocation
        assert _train(base, run, env={"SWINLAB_TEST_KILL_WRITE": "last.pt:2"}).returncode == -signal.SIGKILL
        res = run_cli(["train", "--resume", str(run)], env={"SWINLAB_TEST_KILL_WRITE": "config.json:1"})
    else:
        res = _train(base, run, env={"SWINLAB_TEST_KILL_WRITE": kill_at})
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert list(run.glob("*.tmp"))  # the killed write left its temporary file
    res = run_cli(["train", "--resume", str(run)])
    assert res.returncode == 0, res.stderr
    assert not list(run.glob("*.tmp"))
    assert_same_run(run, base["ref"])


def _flip_tensor_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = len(data) // 2
    data[start:start + 16] = bytes(255 - b for b in data[start:start + 16])
    path.write_bytes(bytes(data))


def test_damaged_checkpoints_are_refused_by_name(base, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(base, run, "--epochs", "1").returncode == 0
    _flip_tensor_bytes(run / "best.pt")
    _flip_tensor_bytes(run / "last.pt")
    image = next((base["data"] / "val").rglob("*.png"))
    for argv in (["evaluate", str(run), "--no-progress"], ["predict", str(run), str(image)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "best.pt" in err and ("is damaged" in err or "cannot read" in err), err
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "last.pt" in err and ("is damaged" in err or "cannot read" in err), err
    (run / "last.pt").write_bytes(b"")
    assert main(["train", "--resume", str(run)]) == 2
    assert "last.pt is empty (0 bytes)" in capsys.readouterr().err


def test_sigint_inside_an_epoch_then_resume_equals_the_uninterrupted_run(base, tmp_path):
    run = tmp_path / "run"
    res = _train(base, run, env={"SWINLAB_TEST_SIGNAL_STEP": "17"})  # epoch 2, step 5 of 12
    assert res.returncode == 130, res.stderr
    assert f"Resume with: swinlab train --resume {run}" in res.stderr
    state = torch.load(run / "last.pt", weights_only=True)
    assert (state["epoch"], state["batch"], state["step"]) == (1, 5, 17)
    res = run_cli(["train", "--resume", str(run)])
    assert res.returncode == 0, res.stderr
    assert_same_run(run, base["ref"])


def test_sigterm_from_outside_saves_and_resumes_exactly(base, tmp_path):
    run = tmp_path / "run"
    recipe = tiny_recipe(tmp_path / "slow.json", epochs=3, log_every=1)
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("integrity_driver.py")), "train",
                             "--config", str(recipe), "--data-root", str(base["data"]), "--out", str(run)],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics_steps.csv").is_file():
        time.sleep(0.05)
    while time.time() < deadline and len((run / "metrics_steps.csv").read_text().splitlines()) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 143, err
    res = run_cli(["train", "--resume", str(run)])
    assert res.returncode == 0, res.stderr
    assert_same_run(run, base["ref"])
    assert np.isfinite([r["val_top1"] for r in records(run)]).all()


def test_bad_out_and_diverging_loss_are_one_line_errors(base, tmp_path, capsys):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    rc = main(["train", "--config", str(base["recipe"]), "--data-root", str(base["data"]), "--out", str(afile)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "is a file, not a folder" in err
    rc = main(["train", "--config", str(base["recipe"]), "--data-root", str(base["data"]),
               "--out", str(tmp_path / "div"), "--lr", "1e30", "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "the training loss became" in err and "step" in err and "lr" in err and "--lr" in err
    assert RunDir(tmp_path / "div").lock().acquire()  # the lock was released
