"""Training recipes at one CPU time budget: val top-1/top-5 on Tiny ImageNet
(a script, not a test).

Contenders, each a fresh ``swinlab train`` process with the same wall-clock
budget (``--budget-min``, from the start of the run: data decoding included;
training stops when it is spent, then the whole val split, 10,000 images, is
evaluated), the same seed and the real data:

* ``main``: the main job's recipe (``quick_cpu_tiny_imagenet``), today's code;
* ``ref000``: reference 000's recipe as published (``ref000_recipe_on_micro``:
  AdamW 1e-3 constant, Keras weight decay 1e-4 on every weight, epsilon 1e-7,
  label smoothing 0.1, flip only, batch 128, Keras initialisers) on the main
  job's model, today's code;
* ``old_main``: the main job of commit 056c22d (its code, run from a git
  worktree, and its ``configs/quick_cpu_tiny_imagenet.json``), given the
  same budget.

``--amp none`` runs every contender in fp32 (the recipes' ``auto`` uses bf16
on CPUs with AMX or AVX512-BF16). Prints a table with the CPU's ISA and the
precision, and the commands; ``--json-out`` keeps the figures.

Usage::

    python benchmarks/bench_recipe_budget.py --budget-min 15 --json-out runs/bench_recipe_budget.json
    python benchmarks/bench_recipe_budget.py --contenders main ref000 --budget-min 15 --amp none
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from baseline import BASE_COMMIT, baseline_src

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = os.environ.get("SWINLAB_DATA", str(REPO.parent / "shared" / "data" / "tiny-imagenet-200.zip"))
CONTENDERS = ("main", "ref000", "old_main")


def command(contender: str, out: Path, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment of one contender."""
    env: dict[str, str] = {}
    if contender == "old_main":
        src = baseline_src(BASE_COMMIT)
        env["PYTHONPATH"] = str(src.parent)
        config = str(src.parents[1] / "configs" / "quick_cpu_tiny_imagenet.json")
        cmd = [sys.executable, "-m", "swinlab", "train", "--config", config, "--no-progress"]
    else:
        recipe = {"main": "quick_cpu_tiny_imagenet", "ref000": "ref000_recipe_on_micro"}[contender]
        cmd = [sys.executable, "-m", "swinlab", "train", "--config", recipe, "--no-progress"]
        if contender == "ref000":
            main_model = json.loads((REPO / "src" / "swinlab" / "configs" / "quick_cpu_tiny_imagenet.json")
                                    .read_text())["model"]
            cmd += ["--model", main_model]  # the same model as the main job
    cmd += ["--data-root", args.data_root, "--out", str(out), "--overwrite", "--time-budget-min",
            f"{args.budget_min:g}", "--seed", str(args.seed)]
    if args.amp:
        cmd += ["--amp", args.amp]
    return cmd, env


def summary(run: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    cfg = json.loads((run / "config.json").read_text())
    res = cfg.get("_resolved", {})
    return {
        "epochs": last.get("epoch_frac", last.get("epoch")), "val_top1": last["val_top1"],
        "val_top5": last["val_top5"], "images_per_s": last.get("images_per_s"),
        "precision": res.get("amp_dtype") or cfg.get("amp"), "curve": [(r.get("epoch_frac", r["epoch"]),
                                                                         r.get("val_top1")) for r in rows],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    p.add_argument("--budget-min", type=float, default=15.0)
    p.add_argument("--data-root", default=DEFAULT_DATA)
    p.add_argument("--amp", choices=("none", "bf16", "auto"), help="override every recipe's amp")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", default=str(REPO / "runs" / "bench_recipe_budget"))
    p.add_argument("--json-out")
    args = p.parse_args()
    print(f"CPU ISA {torch.backends.cpu.get_cpu_capability()}; budget {args.budget_min:g} min each; "
          f"amp {args.amp or 'as each recipe says'}")
    results = {}
    for contender in args.contenders:
        out = Path(args.runs_dir) / f"{contender}{'_' + args.amp if args.amp else ''}"
        cmd, env = command(contender, out, args)
        print(f"\n$ {' '.join(f'{k}={v}' for k, v in env.items())} {shlex.join(cmd)}", flush=True)
        t = time.time()
        res = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(f"{contender} failed:\n{res.stderr[-3000:]}")
        results[contender] = {**summary(out), "wall_s": time.time() - t, "command": shlex.join(cmd)}
        r = results[contender]
        print(f"{contender}: {r['val_top1']:.2f}% top-1, {r['val_top5']:.2f}% top-5 after {r['epochs']:.2f} "
              f"epochs ({r['images_per_s'] or 0:.0f} img/s, {r['precision']}), {r['wall_s']:.0f} s wall clock")
    print(f"\n{'contender':<10}{'epochs':>8}{'img/s':>8}{'precision':>11}{'top-1':>8}{'top-5':>8}")
    for name, r in results.items():
        print(f"{name:<10}{r['epochs']:>8.2f}{r['images_per_s'] or 0:>8.0f}{str(r['precision']):>11}"
              f"{r['val_top1']:>7.2f}%{r['val_top5']:>7.2f}%")
    if "main" in results:
        for other in (o for o in results if o != "main"):
            print(f"main - {other}: {results['main']['val_top1'] - results[other]['val_top1']:+.2f} points top-1")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
