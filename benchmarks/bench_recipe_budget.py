"""Two training recipes, one model, one CPU time budget: val top-1/top-5 on Tiny ImageNet.

Trains the same model (``swin_micro_patch4_window4_64`` by default) from scratch with

* ``ours``:   ``configs/quick_cpu_tiny_imagenet.json`` (AdamW lr 2e-3, warmup + cosine that
  follows the elapsed share of the budget, random resized crop, flip, label smoothing,
  gradient clipping);
* ``ref000``: reference 000's recipe (the Keras CIFAR-100 Swin example,
  ``configs/ref000_cifar100.json``) moved to Tiny ImageNet and the same model:
  ``configs/ref000_recipe_on_micro.json`` (AdamW lr 1e-3 constant, weight decay 1e-4,
  label smoothing 0.1, pad-4 random crop + flip, batch 128, no mixup, no drop path),

each with ``time_budget_min`` set to ``--budget-min`` (wall clock from the start of the run,
data decoding included; training stops when it is spent, then the FULL validation split,
10,000 images, is evaluated), the same seed and the same ``--amp`` setting. Each run is a
separate ``python -m swinlab train`` process (commands printed), run one after the other.

Prints a table (recipe, epochs done, train images, images/s, val top-1, top-5) and writes the
figures as JSON with ``--json-out``.

Usage:
    python benchmarks/bench_recipe_budget.py --budget-min 15 --json-out runs/bench_recipe_budget.json
    python benchmarks/bench_recipe_budget.py --recipes ref000 --budget-min 5
    # smoke check (not a benchmark): 5 classes, one validation batch
    python benchmarks/bench_recipe_budget.py --budget-min 0.1 --num-classes 5 --max-val-batches 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECIPES: dict[str, Path] = {
    "ours": REPO / "configs" / "quick_cpu_tiny_imagenet.json",
    "ref000": REPO / "configs" / "ref000_recipe_on_micro.json",
}
DESCRIPTIONS = {
    "ours": "quick_cpu_tiny_imagenet (lr 2e-3 warmup+cosine, RRC, LS 0.1, clip 5)",
    "ref000": "ref000 Keras recipe (lr 1e-3 const, wd 1e-4, pad-4 crop, LS 0.1)",
}


def command_str(cmd: list[str]) -> str:
    """A shell-quoted command line, with ``python`` for the running interpreter."""
    shown = ["python" if i == 0 and c == sys.executable else c for i, c in enumerate(cmd)]
    return shlex.join(shown)


def rel(path: str | Path) -> str:
    """``path`` relative to the repository root when inside it (the commands run there)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def train_command(config: str | Path, out: Path, *, budget_min: float | None = None, amp: str | None = None,
                  seed: int | None = None, model: str | None = None, extra: list[str] | None = None) -> list[str]:
    """The ``python -m swinlab train`` argument list of one run (fresh run directory, no bars)."""
    cmd = [sys.executable, "-m", "swinlab", "train", "--config", rel(config), "--out", rel(out), "--overwrite",
           "--no-progress"]
    if model:
        cmd += ["--model", model]
    if budget_min is not None:
        cmd += ["--time-budget-min", f"{budget_min:g}"]
    if amp:
        cmd += ["--amp", amp]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    return cmd + list(extra or [])


def summarize_run(run_dir: Path) -> dict[str, Any]:
    """Figures of a finished run directory (``config.json`` + ``metrics.jsonl``).

    Returns:
        ``epochs_completed`` (epoch records, the last one possibly partial),
        ``epochs_equiv`` (training images / images per epoch), ``train_images``,
        ``train_time_s``, ``images_per_s`` (training only), ``val_top1``, ``val_top5``,
        ``val_loss`` (last evaluation), ``stopped_by_budget``, ``steps``, ``amp_dtype``,
        ``num_params``, ``lr``.

    Raises:
        FileNotFoundError: no metrics in ``run_dir`` (the run failed before its first epoch).
    """
    from swinlab.training.logging import read_metrics

    records = read_metrics(run_dir / "metrics.jsonl")
    if not records:
        raise FileNotFoundError(f"no epoch records in {run_dir / 'metrics.jsonl'}")
    resolved = json.loads((run_dir / "config.json").read_text(encoding="utf-8")).get("_resolved", {})
    train_images = sum(int(r.get("train_images") or 0) for r in records)
    train_time = sum(float(r["train_images"]) / float(r["images_per_s"]) for r in records
                     if r.get("train_images") and r.get("images_per_s"))
    per_epoch = int(resolved.get("steps_per_epoch", 0)) * int(resolved.get("global_batch", 0))
    evals = [r for r in records if r.get("val_top1") is not None]
    last = evals[-1] if evals else {}
    return {
        "epochs_completed": int(records[-1]["epoch"]),
        "epochs_equiv": train_images / per_epoch if per_epoch else None,
        "train_images": train_images,
        "train_time_s": train_time,
        "images_per_s": train_images / train_time if train_time > 0 else None,
        "val_top1": last.get("val_top1"),
        "val_top5": last.get("val_top5"),
        "val_loss": last.get("val_loss"),
        "stopped_by_budget": bool(records[-1].get("partial_epoch")),
        "steps": int(records[-1].get("step") or 0),
        "amp_dtype": resolved.get("amp_dtype"),
        "num_params": resolved.get("num_params"),
        "lr": resolved.get("lr"),
        "num_classes": resolved.get("num_classes"),
    }


