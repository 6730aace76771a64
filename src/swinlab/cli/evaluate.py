"""``swinlab evaluate``: top-1 / top-5 / loss of a model on a data split, with
per-class accuracy and a confusion matrix.

The data set, its class subset and the preprocessing default to those stored
in the checkpoint (``config`` / ``aug_config``); flags override them.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from .common import add_source_args, fraction, positive_int

__all__ = ["register", "run"]

_DESCRIPTION = """\
Top-1 / top-5 / loss of a model on a data split, with per-class accuracy and a confusion matrix.
The data set, its class subset and the preprocessing default to those stored in the checkpoint
(its training config and augmentation settings); flags override them. Writes metrics.json,
per_class_accuracy.csv and confusion_matrix.png into --out (default: SOURCE/eval for a run folder).
"""
_AMP = ("none", "bf16", "fp16")


def register(subparsers: Any, help: str = "", parents: list[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``evaluate`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("evaluate", help=help, parents=list(parents), description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_args(p)
    p.add_argument("--data", help="tiny-imagenet, cifar10, cifar100 or folder (default: the checkpoint's)")
    p.add_argument("--data-root", help="data location (default: the checkpoint's, else the data set's default)")
    p.add_argument("--split", help="split to evaluate (default: the checkpoint's val split, else 'val')")
    p.add_argument("--num-classes", type=positive_int, help="keep the first K classes (default: the checkpoint's)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="default: 256")
    p.add_argument("--num-workers", type=int, default=0, help="data loader workers (default: 0)")
    p.add_argument("--max-batches", type=positive_int, help="stop after N batches (quick checks)")
    p.add_argument("--out", help="output folder (default: SOURCE/eval for a run folder, else ./eval)")
    p.add_argument("--amp", choices=_AMP, default="none", help="autocast dtype (default: none)")
    p.add_argument("--img-size", type=positive_int, help="override the eval input size [pixels]")
    p.add_argument("--crop-ratio", type=fraction, help="override the eval centre-crop ratio (0, 1]")
    p.add_argument("--tta-hflip", action="store_true", help="average the logits of each image and its mirror image")
    p.add_argument("--interpolation", choices=("bicubic", "bilinear", "nearest"), help="override the resize mode")
    p.add_argument("--skip-corrupt", action="store_true", help="skip undecodable images instead of failing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _fmt_nan(values: list[float]) -> list[float | None]:
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def run(args: argparse.Namespace) -> int:
    """Run ``swinlab evaluate`` with parsed arguments; returns the exit code."""
    import torch

    from ..data import build_dataset, build_loader
    from ..errors import InvalidInputError, UsageError
    from ..inference.loading import eval_transform_for, load_model
    from ..inference.reports import save_per_class_csv
    from ..io.files import atomic_write_text, ensure_dir
    from ..plots import plot_confusion_matrix
    from ..training.distributed import resolve_device
    from ..training.evaluation import evaluate_model

    device = resolve_device(args.device)
    model, info = load_model(args.source, device=device, ema=args.ema)
    cfg = info.config or {}
    data = args.data or cfg.get("data")
    if not data:
        raise UsageError(f"no --data given and {args.source} has no training config naming its data set")
    same_data = data == cfg.get("data")
    data_root = args.data_root or (cfg.get("data_root") if same_data else None)
    num_classes = args.num_classes or (cfg.get("num_classes") if same_data else None)
    split = args.split or (cfg.get("val_split") if same_data else None) or "val"

    # per-image preprocessing (resize shorter side, centre crop, normalise) inside the data set,
    # so that images of different sizes (folder data) batch; the official test transform is per image too.
    transform = eval_transform_for(
        info, img_size=args.img_size, eval_crop_ratio=args.crop_ratio, interpolation=args.interpolation
    )
    dataset = build_dataset(
        data,
        root=data_root,
        split=split,
        num_classes=num_classes,
        skip_corrupt=args.skip_corrupt,
        transform=transform,
    )
    n_data = int(dataset.num_classes)
    if n_data != info.num_classes:
        raise InvalidInputError(
            f"the {data} {split} split has {n_data} classes but the model has {info.num_classes} outputs "
            "(use --num-classes or another --data)"
        )
    data_classes = [str(c) for c in getattr(dataset, "classes", None) or []]
    if info.classes and data_classes and data_classes != info.classes:
        diff = next((i for i, (a, b) in enumerate(zip(data_classes, info.classes)) if a != b), 0)
        raise InvalidInputError(
            f"class order differs between the data set and the checkpoint (index {diff}: "
            f"{data_classes[diff]!r} vs {info.classes[diff]!r}); labels would not match"
        )
    loader = build_loader(dataset, args.batch_size, shuffle=False, num_workers=args.num_workers)
    res = evaluate_model(
        model,
        loader,
        None,
        device=device,
        amp_dtype={"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp],
        max_batches=args.max_batches,
        progress=not args.no_progress,
        num_classes=info.num_classes,
        tta_hflip=args.tta_hflip,
    )

    if args.out:
        out = Path(args.out)
    elif info.kind == "run":
        out = Path(args.source) / "eval"
    else:
        out = Path("eval")
    ensure_dir(out, "output folder")
    names = info.class_names
    data_names = [str(c) for c in getattr(dataset, "class_names", None) or []]
    if names == [f"class_{i}" for i in range(len(names))] and len(data_names) == len(names):
        names = data_names  # the checkpoint stored no names: use the data set's
    summary = {
        "source": str(args.source),
        "checkpoint": info.checkpoint,
        "model_name": info.model_name,
        "epoch": info.extra.get("epoch"),
        "ema": bool(args.ema),
        "data": data,
        "data_root": data_root,
        "split": split,
        "num_classes": info.num_classes,
        "max_batches": args.max_batches,
        "tta_hflip": bool(args.tta_hflip),
        "preprocessing": {
            "img_size": args.img_size or info.img_size,
            "crop_ratio": args.crop_ratio or info.crop_ratio,
            "interpolation": args.interpolation or info.interpolation,
            "mean": list(info.mean),
            "std": list(info.std),
        },
        "top1": res["top1"],
        "top5": res["top5"],
        "loss": res["loss"],
        "num_images": res["num_images"],
        "per_class_acc": _fmt_nan(res["per_class_acc"]),
    }
    metrics_path = out / "metrics.json"
    atomic_write_text(metrics_path, json.dumps(summary, indent=2) + "\n")
    csv_path = save_per_class_csv(out / "per_class_accuracy.csv", names, res["per_class_acc"], res["per_class_count"])
    png_path = plot_confusion_matrix(out / "confusion_matrix.png", res["confusion"], names)

    print(f"model:  {info.model_name} ({args.source})")
    print(f"data:   {data} / {split} ({res['num_images']} images, {info.num_classes} classes)")
    print(f"top-1:  {res['top1']:.2f} %")
    print(f"top-5:  {res['top5']:.2f} %")
    print(f"loss:   {res['loss']:.4f}")
    print(f"images: {res['num_images']}")
    print(f"wrote:  {metrics_path}, {csv_path}, {png_path}")
    return 0
