"""The measurements that chose the main job's recipe (benchmarks/RESULTS_train.md).

Each experiment is the old quick recipe (the base commit's: official init,
random-resized crop 0.35-1, flip, lr 2e-3, batch 128) with a few keys changed,
trained with ``swinlab train`` in a fresh process on the full Tiny ImageNet and
evaluated on all 10,000 val images after every epoch. Rounds run one after the
other; nothing else may compute meanwhile (2 cores).

    python benchmarks/recipe_search.py --round 1            # init and augmentation, 2 epochs each
    python benchmarks/recipe_search.py --round 2            # lr, batch, width, padded crop, 2 epochs
    python benchmarks/recipe_search.py --round 3            # fixed 64 px vs progressive resizing, 15-min budget
    python benchmarks/recipe_search.py --round 5ep          # the final recipe, exactly 5 epochs, no budget

Prints one JSON line per experiment (val top-1 per epoch, images/s) and
appends it to ``--log``. The CPU's ISA and the precision chosen are printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

OLD_QUICK = {
    "model": "swin_micro_patch4_window4_64", "drop_path_rate": 0.0, "data": "tiny-imagenet", "cache": True,
    "aug": {"img_size": 64, "random_resized_crop": True, "crop_scale": [0.35, 1.0], "hflip": 0.5,
            "label_smoothing": 0.1, "eval_crop_ratio": 0.875},
    "epochs": 2, "batch_size": 128, "lr": 2e-3, "lr_schedule": "cosine", "warmup_epochs": 0.2,
    "warmup_lr_init": 1e-5, "min_lr": 1e-5, "weight_decay": 0.05, "clip_grad": 5.0, "amp": "auto", "seed": 0,
    "threads": 2, "progress": False, "tensorboard": False, "plots": True, "log_every": 50,
}
KERAS = {"model_overrides": {"init": "keras"}}
FLIP_ONLY = {"aug": {"random_resized_crop": False, "eval_crop_ratio": 1.0}}
BUDGET_15 = {"epochs": 40, "time_budget_min": 15}


def _merge(*dicts: dict) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


ROUNDS = {
    "1": {"old_quick": {}, "keras_init": KERAS, "keras_flip_only": _merge(KERAS, FLIP_ONLY),
          "official_flip_only": FLIP_ONLY},
    "2": {name: _merge(KERAS, FLIP_ONLY, over) for name, over in {
        "lr4e-3": {"lr": 4e-3}, "lr1e-3": {"lr": 1e-3}, "batch64": {"batch_size": 64},
        "embed_dim64": {"model_overrides": {"embed_dim": 64}}, "pad_crop4": {"aug": {"pad_crop": 4}}}.items()},
    "3": {"fixed64_15min": _merge(KERAS, FLIP_ONLY, BUDGET_15),
          "progressive_15min": _merge(KERAS, FLIP_ONLY, BUDGET_15,
                                      {"progressive_resize": [[0, 32], [0.4, 48], [0.7, 64]]})},
}


def _run(name: str, cfg: dict, data_root: str, out_dir: Path, log: Path, config_name: str | None = None) -> dict:
    out = out_dir / name
    out.mkdir(parents=True, exist_ok=True)
    if config_name:  # a shipped recipe, with --set overrides
        argv = ["--config", config_name] + [a for k, v in cfg.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    else:
        (out / "recipe.json").write_text(json.dumps(cfg, indent=1))
        argv = ["--config", str(out / "recipe.json")]
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "swinlab", "train", *argv, "--data-root", data_root,
                        "--out", str(out / "run"), "--overwrite", "--no-progress"],
                       capture_output=True, text=True, cwd=ROOT)
    rows = [json.loads(l) for l in (out / "run" / "metrics.jsonl").read_text().splitlines()] \
        if (out / "run" / "metrics.jsonl").exists() else []
    res = {"name": name, "rc": r.returncode, "wall_s": round(time.time() - t),
           "val_top1": [round(h["val_top1"], 2) for h in rows if h.get("val_top1") is not None],
           "val_top5": [round(h["val_top5"], 2) for h in rows if h.get("val_top5") is not None],
           "epoch": [round(h["epoch_frac"], 2) for h in rows],
           "images_per_s": [round(h["images_per_s"] or 0) for h in rows],
           "precision": next((l for l in r.stdout.splitlines() if l.startswith("device ")), ""),
           "error": r.stderr[-600:] if r.returncode else ""}
    with log.open("a") as f:
        f.write(json.dumps(res) + "\n")
    print(json.dumps(res), flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--round", required=True, choices=[*ROUNDS, "5ep"])
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "tiny-imagenet-200.zip"))
    p.add_argument("--out", default=str(ROOT / "runs" / "recipe_search"))
    p.add_argument("--log", default=str(ROOT / "runs" / "recipe_search" / "results.jsonl"))
    args = p.parse_args()
    out, log = Path(args.out), Path(args.log)
    out.mkdir(parents=True, exist_ok=True)
    print(f"CPU ISA {torch.backends.cpu.get_cpu_capability()}; round {args.round}", flush=True)
    if args.round == "5ep":  # the shipped main-job recipe, exactly 5 epochs, no budget, val every epoch
        _run("main_recipe_5_epochs", {"epochs": 5, "time_budget_min": None, "eval_every": 1},
             args.data_root, out, log, config_name="quick_cpu_tiny_imagenet")
        return
    for name, over in ROUNDS[args.round].items():
        _run(name, _merge(OLD_QUICK, over), args.data_root, out, log)


if __name__ == "__main__":
    main()
