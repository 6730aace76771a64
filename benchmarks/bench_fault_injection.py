"""Fault injection: kill -9 a real training run 10 times, resume it each time,
and compare the end with an uninterrupted run (a script, not a test).

The run: the main job's model on the first 10 classes of the real Tiny
ImageNet (5,000 train / 500 val images, decoded into memory), 8 epochs of 78
steps, no time budget (so the uninterrupted run is reproducible). First the
uninterrupted run; then the same run is killed with SIGKILL 10 times and
resumed after each kill (``swinlab train --resume``):

* 4 kills in the middle of a write -- of ``last.pt``, ``best.pt``,
  ``metrics.jsonl`` and ``config.json`` (``tests/integrity_driver.py`` writes
  half of the file, then kills the process);
* 6 kills at random moments (a random delay after the process started, at
  most a quarter of the uninterrupted run, so that the run never finishes early;
  seeded), wherever the run is then: loading data, training, evaluating,
  writing.

At the end the epoch records (timing fields aside) and the weights of
``last.pt`` and ``best.pt`` (model and EMA) must be identical.

Usage::

    python benchmarks/bench_fault_injection.py [--data-root ZIP] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "integrity_driver.py"
TIMING = ("images_per_s", "epoch_time_s", "time_s")
#: the first write of each kind in the process is cut in half, then the process is killed
WRITE_KILLS = ["last.pt:1", "best.pt:1", "metrics.jsonl:1", "config.json:1"]


def recipe(path: Path, data_root: str) -> list[str]:
    cfg = {
        "model": "swin_micro_patch4_window4_64", "drop_path_rate": 0.05, "data": "tiny-imagenet",
        "data_root": data_root, "num_classes": 10, "cache": True,
        "aug": {"img_size": 64, "crop_scale": [0.5, 1.0], "label_smoothing": 0.1},
        "epochs": 8, "batch_size": 64, "lr": 2e-3, "warmup_epochs": 0.5, "min_lr": 1e-5, "ema_decay": 0.99,
        "threads": 2, "progress": False, "tensorboard": True, "plots": False, "log_every": 10,
    }
    path.write_text(json.dumps(cfg))
    return ["train", "--config", str(path)]


def launch(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(DRIVER), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def records(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def tensors(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    out = dict(ckpt["model"])
    out.update({f"ema.{k}": v for k, v in (ckpt.get("ema") or {}).get("model", {}).items()})
    return out


def same(a: Path, b: Path) -> tuple[bool, str]:
    if records(a) != records(b):
        return False, "epoch records differ"
    for name in ("last.pt", "best.pt"):
        ta, tb = tensors(a / name), tensors(b / name)
        if ta.keys() != tb.keys() or not all(torch.equal(ta[k], tb[k]) for k in ta):
            return False, f"{name} weights differ"
    return True, "identical"


def kill_run(args: list[str], run: Path, plan: str, rng: random.Random, span: float) -> str:
    """Start (or resume) the run and kill it as ``plan`` says; returns what happened."""
    resume = ["train", "--resume", str(run)] if (run / "last.pt").exists() else args + ["--out", str(run)]
    if plan.startswith("write:"):
        proc = launch(resume, {"SWINLAB_TEST_KILL_WRITE": plan[len("write:"):]})
        proc.wait()
        what = "killed" if proc.returncode == -signal.SIGKILL else "NOT killed"
        return f"{what} during the write of {plan[6:]} (exit {proc.returncode})"
    delay = rng.uniform(2.0, span / 4)  # a quarter of the run at most: 10 kills never let it finish
    proc = launch(resume)
    try:
        proc.wait(timeout=delay)
        return f"NOT killed: finished before the kill at {delay:.1f} s (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return f"killed after {delay:.1f} s"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=os.environ.get("SWINLAB_DATA", str(REPO.parent / "shared" / "data" /
                                                                              "tiny-imagenet-200.zip")))
    p.add_argument("--seed", type=int, default=0, help="seed of the kill plan")
    p.add_argument("--work", help="folder for the two runs (default: a temporary one)")
    a = p.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="swinlab-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    args = recipe(work / "recipe.json", a.data_root)
    print(f"CPU ISA {torch.backends.cpu.get_cpu_capability()}; runs in {work}")
    t = time.time()
    ref = subprocess.run([sys.executable, str(DRIVER), *args, "--out", str(work / "uninterrupted")],
                         capture_output=True, text=True)
    if ref.returncode:
        raise SystemExit(ref.stderr)
    span = time.time() - t
    print(f"uninterrupted run: {span:.0f} s")
    rng = random.Random(a.seed)
    plans = [f"write:{w}" for w in WRITE_KILLS] + ["random"] * 6
    rng.shuffle(plans)
    faulty = work / "killed"
    kills = 0
    for i, plan in enumerate(plans, 1):
        what = kill_run(args, faulty, plan, rng, span)
        kills += what.startswith("killed")
        print(f"kill {i:2d}: {what}", flush=True)
    final = launch(["train", "--resume", str(faulty)] if (faulty / "last.pt").exists()
                   else args + ["--out", str(faulty)])
    _, err = final.communicate()
    if final.returncode:
        raise SystemExit(f"the final resume failed:\n{err}")
    ok, why = same(faulty, work / "uninterrupted")
    ok = ok and kills == len(plans)
    print(f"after {kills} kills (of {len(plans)} planned) and resumes: {why} ({'PASS' if ok else 'FAIL'})")
    leftovers = sorted(q.name for q in faulty.glob("*.tmp"))
    print(f"temporary files left: {leftovers or 'none'}")
    if not ok or leftovers:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
