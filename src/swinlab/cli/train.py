"""``swinlab train``: train a model from a JSON recipe with command-line overrides.

Every field of :class:`swinlab.training.config.TrainConfig` is a flag
(``--batch-size``, ``--time-budget-min``, ``--cache/--no-cache``, ...),
generated from the field list; ``--set KEY=VALUE`` reaches every key,
``aug.*`` and ``model_overrides.*`` included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import typing
from typing import Any, Literal

from ..io.rundir import RunDir
from ..training.config import FIELD_HELP, TrainConfig, apply_overrides, load_config, parse_set_items

__all__ = ["register", "run", "config_from_args"]

_EPILOG = """\
examples:
  swinlab train --config quick_cpu_tiny_imagenet --out runs/main
  swinlab train --config ref003_tiny_imagenet --epochs 50 --set aug.mixup_alpha=0.2
  swinlab train --config finetune_384 --pretrained swin_base_patch4_window12_384 --data folder --data-root imgs/
  swinlab train --resume runs/main                       # continue an interrupted run, in runs/main
  swinlab train --resume runs/main --epochs 20           # extend it to 20 epochs (the lr continues)
  swinlab train --resume runs/main --time-budget-min 5   # or by 5 more minutes
  torchrun --nproc_per_node 4 -m swinlab train --config ref003_tiny_imagenet   # data parallel

--config takes a JSON file or a built-in recipe name. Ctrl-C (or SIGTERM) saves the state at the current step;
--resume continues exactly there. Writes RUN/{config.json, last.pt, best.pt, metrics.jsonl, metrics.csv,
metrics_steps.csv, tb/, curves.png[, export/]}, then evaluates best.pt on the val split into RUN/eval/ and
writes RUN/report.html (--no-report: not). A progress bar on a terminal; otherwise (a log file) one line
every --progress-interval-s seconds.
"""

# fields that are not flags: nested objects and lists go through --set
_NOT_FLAGS = {"aug", "model_overrides", "progressive_resize", "betas"}


def _arg_type(tp: Any) -> tuple[Any, tuple[Any, ...] | None]:
    """(argparse type, choices) of a field annotation."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return _arg_type(args[0])
    if typing.get_origin(tp) is Literal:
        return str, typing.get_args(tp)
    return tp, None


def _add_field_flags(p: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    g = p.add_argument_group("settings (one flag per config key; --set reaches the nested ones)")
    for name, help_text in FIELD_HELP.items():
        if name in _NOT_FLAGS:
            continue
        flag = "--" + name.replace("_", "-")
        kind, choices = _arg_type(hints[name])
        if kind is bool:
            g.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            g.add_argument(flag, dest=name, type=kind, choices=choices, default=None, help=help_text,
                           metavar=None if choices else name.upper())
    g.add_argument("--workers", dest="num_workers", type=int, default=None, help=argparse.SUPPRESS)
    g.add_argument("--set", dest="set_items", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config key (repeatable; VALUE is JSON when it parses), e.g. --set clip_grad=3.0 "
                        "--set aug.hflip=0 --set model_overrides.window_size=8")


def register(subparsers: Any, help: str, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``train`` parser to ``subparsers``."""
    p = subparsers.add_parser("train", help=help, parents=parents, epilog=_EPILOG,
                              description="Train a model from a JSON recipe; flags override its keys.",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", metavar="JSON", help="recipe: a JSON file or a built-in recipe name "
                   "(default: the built-in defaults, or the checkpoint's config with --resume)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    _add_field_flags(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """The config of a parsed command line, and what extends a resumed run.

    Order: recipe (or the resumed checkpoint's config), then the flags, then
    ``--set`` items. With ``--resume``, ``--epochs`` and ``--time-budget-min``
    given on the command line extend the run (returned as ``extend``).

    Raises:
        ConfigError / InputNotFoundError: bad recipe, flags or overrides.
        CheckpointError: an unreadable checkpoint to resume.
    """
    if args.config:
        cfg = load_config(args.config)
    elif args.resume:
        cfg = _config_of_run(args.resume)
    else:
        cfg = TrainConfig()
    flags = {name: getattr(args, name) for name in FIELD_HELP if getattr(args, name, None) is not None}
    items = parse_set_items(args.set_items)
    cfg = apply_overrides(apply_overrides(cfg, flags, source="command line"), items, source="--set")
    given = {**flags, **items}
    extend = {k: given[k] for k in ("epochs", "time_budget_min") if args.resume and k in given}
    return cfg, extend


def _config_of_run(source: str) -> TrainConfig:
    path = RunDir(source if not source.endswith(".pt") else os.path.dirname(source) or ".")
    saved = {k: v for k, v in (path.read_resume().get("config") or {}).items() if not k.startswith("_")}
    saved.pop("out", None)
    return TrainConfig.from_dict(saved, source=f"config stored in {path.last}")


def run(args: argparse.Namespace) -> int:
    """Run ``swinlab train``; prints the final val top-1/top-5 and the run folder.

    Returns:
        0, or 130 / 143 when Ctrl-C / SIGTERM stopped the run (its state saved).
    """
    cfg, extend = config_from_args(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from ..training.engine import train

    result = train(cfg, extend=extend)
    if os.environ.get("RANK", "0") not in ("", "0"):  # torchrun: rank 0 reports
        return 0
    print(_report(result))
    sys.stdout.flush()
    if cfg.report and not result["interrupted"] and result["history"]:
        from .report import report_run

        report_run(result["run_dir"], device=cfg.device, batch_size=cfg.eval_batch_size or cfg.batch_size,
                   max_batches=cfg.max_val_batches, tta_hflip=cfg.tta_hflip, progress=cfg.progress)
    return {"SIGINT": 130, "SIGTERM": 143}.get(result["interrupted"] or "", 0)


def _report(result: dict[str, Any]) -> str:
    lines = [f"run dir: {result['run_dir']}"]
    if result["val_top1"] is not None:
        lines.append(f"val top-1: {result['val_top1']:.2f}%  top-5: {result['val_top5']:.2f}%  "
                     f"loss: {result['val_loss']:.4f}  (after {result['epochs_completed']} full epoch(s))")
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
    return "\n".join(lines)
