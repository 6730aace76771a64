"""``swinlab train``: train a model from a JSON recipe with command-line overrides."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["register", "run", "config_from_args"]

_EPILOG = """\
examples:
  swinlab train --config configs/quick_cpu_tiny_imagenet.json --out runs/main
  swinlab train --config ref003_tiny_imagenet --epochs 50 --set aug.mixup_alpha=0.2
  swinlab train --config configs/finetune_384.json --pretrained swin_base_patch4_window12_384 --data folder \\
                --data-root my_images/
  swinlab train --resume runs/main --epochs 20          # continue (and extend) a run
  torchrun --nproc_per_node 4 -m swinlab train --config ref003_tiny_imagenet   # data parallel

Any config key can be set with --set KEY=VALUE (VALUE parsed as JSON when possible; dotted keys
reach into aug.* and model_overrides.*). Recipes: configs/*.json. Writes RUN_DIR/{config.json,
last.pt, best.pt, metrics.jsonl, metrics.csv, tb/, curves.png[, export/]}.
"""

# flag dest -> config key (explicit common flags)
_FLAG_KEYS = {
    "model": "model",
    "data": "data",
    "data_root": "data_root",
    "num_classes": "num_classes",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "warmup_epochs": "warmup_epochs",
    "out": "out",
    "resume": "resume",
    "time_budget_min": "time_budget_min",
    "pretrained": "pretrained",
    "device": "device",
    "amp": "amp",
    "seed": "seed",
    "workers": "num_workers",
    "threads": "threads",
    "max_train_batches": "max_train_batches",
    "max_val_batches": "max_val_batches",
    "ema_decay": "ema_decay",
}


def register(subparsers: Any) -> None:
    """Add the ``train`` parser to ``subparsers``."""
    p = subparsers.add_parser(
        "train",
        help="train a model from a JSON recipe",
        description="Train a model from a JSON recipe (configs/*.json); flags override recipe keys.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", "-c", metavar="JSON", help="recipe: a JSON path or a name in configs/ "
                   "(default: the built-in defaults, or the checkpoint's config with --resume)")
    g = p.add_argument_group("common overrides")
    g.add_argument("--model", help="model name (see 'swinlab models')")
    g.add_argument("--data", help="data set: tiny-imagenet, cifar10, cifar100 or folder")
    g.add_argument("--data-root", metavar="PATH", help="data location (default for tiny-imagenet: "
                   "$SWINLAB_DATA, else ../shared/data/tiny-imagenet-200.zip)")
    g.add_argument("--num-classes", type=int, metavar="K", help="keep the first K classes")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int, help="per-process batch size")
    g.add_argument("--lr", type=float, help="base learning rate")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/<name or model>)")
    g.add_argument("--resume", metavar="PATH", help="checkpoint file or run directory to continue")
    g.add_argument("--overwrite", action="store_true", help="start afresh in a run directory with a checkpoint")
    g.add_argument("--time-budget-min", type=float, metavar="M",
                   help="stop training after M minutes of wall clock, then evaluate")
    g.add_argument("--pretrained", metavar="SOURCE", help="initial weights: file, folder, URL or Hub id")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    g.add_argument("--amp", choices=("none", "bf16", "fp16", "auto"), help="mixed precision")
    g.add_argument("--seed", type=int)
    g.add_argument("--workers", type=int, metavar="N", help="data loader worker processes")
    g.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    g.add_argument("--max-train-batches", type=int, metavar="N", help="batches per epoch (quick runs)")
    g.add_argument("--max-val-batches", type=int, metavar="N", help="validation batches (quick runs)")
    g.add_argument("--ema-decay", type=float, metavar="D", help="keep an EMA of the weights (e.g. 0.9998)")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    g.add_argument("--export", action="store_true", default=None,
                   help="export the best weights to RUN_DIR/export (swinlab.weights.save_pretrained)")
    g.add_argument("--cache", action="store_true", default=None, help="decode the data set into memory first")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config key (repeatable), e.g. --set clip_grad=3.0 --set aug.hflip=0")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~swinlab.training.config.TrainConfig` of a parsed command line.

    Order: recipe (or the resumed checkpoint's config), then the explicit
    flags, then ``--set`` items.

    Raises:
        ConfigError / FileNotFoundError: bad recipe or overrides.
    """
    from ..training.config import TrainConfig, apply_overrides, load_config, parse_set_items

    if args.config:
        cfg = load_config(args.config)
    elif args.resume:
        cfg = _config_of_checkpoint(args.resume)
    else:
        cfg = TrainConfig()
    overrides: dict[str, Any] = {}
    for dest, key in _FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[key] = value
    for dest in ("compile", "export", "cache", "overwrite"):
        if getattr(args, dest, None):
            overrides[dest] = True
    if getattr(args, "no_progress", False):
        overrides["progress"] = False
    cfg = apply_overrides(cfg, overrides, source="command line")
    return apply_overrides(cfg, parse_set_items(args.set_items), source="--set")


def _config_of_checkpoint(source: str) -> Any:
    from ..training.checkpoint import load_checkpoint, resolve_resume_path
    from ..training.config import TrainConfig

    path = resolve_resume_path(source)
    saved = load_checkpoint(path).get("config") or {}
    saved = {k: v for k, v in saved.items() if not k.startswith("_")}
    return TrainConfig.from_dict(saved, source=f"config stored in {path}")


def run(args: argparse.Namespace) -> int:
    """Run ``swinlab train``; prints the final val top-1/top-5 and the run directory."""
    cfg = config_from_args(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from ..training.engine import train

    result = train(cfg)
    if os.environ.get("RANK", "0") not in ("", "0"):  # torchrun: rank 0 reports
        return 0
    lines = [f"run dir: {result['run_dir']}"]
    if result["val_top1"] is not None:
        lines.append(f"val top-1: {result['val_top1']:.2f}%  top-5: {result['val_top5']:.2f}%  "
                     f"loss: {result['val_loss']:.4f}  (epoch {result['epochs_completed']})")
    if result.get("ema_val_top1") is not None:
        lines.append(f"EMA val top-1: {result['ema_val_top1']:.2f}%")
    if result["best_top1"] is not None:
        lines.append(f"best val top-1: {result['best_top1']:.2f}% (epoch {result['best_epoch']})")
    if result["images_per_s"]:
        lines.append(f"training: {result['images_per_s']:.0f} images/s, {result['train_time_s']:.0f}s; "
                     f"total {result['total_time_s']:.0f}s"
                     f"{' (stopped by the time budget)' if result['stopped_by_time_budget'] else ''}")
    if result.get("export_dir"):
        lines.append(f"exported: {result['export_dir']}")
    print("\n".join(lines))
    sys.stdout.flush()
    return 0
