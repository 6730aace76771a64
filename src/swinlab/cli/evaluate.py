"""``swinlab evaluate``: top-1 / top-5 / loss of a model on a data split, with
per-class accuracy and a confusion matrix.

The data set, its class subset and the preprocessing default to those stored
in the checkpoint (``config`` / ``aug_config``); flags override them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .runtime_args import add_runtime_args, load_for_runtime

__all__ = ["register", "run", "USER_ERRORS", "guarded", "resolve_device", "add_model_args"]

#: exceptions reported as ``error: ...`` (exit 2) instead of a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ValueError,
)

_AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: user mistakes print ``error: MESSAGE`` on stderr and
    return 2; other exceptions propagate."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except USER_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    wrapper.__name__ = getattr(fn, "__name__", "command")
    wrapper.__doc__ = fn.__doc__
    return wrapper


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other torch device name as is.

    Raises:
        ValueError: an invalid name, or CUDA asked for but unavailable.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r}: CUDA is not available on this machine")
    return device


def add_model_args(p: argparse.ArgumentParser) -> None:
    """SOURCE plus ``--device`` and ``--ema`` (shared by evaluate / predict / features)."""
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="run folder (best.pt, else last.pt), training checkpoint (.pt), "
        "save_pretrained folder (config.json + model.safetensors) or a model name",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "evaluate",
        help="top-1/top-5/loss, per-class accuracy and confusion matrix on a data split",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p)
    add_runtime_args(p)
    p.add_argument("--data", help="tiny-imagenet, cifar10, cifar100 or folder (default: the checkpoint's)")
    p.add_argument("--data-root", help="data location (default: the checkpoint's, else the data set's default)")
    p.add_argument("--split", help="split to evaluate (default: the checkpoint's val split, else 'val')")
    p.add_argument("--num-classes", type=_positive_int, help="keep the first K classes (default: the checkpoint's)")
    p.add_argument("--batch-size", type=_positive_int, default=256, help="default: 256")
    p.add_argument("--num-workers", type=int, default=0, help="data loader workers (default: 0)")
    p.add_argument("--max-batches", type=_positive_int, help="stop after N batches (quick checks)")
    p.add_argument("--out", help="output folder (default: SOURCE/eval for a run folder, else ./eval)")
    p.add_argument("--amp", choices=sorted(_AMP), default="none", help="autocast dtype (default: none)")
    p.add_argument("--img-size", type=_positive_int, help="override the eval input size [pixels]")
    p.add_argument("--crop-ratio", type=float, help="override the eval centre-crop ratio (0, 1]")
    p.add_argument("--interpolation", choices=("bicubic", "bilinear", "nearest"), help="override the resize mode")
    p.add_argument("--skip-corrupt", action="store_true", help="skip undecodable images instead of failing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _fmt_nan(values: list[float]) -> list[float | None]:
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def _evaluate(args: argparse.Namespace) -> int:
    from ..data import build_dataset, build_loader
    from ..inference.loading import eval_transform_for
    from ..inference.reports import save_per_class_csv
    from ..plots import plot_confusion_matrix
    from ..training.evaluation import evaluate_model

    device = resolve_device(args.device)
    model, info = load_for_runtime(args, device)  # --runtime eager|onnxruntime, --int8
    cfg = info.config or {}
    data = args.data or cfg.get("data")
    if not data:
        raise ValueError(f"no --data given and {args.source} has no training config naming its data set")
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
        raise ValueError(
            f"the {data} {split} split has {n_data} classes but the model has {info.num_classes} outputs "
            "(use --num-classes or another --data)"
        )
    data_classes = [str(c) for c in getattr(dataset, "classes", None) or []]
    if info.classes and data_classes and data_classes != info.classes:
        diff = next((i for i, (a, b) in enumerate(zip(data_classes, info.classes)) if a != b), 0)
        raise ValueError(
            f"class order differs between the data set and the checkpoint (index {diff}: "
            f"{data_classes[diff]!r} vs {info.classes[diff]!r}); labels would not match"
        )
    loader = build_loader(dataset, args.batch_size, shuffle=False, num_workers=args.num_workers)
    res = evaluate_model(
        model,
        loader,
        None,
        device=device,
        amp_dtype=_AMP[args.amp],
        max_batches=args.max_batches,
        progress=not args.no_progress,
        num_classes=info.num_classes,
    )

    if args.out:
        out = Path(args.out)
    elif info.kind == "run":
        out = Path(args.source) / "eval"
    else:
        out = Path("eval")
    out.mkdir(parents=True, exist_ok=True)
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
    metrics_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
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


run = guarded(_evaluate)
run.__doc__ = "Run ``swinlab evaluate`` with parsed arguments; returns the exit code."
