"""Transfer of a swinlab-pretrained Swin: fine-tuning vs. from scratch, and a linear probe.

The weights acceptance check: a Swin pretrained by swinlab on Tiny ImageNet (e.g. the quick
recipe's run ``runs/main``) is

(a) fine-tuned at another input size and class count (default: the first 20 Tiny ImageNet
    classes at 96x96) with ``swinlab train --pretrained`` (the weights loader re-initialises
    the head for the new class count and adapts the position tables when needed), recipe
    ``configs/finetune_tiny_imagenet_96.json`` (lr 5e-4, short warmup, cosine);
(b) compared with the same model trained from scratch on the same data with the same
    recipe and time budget, but the quick recipe's from-scratch learning rate (2e-3,
    warmup 0.3 epoch, min lr 2e-5) and no pretrained weights;
(c) linear-probed: ``swinlab features`` of the PRETRAINED model (not the fine-tuned one) at
    its own input size (64 px) on the 20 classes' train images (500 per class, or
    ``--probe-train-per-class``) and their 1,000 validation images, then a multinomial
    logistic regression on the standardised features (full-batch L-BFGS in torch, the L2
    strength picked on a 10 % hold-out of the training features) -> val top-1 / top-5.

Without ``--pretrained``, a short pretraining of the quick recipe on all 200 classes
(``--pretrain-budget-min``) runs first. Runs (a), (b) and the pretraining are separate
``python -m swinlab train`` processes; the probe features come from ``python -m swinlab
features`` (or in-process :func:`swinlab.inference.extract_features` with
``--probe-features api``). Prints a table and the commands; ``--json-out`` writes the figures.

Usage:
    python benchmarks/bench_finetune.py --pretrained runs/main --budget-min 3 --json-out runs/bench_finetune.json
    python benchmarks/bench_finetune.py --pretrain-budget-min 10 --budget-min 3      # pretrains first
    # smoke check (not a benchmark):
    python benchmarks/bench_finetune.py --pretrain-budget-min 0.1 --pretrain-num-classes 10 --budget-min 0.1 \\
        --max-val-batches 1 --probe-train-per-class 20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recipe_budget import REPO, command_str, fmt, rel, run_train, train_command  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "finetune_tiny_imagenet_96.json"
QUICK_CONFIG = REPO / "configs" / "quick_cpu_tiny_imagenet.json"


# ------------------------------------------------------------------ pretrained source
def weights_for_train(source: Path) -> Path:
    """The path to give ``swinlab train --pretrained``.

    A run directory is turned into its ``best.pt`` (else ``last.pt``; else its ``export/``):
    ``swinlab.weights.load_pretrained`` reads folders only in the save_pretrained / Hugging
    Face layout (``model.safetensors``), not run directories. Files and export folders are
    used as they are.

    Raises:
        FileNotFoundError: nothing loadable at ``source``.
    """
    if source.is_file():
        return source
    if source.is_dir():
        for name in ("best.pt", "last.pt"):
            if (source / name).is_file():
                return source / name
        if (source / "model.safetensors").is_file():
            return source
        if (source / "export" / "model.safetensors").is_file():
            return source / "export"
    raise FileNotFoundError(f"--pretrained {source}: no best.pt / last.pt / model.safetensors found")


def check_transfer(model_name: str, weights: Path, num_classes: int, img_size: int) -> dict[str, Any]:
    """Load ``weights`` into the fine-tuning model as the engine will (strict) and report
    what was adapted / re-initialised, before any training time is spent.

    Raises:
        ValueError: the weights do not fit (the loader's message lists the keys).
    """
    from swinlab import create_model
    from swinlab.models import get_model_spec
    from swinlab.weights import load_pretrained

    kwargs = get_model_spec(model_name).kwargs
    resize = "img_size" in kwargs and kwargs["img_size"] != img_size and "resize_to" not in kwargs  # as the engine
    model = create_model(model_name, num_classes=num_classes, img_size=img_size if resize else None)
    report = load_pretrained(model, str(weights), strict=True)
    return {"loaded": len(report.loaded), "adapted": list(report.adapted),
            "reinitialized": list(report.reinitialized), "layout": report.layout, "ok": report.ok}


def source_info(source: Path) -> dict[str, Any]:
    """Model name, class count and input size of the pretrained source."""
    from swinlab.inference import load_model

    model, info = load_model(source, device="cpu")
    return {"model_name": info.model_name, "num_classes": info.num_classes, "img_size": info.img_size,
            "num_params": sum(p.numel() for p in model.parameters())}


# ------------------------------------------------------------------ linear probe
def probe_specs(num_classes: int, per_class: int | None, data_root: str | None) -> dict[str, Any]:
    """Image specs (``ZIP::MEMBER`` or file paths) and labels of the probe's train / val images.

    Train: the first ``per_class`` images (by name) of each of the first ``num_classes``
    classes, as whole-folder specs when all are used; val: every val image of those classes.
    """
    from swinlab.data import build_dataset

    out: dict[str, Any] = {}
    for split in ("train", "val"):
        ds = build_dataset("tiny-imagenet", data_root, split=split, num_classes=num_classes)
        root = Path(ds.source_path)

        def spec(member: str, root: Path = root) -> str:
            return f"{root}::{member}" if root.is_file() else str(root / member)

        labels: dict[str, int] = {}
        inputs: list[str] = []
        if split == "train":
            seen: dict[int, int] = {}
            folders: dict[int, str] = {}
            for name, y in zip(ds.image_names, ds.targets):
                folders.setdefault(y, name.rsplit("/", 1)[0] + "/")
                if per_class is not None and seen.get(y, 0) >= per_class:
                    continue
                seen[y] = seen.get(y, 0) + 1
                labels[name] = y
                inputs.append(spec(name))
            full = per_class is None or all(seen.get(y, 0) == sum(1 for t in ds.targets if t == y) for y in folders)
            if full and root.is_file():  # whole class folders: 20 arguments instead of 10,000
                inputs = [spec(folders[y]) for y in sorted(folders)]
        else:
            for name, y in zip(ds.image_names, ds.targets):
                labels[name] = y
                inputs.append(spec(name))
        out[split] = {"inputs": inputs, "labels": labels, "count": len(labels)}
    return out


def _member(name: str) -> str:
    return name.split("::", 1)[1] if "::" in name else name


def features_cli(source: Path, inputs: list[str], out: Path, batch_size: int) -> tuple[str, float]:
    """Run ``python -m swinlab features SOURCE INPUTS --out OUT``; returns (command, seconds).

    Raises:
        RuntimeError: the command failed.
    """
    cmd = [sys.executable, "-m", "swinlab", "features", rel(source), *inputs, "--out", rel(out),
           "--batch-size", str(batch_size), "--device", "cpu"]
    what = "class folders" if all(i.endswith("/") for i in inputs) else "image specs"
    abbrev = [f"<{len(inputs)} {what}: {inputs[0]} ...>"] if len(inputs) > 2 else inputs
    shown = cmd[:5] + abbrev + cmd[5 + len(inputs):]
    print(f"\n[features] {command_str(shown)}", file=sys.stderr, flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, stdout=sys.stderr, stderr=sys.stderr, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"swinlab features exited with {proc.returncode}")
    return command_str(shown), time.time() - t0


def features_api(source: Path, inputs: list[str], out: Path, batch_size: int) -> tuple[str, float]:
    """In-process :func:`swinlab.inference.extract_features` + ``save_features``."""
    from swinlab.inference import expand_inputs, extract_features, load_model, save_features

    t0 = time.time()
    model, info = load_model(source, device="cpu")
    specs = expand_inputs(inputs)
    feats, names = extract_features(model, info, specs, batch_size=batch_size)
    save_features(out, feats, names)
    return f"swinlab.inference.extract_features({rel(source)}, {len(specs)} images)", time.time() - t0


def load_labelled(path: Path, labels: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Features file -> ``(X float32 (N, C), y int64 (N,))`` with labels looked up by member name.

    Raises:
        KeyError: a feature row whose image is not in ``labels``.
    """
    from swinlab.inference import load_features

    feats, names = load_features(path)
    keep = [i for i, n in enumerate(names) if _member(n) in labels]
    if len(keep) != len(labels):
        missing = len(labels) - len(keep)
        raise KeyError(f"{path}: {missing} of the {len(labels)} probe images have no feature row")
    x = torch.from_numpy(feats[keep]).float()
    y = torch.tensor([labels[_member(names[i])] for i in keep], dtype=torch.long)
    return x, y


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, max_iter: int = 300) -> torch.nn.Linear:
    """Multinomial logistic regression, ``mean CE + l2/2 ||W||^2``, full-batch L-BFGS."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(x), y) + 0.5 * l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


def topk_acc(logits: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """Top-k accuracy [%]."""
    k = min(k, logits.shape[1])
    return 100.0 * float((logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).float().mean())


def linear_probe(xtr: torch.Tensor, ytr: torch.Tensor, xva: torch.Tensor, yva: torch.Tensor, num_classes: int,
                 l2_grid: list[float]) -> dict[str, Any]:
    """Standardise with the train statistics, pick l2 on a 10 % stratified hold-out of the
    training features (when the grid has several values), refit on all training features,
    report val top-1 / top-5."""
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xva = (xtr - mean) / std, (xva - mean) / std
    holdout = {}
    best = l2_grid[0]
    if len(l2_grid) > 1:
        g = torch.Generator().manual_seed(0)
        perm = torch.randperm(len(ytr), generator=g)
        is_val = torch.zeros(len(ytr), dtype=torch.bool)
        for c in range(num_classes):  # 10 % of every class
            idx = perm[ytr[perm] == c]
            is_val[idx[: max(1, len(idx) // 10)]] = True
        for l2 in l2_grid:
            lin = fit_logistic(xtr[~is_val], ytr[~is_val], num_classes, l2)
            with torch.no_grad():
                holdout[l2] = topk_acc(lin(xtr[is_val]), ytr[is_val], 1)
        best = max(l2_grid, key=lambda v: (holdout[v], v))
    lin = fit_logistic(xtr, ytr, num_classes, best)
    with torch.no_grad():
        tr_logits, va_logits = lin(xtr), lin(xva)
    return {"l2": best, "holdout_top1": {str(k): v for k, v in holdout.items()},
            "train_top1": topk_acc(tr_logits, ytr, 1), "val_top1": topk_acc(va_logits, yva, 1),
            "val_top5": topk_acc(va_logits, yva, 5), "feature_dim": int(xtr.shape[1]),
            "train_images": int(len(ytr)), "val_images": int(len(yva))}


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    """Pretrain (if needed), fine-tune, train from scratch, linear-probe; print / save the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", type=Path, metavar="RUN_DIR_OR_EXPORT",
                   help="swinlab-pretrained model: run dir (best.pt), checkpoint file or export folder")
    p.add_argument("--pretrain-budget-min", type=float, default=10.0,
                   help="without --pretrained: pretrain the quick recipe this long first (default 10)")
    p.add_argument("--pretrain-config", type=Path, default=QUICK_CONFIG)
    p.add_argument("--pretrain-num-classes", type=int, help="pretraining classes (smoke checks; default 200)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="fine-tuning recipe")
    p.add_argument("--model", help="model name (default: the pretrained model's)")
    p.add_argument("--num-classes", type=int, default=20, help="first K Tiny ImageNet classes (default 20)")
    p.add_argument("--img-size", type=int, default=96, help="fine-tuning input size (default 96)")
    p.add_argument("--budget-min", type=float, default=3.0, help="time budget per training run [min] (default 3)")
    p.add_argument("--ft-lr", type=float, help="fine-tuning lr (default: the recipe's, 5e-4)")
    p.add_argument("--scratch-lr", type=float, help="from-scratch lr (default: the quick recipe's, 2e-3)")
    p.add_argument("--amp", default="auto", choices=("none", "bf16", "fp16", "auto"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="Tiny ImageNet zip/folder (default: swinlab's search)")
    p.add_argument("--threads", type=int, help="torch CPU threads for the training runs")
    p.add_argument("--out-dir", type=Path, default=REPO / "runs" / "bench_finetune")
    p.add_argument("--max-train-batches", type=int, help="batches per epoch (smoke checks)")
    p.add_argument("--max-val-batches", type=int, help="validation batches (smoke checks)")
    p.add_argument("--probe-train-per-class", type=int, help="probe training images per class (default: all 500)")
    p.add_argument("--probe-features", choices=("cli", "api"), default="cli",
                   help="'cli': python -m swinlab features (default); 'api': extract_features in-process")
    p.add_argument("--probe-batch-size", type=int, default=256)
    p.add_argument("--probe-l2", default="1e-4,1e-3,1e-2,1e-1",
                   help="comma-separated L2 strengths to choose from on a hold-out (default 1e-4,1e-3,1e-2,1e-1)")
    p.add_argument("--skip", default="", help="comma-separated steps to skip: finetune, scratch, probe")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - {"finetune", "scratch", "probe"}:
        p.error(f"--skip: unknown {sorted(skip - {'finetune', 'scratch', 'probe'})}")
    l2_grid = [float(v) for v in args.probe_l2.split(",") if v.strip()]

    from swinlab.training.config import load_config

    quick = load_config(QUICK_CONFIG)
    common: list[str] = []
    for flag, value in (("--data-root", args.data_root), ("--threads", args.threads),
                        ("--max-train-batches", args.max_train_batches),
                        ("--max-val-batches", args.max_val_batches)):
        if value is not None:
            common += [flag, str(value)]
    results: dict[str, Any] = {"benchmark": "finetune", "num_classes": args.num_classes, "img_size": args.img_size,
                               "budget_min": args.budget_min, "amp": args.amp, "seed": args.seed,
                               "max_val_batches": args.max_val_batches, "torch": torch.__version__,
                               "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rows: list[dict[str, Any]] = []

    # ---- 0. the pretrained model
    if args.pretrained is None:
        pre_dir = args.out_dir / "pretrain"
        extra = ["--export"] + common
        if args.pretrain_num_classes:
            extra += ["--num-classes", str(args.pretrain_num_classes)]
        cmd = train_command(args.pretrain_config, pre_dir, budget_min=args.pretrain_budget_min, amp=args.amp,
                            seed=args.seed, extra=extra)
        pre = run_train("pretrain", cmd, pre_dir)
        pre["setting"] = "quick recipe, 64 px, all classes" if not args.pretrain_num_classes else \
            f"quick recipe, 64 px, {args.pretrain_num_classes} classes"
        rows.append(pre)
        if pre.get("error"):
            print(f"pretraining failed: {pre['error']}", file=sys.stderr)
            return 1
        source = pre_dir
    else:
        source = args.pretrained
    weights = weights_for_train(source)
    info = source_info(source)
    model_name = args.model or info["model_name"]
    results["pretrained"] = {"source": str(source), "weights": str(weights), **info}
    print(f"pretrained: {source} ({info['model_name']}, {info['num_classes']} classes, {info['img_size']} px); "
          f"train --pretrained {weights}", file=sys.stderr)

    # ---- check the transfer (head re-init, table adaptation) before training
    transfer = check_transfer(model_name, weights, args.num_classes, args.img_size)
    results["transfer"] = transfer
    print(f"transfer check: {transfer['loaded']} tensors loaded; re-initialised: "
          f"{', '.join(transfer['reinitialized']) or 'none'}; adapted: {len(transfer['adapted'])}"
          + "".join(f"\n  {a}" for a in transfer["adapted"]), file=sys.stderr)

    size = ["--model", model_name, "--num-classes", str(args.num_classes), "--set", f"aug.img_size={args.img_size}"]
    # ---- (a) fine-tune
    if "finetune" not in skip:
        extra = size + ["--pretrained", rel(weights)] + common
        if args.ft_lr is not None:
            extra += ["--lr", f"{args.ft_lr:g}"]
        cmd = train_command(args.config, args.out_dir / "finetune", budget_min=args.budget_min, amp=args.amp,
                            seed=args.seed, extra=extra)
        row = run_train("finetune", cmd, args.out_dir / "finetune")
        row["setting"] = f"pretrained, {args.img_size} px, {args.num_classes} classes"
        rows.append(row)
    # ---- (b) from scratch, the quick recipe's lr schedule
    if "scratch" not in skip:
        lr = args.scratch_lr if args.scratch_lr is not None else quick.lr
        extra = size + ["--set", "pretrained_required=false", "--lr", f"{lr:g}",
                        "--warmup-epochs", f"{quick.warmup_epochs:g}",
                        "--set", f"warmup_lr_init={quick.warmup_lr_init:g}", "--set", f"min_lr={quick.min_lr:g}"]
        extra += common
        cmd = train_command(args.config, args.out_dir / "scratch", budget_min=args.budget_min, amp=args.amp,
                            seed=args.seed, extra=extra)
        row = run_train("scratch", cmd, args.out_dir / "scratch")
        row["setting"] = f"random init, {args.img_size} px, {args.num_classes} classes"
        rows.append(row)
    # ---- (c) linear probe on the pretrained model's pooled features
    probe: dict[str, Any] | None = None
    if "probe" not in skip:
        t0 = time.time()
        specs = probe_specs(args.num_classes, args.probe_train_per_class, args.data_root)
        extract = features_cli if args.probe_features == "cli" else features_api
        feat_dir = args.out_dir / "probe"
        feat_dir.mkdir(parents=True, exist_ok=True)
        commands = []
        for split in ("train", "val"):
            out = feat_dir / f"{split}_features.npy"
            cmd_s, secs = extract(source, specs[split]["inputs"], out, args.probe_batch_size)
            commands.append(cmd_s)
            print(f"  {split}: {specs[split]['count']} images in {secs:.1f}s", file=sys.stderr)
        xtr, ytr = load_labelled(feat_dir / "train_features.npy", specs["train"]["labels"])
        xva, yva = load_labelled(feat_dir / "val_features.npy", specs["val"]["labels"])
        probe = linear_probe(xtr, ytr, xva, yva, args.num_classes, l2_grid)
        probe.update(commands=commands, wall_s=time.time() - t0, img_size=info["img_size"])
        results["probe"] = probe

    # ---- table
    results["runs"] = rows
    val = "all validation images" if args.max_val_batches is None else f"{args.max_val_batches} val batch(es)"
    print(f"\nTransfer to the first {args.num_classes} Tiny ImageNet classes ({val}); "
          f"{args.budget_min:g} min per training run; pretrained {info['model_name']} from {source}")
    head = f"{'run':10s} {'setting':40s} {'epochs':>6s} {'img/s':>7s} {'val top-1':>9s} {'top-5':>7s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.get("error"):
            print(f"{r['name']:10s} FAILED: {r['error']}")
            continue
        print(f"{r['name']:10s} {r['setting']:40s} {fmt(r.get('epochs_equiv'), '6.2f')} "
              f"{fmt(r.get('images_per_s'), '7.0f')} {fmt(r.get('val_top1'), '8.2f')}% "
              f"{fmt(r.get('val_top5'), '6.2f')}%")
    if probe is not None:
        setting = f"frozen pretrained, {probe['img_size']} px, L-BFGS l2={probe['l2']:g}"
        print(f"{'probe':10s} {setting:40s} {'-':>6s} {'-':>7s} {probe['val_top1']:8.2f}% {probe['val_top5']:6.2f}%")
        print(f"  (linear probe: {probe['train_images']} train / {probe['val_images']} val images, "
              f"{probe['feature_dim']}-d features; train top-1 {probe['train_top1']:.2f}%)")
    by = {r["name"]: r for r in rows if not r.get("error")}
    if "finetune" in by and "scratch" in by and by["finetune"].get("val_top1") is not None \
            and by["scratch"].get("val_top1") is not None:
        delta = by["finetune"]["val_top1"] - by["scratch"]["val_top1"]
        results["finetune_minus_scratch_top1"] = delta
        verdict = "fine-tuning beats scratch" if delta > 0 else "fine-tuning does NOT beat scratch"
        print(f"fine-tune - scratch: {delta:+.2f} points top-1 ({verdict})")
    print("\ncommands:")
    for r in rows:
        print(f"  [{r['name']}] {r['command']}")
    if probe is not None:
        for c in probe["commands"]:
            print(f"  [probe] {c}")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"\nJSON: {args.json_out}")
    return 0 if all(not r.get("error") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