def run_train(name: str, cmd: list[str], run_dir: Path) -> dict[str, Any]:
    """Run one ``swinlab train`` process (its output goes to this process's stderr) and
    summarize its run directory; failures are recorded, not raised."""
    print(f"\n[{name}] {command_str(cmd)}", file=sys.stderr, flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, stdout=sys.stderr, stderr=sys.stderr, check=False)
    row: dict[str, Any] = {"name": name, "command": command_str(cmd), "run_dir": str(run_dir),
                           "returncode": proc.returncode, "wall_s": time.time() - t0}
    if proc.returncode != 0:
        row["error"] = f"swinlab train exited with {proc.returncode}"
        return row
    try:
        row.update(summarize_run(run_dir))
    except (FileNotFoundError, ValueError, KeyError) as e:
        row["error"] = str(e)
    return row


def fmt(v: Any, spec: str, missing: str = "-") -> str:
    """``format(v, spec)``, or ``missing`` for None."""
    return missing if v is None else format(v, spec)


def print_table(rows: list[dict[str, Any]], budget_min: float, max_val_batches: int | None = None) -> None:
    """The results table (stdout)."""
    head = (f"{'recipe':8s} {'epochs':>12s} {'train imgs':>11s} {'img/s':>7s} {'val top-1':>9s} {'top-5':>7s} "
            f"{'wall s':>7s}  amp")
    val = "the full validation split" if max_val_batches is None else f"{max_val_batches} validation batch(es)"
    print(f"\nTraining-time budget {budget_min:g} min per recipe (data decoding included), then {val}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.get("error"):
            print(f"{r['name']:8s} FAILED: {r['error']}")
            continue
        ep = f"{r['epochs_completed']} ({fmt(r['epochs_equiv'], '.2f')})"
        print(f"{r['name']:8s} {ep:>12s} {r['train_images']:>11d} {fmt(r['images_per_s'], '7.0f')} "
              f"{fmt(r['val_top1'], '8.2f')}% {fmt(r['val_top5'], '6.2f')}% {r['wall_s']:7.0f}  "
              f"{r.get('amp_dtype') or 'fp32'}")
    print("epochs: epoch records (full-epoch equivalents of the training images seen)")
    for r in rows:
        if not r.get("error") and not r.get("stopped_by_budget"):
            print(f"note: {r['name']} ended at its epochs limit before the budget was spent")
    print("\ncommands:")
    for r in rows:
        print(f"  [{r['name']}] {r['command']}")


def main(argv: list[str] | None = None) -> int:
    """Run the selected recipes one after the other and print / save the table; exit code 1 if a run failed."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-min", type=float, default=15.0, help="time budget per recipe [min] (default 15)")
    p.add_argument("--model", default="swin_micro_patch4_window4_64", help="the model both recipes train")
    p.add_argument("--recipes", default="ours,ref000", help="comma-separated: ours, ref000 (default both)")
    p.add_argument("--amp", default="auto", choices=("none", "bf16", "fp16", "auto"),
                   help="mixed precision for both runs (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=REPO / "runs" / "bench_recipe_budget",
                   help="run directories go to OUT_DIR/<recipe>")
    p.add_argument("--data-root", help="Tiny ImageNet zip/folder (default: swinlab's search)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--ours-config", type=Path, default=RECIPES["ours"])
    p.add_argument("--ref000-config", type=Path, default=RECIPES["ref000"])
    p.add_argument("--num-classes", type=int, help="first K classes only (smoke checks; default all 200)")
    p.add_argument("--max-train-batches", type=int, help="batches per epoch (smoke checks)")
    p.add_argument("--max-val-batches", type=int, help="validation batches (smoke checks; default: all)")
    p.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every recipe (repeatable)")
    p.add_argument("--json-out", type=Path, help="write the results as JSON here")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = p.parse_args(argv)

    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown or not names:
        p.error(f"--recipes: unknown {unknown}; choose from {', '.join(RECIPES)}")
    configs = {"ours": args.ours_config, "ref000": args.ref000_config}
    extra: list[str] = []
    for flag, value in (("--data-root", args.data_root), ("--threads", args.threads),
                        ("--num-classes", args.num_classes), ("--max-train-batches", args.max_train_batches),
                        ("--max-val-batches", args.max_val_batches)):
        if value is not None:
            extra += [flag, str(value)]
    for item in args.set_items:
        extra += ["--set", item]
    runs = [(n, train_command(configs[n], args.out_dir / n, budget_min=args.budget_min, amp=args.amp,
                              seed=args.seed, model=args.model, extra=extra)) for n in names]
    if args.dry_run:
        for n, cmd in runs:
            print(f"[{n}] {command_str(cmd)}")
        return 0

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model {args.model}; "
          f"budget {args.budget_min:g} min; amp {args.amp}; seed {args.seed}", file=sys.stderr)
    rows = []
    for n, cmd in runs:
        row = run_train(n, cmd, args.out_dir / n)
        row["recipe"] = DESCRIPTIONS[n]
        row["config"] = str(configs[n])
        rows.append(row)
    print_table(rows, args.budget_min, args.max_val_batches)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        out = {"benchmark": "recipe_budget", "budget_min": args.budget_min, "model": args.model,
               "amp": args.amp, "seed": args.seed, "num_classes": args.num_classes,
               "max_val_batches": args.max_val_batches, "torch": torch.__version__,
               "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": rows}
        args.json_out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"\nJSON: {args.json_out}")
    return 0 if all(not r.get("error") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
