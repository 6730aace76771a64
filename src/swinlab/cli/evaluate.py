"""``swinlab evaluate``: top-1 / top-5 / loss of a model on a data split, with
per-class accuracy and a confusion matrix.

With ``--skip-corrupt`` every image of the split is decoded once before the
evaluation and the unreadable ones are left out, so ``num_images`` counts the
readable images exactly; their number and list (with reasons) are printed and
written to ``metrics.json`` (``skipped``, ``skipped_images``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ..data import build_dataset, build_loader
from ..errors import InvalidInputError, UsageError
from ..inference.loading import ModelInfo, eval_transform_for
from ..inference.reports import (most_confused_pairs, per_class_by_name, save_confusion_csv, save_per_class_csv,
                                 save_predictions_csv, short_name, unique_names)
from ..io.files import atomic_write_text, ensure_dir
from ..plots import plot_confusion_matrix
from ..report import write_report
from ..training.distributed import resolve_device
from ..training.evaluation import evaluate_model, predict_batch
from .common import add_source_args, fraction, positive_int
from .inputs import add_input_args, report_skipped, skip_hint
from .runtime_args import add_runtime_args, eager_model_of, load_for_runtime, runtime_label

__all__ = ["register", "run", "format_pairs", "eval_dataset", "data_args_of"]

_DESCRIPTION = """\
Top-1 / top-5 / loss of a model on a data split, with per-class accuracy and a confusion matrix.
The data set, its class subset and the preprocessing default to those stored in the checkpoint
(its training config and augmentation settings); flags override them. Prints the most-confused
class pairs; writes metrics.json, per_class_accuracy.csv, confusion_matrix.csv / .png and predictions.csv
into --out (default: SOURCE/eval for a run folder), and report.html (the run report of 'swinlab report')
into the run folder (else into --out).
"""
#: the deprecated ``--amp`` values and the ``--precision`` each stands for.
_AMP = {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}
_PAIRS = 10  # most-confused pairs stored and printed
_LABELLED = 30  # at most this many classes: the whole confusion matrix is labelled


def register(subparsers: Any, help: str = "", parents: list[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``evaluate`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("evaluate", help=help, parents=list(parents), description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_args(p)
    add_runtime_args(p)
    p.add_argument("--data", help="tiny-imagenet, cifar10, cifar100 or folder (default: the checkpoint's)")
    p.add_argument("--data-root", help="data location (default: the checkpoint's, else the data set's default)")
    p.add_argument("--split", help="split to evaluate (default: the checkpoint's val split, else 'val')")
    p.add_argument("--num-classes", type=positive_int, help="keep the first K classes (default: the checkpoint's)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="default: 256")
    p.add_argument("--num-workers", type=int, default=0, help="data loader workers (default: 0)")
    p.add_argument("--max-batches", type=positive_int, help="stop after N batches (quick checks)")
    p.add_argument("--out", help="output folder (default: SOURCE/eval for a run folder, else ./eval)")
    p.add_argument("--amp", choices=tuple(_AMP),
                   help="deprecated alias of --precision (none = fp32, bf16, fp16); still accepted")
    p.add_argument("--img-size", type=positive_int, help="override the eval input size [pixels]")
    p.add_argument("--crop-ratio", type=fraction, help="override the eval centre-crop ratio (0, 1]")
    p.add_argument("--interpolation", choices=("bicubic", "bilinear", "nearest"), help="override the resize mode")
    p.add_argument("--tta-hflip", action="store_true", help="average the logits of each image and its mirror image")
    p.add_argument("--show", type=int, default=0, metavar="N",
                   help="also print the top-3 predictions of the first N images with their true labels")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="decode the split first and leave unreadable images out (counted and listed) instead of failing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true",
                   help="do not write report.html (default: into the run folder, else into --out)")
    add_input_args(p, skip=False, progress=False)
    p.set_defaults(func=run)
    return p


def eval_dataset(args: argparse.Namespace, info: ModelInfo, data: str, root: str | None,
                  num_classes: int | None, split: str) -> Any:
    """The evaluation data set, with per-image preprocessing (resize shorter side, centre crop,
    normalise) inside it, so that images of different sizes batch; checks its classes against the model's.

    Raises:
        InvalidInputError: another number or order of classes than the model's.
    """
    transform = eval_transform_for(info, img_size=args.img_size, eval_crop_ratio=args.crop_ratio,
                                   interpolation=args.interpolation)
    with warnings.catch_warnings():  # the data set's "skipped N unreadable" warning: reported by run()
        warnings.filterwarnings("ignore", message="skipped .* unreadable image", category=RuntimeWarning)
        dataset = build_dataset(data, root=root, split=split, num_classes=num_classes, skip_corrupt=args.skip_corrupt,
                                transform=transform, max_pixels=args.max_pixels, progress=not args.no_progress)
    if int(dataset.num_classes) != info.num_classes:
        raise InvalidInputError(f"the {data} {split} split has {dataset.num_classes} classes but the model has "
                                f"{info.num_classes} outputs (use --num-classes or another --data)")
    data_classes = [str(c) for c in getattr(dataset, "classes", None) or []]
    if info.classes and data_classes and data_classes != info.classes:
        diff = next((i for i, (a, b) in enumerate(zip(data_classes, info.classes)) if a != b), 0)
        raise InvalidInputError(f"class order differs between the data set and the checkpoint (index {diff}: "
                                f"{data_classes[diff]!r} vs {info.classes[diff]!r}); labels would not match")
    return dataset


def data_args_of(args: argparse.Namespace, info: ModelInfo) -> tuple[str, str | None, int | None, str]:
    """Data set, root, class count and split: the flags, else the checkpoint's training config."""
    cfg = info.config or {}
    data = args.data or cfg.get("data")
    if not data:
        raise UsageError(f"no --data given and {args.source} has no training config naming its data set")
    same = data == cfg.get("data")
    return (data, args.data_root or (cfg.get("data_root") if same else None),
            args.num_classes or (cfg.get("num_classes") if same else None),
            args.split or (cfg.get("val_split") if same else None) or "val")


def _summary(args: argparse.Namespace, info: ModelInfo, data_args: tuple, res: dict, skipped: list,
             names: list[str], runtime: dict) -> dict:
    data, data_root, _, split = data_args
    keys = unique_names(names, info.classes)
    return {
        "source": str(args.source), "checkpoint": info.checkpoint, "model_name": info.model_name,
        "epoch": info.extra.get("epoch"), "ema": bool(args.ema), "data": data, "data_root": data_root,
        "split": split, "num_classes": info.num_classes, "max_batches": args.max_batches,
        "tta_hflip": bool(args.tta_hflip),
        "preprocessing": {"img_size": args.img_size or info.img_size, "crop_ratio": args.crop_ratio or info.crop_ratio,
                          "interpolation": args.interpolation or info.interpolation, "mean": list(info.mean),
                          "std": list(info.std)},
        "top1": res["top1"], "top5": res["top5"], "loss": res["loss"], "num_images": res["num_images"],
        "no_flip": res.get("no_flip"), "runtime": runtime,
        "skipped": len(skipped), "skipped_images": [item.to_dict() for item in skipped],
        "class_names": names,
        "most_confused": most_confused_pairs(res["confusion"], keys, _PAIRS),
        "per_class_accuracy": per_class_by_name(keys, res["per_class_acc"], res["per_class_count"]),
        "per_class_acc": [None if isinstance(v, float) and math.isnan(v) else v for v in res["per_class_acc"]],
    }


def _runtime(model: Any, device: torch.device, wall_s: float, n: int) -> dict:
    """Where, in what and how fast the evaluation ran (``metrics.json``'s ``runtime``;
    ``runtime`` as ``swinlab benchmark`` names it, e.g. ``"openvino-bf16"``)."""
    label = runtime_label(model)
    precision = next((p for p in ("bf16", "fp16", "int8") if p in label.split("-")), "fp32")
    return {"device": str(device), "cpu_isa": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "precision": precision, "runtime": label, "wall_s": wall_s, "images_per_s": n / max(wall_s, 1e-9)}


def _class_names(info: ModelInfo, dataset: Any) -> list[str]:
    """The checkpoint's class names, else (when it stored none) the data set's."""
    names = info.class_names
    data_names = [str(c) for c in getattr(dataset, "class_names", None) or []]
    if names == [f"class_{i}" for i in range(len(names))] and len(data_names) == len(names):
        return data_names
    return names


def _write_outputs(out: Path, summary: dict, res: dict, names: list[str], dataset: Any) -> list[Path]:
    """metrics.json, the per-class, confusion and prediction CSVs and the confusion figure
    (all classes when there are at most 30, else those of the most-confused pairs)."""
    written = [atomic_write_text(out / "metrics.json", json.dumps(summary, indent=2) + "\n"),
               save_per_class_csv(out / "per_class_accuracy.csv", names, res["per_class_acc"], res["per_class_count"]),
               save_confusion_csv(out / "confusion_matrix.csv", res["confusion"], names)]
    image_names = list(getattr(dataset, "image_names", None) or [f"#{i}" for i in range(len(dataset))])
    written.append(save_predictions_csv(out / "predictions.csv", image_names, list(dataset.targets),
                                        res["predictions"], res["confidence"]))
    short = [short_name(n) for n in names]
    if len(names) <= _LABELLED:
        written.append(plot_confusion_matrix(out / "confusion_matrix.png", res["confusion"], short))
    else:
        pairs = summary["most_confused"]
        subset = list(dict.fromkeys(i for p in pairs for i in (p["true"], p["predicted"])))
        written.append(plot_confusion_matrix(
            out / "confusion_matrix.png", res["confusion"], short, subset=subset or [0],
            title=f"the {len(subset)} classes of the {len(pairs)} most-confused pairs of {len(names)} "
                  f"(row-normalized over each class's images)"))
    return written


def _print_results(info: ModelInfo, args: argparse.Namespace, data_args: tuple, summary: dict,
                   skipped: list, written: list[Path]) -> None:
    print(f"model:  {info.model_name} ({args.source})")
    print(f"data:   {data_args[0]} / {data_args[3]} ({summary['num_images']} images, {info.num_classes} classes)")
    print(f"top-1:  {summary['top1']:.2f} %" + (" (flip averaging)" if args.tta_hflip else ""))
    print(f"top-5:  {summary['top5']:.2f} %" + (" (flip averaging)" if args.tta_hflip else ""))
    if summary.get("no_flip"):
        print(f"without flip averaging: top-1 {summary['no_flip']['top1']:.2f} %, top-5 "
              f"{summary['no_flip']['top5']:.2f} %")
    print(f"loss:   {summary['loss']:.4f}")
    print(f"images: {summary['num_images']} ({summary['runtime']['images_per_s']:.0f} images/s, "
          f"{summary['runtime']['wall_s']:.1f} s)")
    print(f"skipped: {len(skipped)} unreadable image(s)" + (" (listed in metrics.json)" if skipped else ""))
    print(format_pairs(summary["most_confused"]))
    print(f"wrote:  {', '.join(str(p) for p in written)}")


def _eager_or_none(model: Any) -> Any:
    """The PyTorch model behind ``model`` for the report's attention overlays; None for an ONNX file."""
    try:
        return eager_model_of(model)
    except UsageError:
        return None


def format_pairs(pairs: list[dict]) -> str:
    """The most-confused pairs as lines ``true -> predicted: count (rate of the true class)``."""
    if not pairs:
        return "most-confused pairs: none (no image was misclassified)"
    width = max(len(short_name(p["true_name"])) for p in pairs)
    lines = ["most-confused pairs (true -> predicted: images, share of the true class's images):"]
    lines += [f"  {short_name(p['true_name']):<{width}} -> {short_name(p['predicted_name'])}: {p['count']} "
              f"({p['rate']:.1f}%)" for p in pairs]
    return "\n".join(lines)


def _amp_alias(args: argparse.Namespace) -> None:
    """``--amp X`` -> ``--precision``'s value (a note on stderr).

    Raises:
        UsageError: ``--amp`` and ``--precision`` both given and different.
    """
    if args.amp is None:
        return
    wanted = _AMP[args.amp]
    if args.precision not in (None, wanted):
        raise UsageError(f"--amp {args.amp} and --precision {args.precision} disagree; use --precision only")
    print(f"note: --amp is deprecated, use --precision {wanted}", file=sys.stderr)
    args.precision = wanted


def run(args: argparse.Namespace) -> int:
    """Run ``swinlab evaluate`` with parsed arguments; returns the exit code."""
    device = resolve_device(args.device)
    _amp_alias(args)
    model, info = load_for_runtime(args, device)  # --runtime, --precision, --int8
    data_args = data_args_of(args, info)
    with contextlib.nullcontext() if args.skip_corrupt else skip_hint():
        dataset = eval_dataset(args, info, *data_args)
        loader = build_loader(dataset, args.batch_size, shuffle=False, num_workers=args.num_workers)
        t0 = time.perf_counter()
        res = evaluate_model(model, loader, None, device=device,
                             max_batches=args.max_batches, progress=not args.no_progress,
                             num_classes=info.num_classes, tta_hflip=args.tta_hflip, keep_predictions=True)
        runtime = _runtime(model, device, time.perf_counter() - t0, res["num_images"])
    skipped = list(getattr(dataset, "skipped_images", []))
    run_dir = Path(args.source) if info.kind == "run" else None
    out = ensure_dir(Path(args.out) if args.out else run_dir / "eval" if run_dir else Path("eval"), "output folder")
    names = _class_names(info, dataset)
    summary = _summary(args, info, data_args, res, skipped, names, runtime)
    _print_results(info, args, data_args, summary, skipped, _write_outputs(out, summary, res, names, dataset))
    if args.show > 0:
        print(_examples(model, dataset, names, args.show, device, args.tta_hflip))
    if not args.no_report:
        page = (run_dir if run_dir is not None and not args.out else out) / "report.html"
        path = write_report(page, eval_dir=out, dataset=dataset, model=_eager_or_none(model), info=info,
                            run_dir=run_dir)
        print(f"report: {path}")
    report_skipped(skipped, len(dataset) + len(skipped))
    return 0


def _examples(model: Any, dataset: Any, names: list[str], n: int, device: torch.device, tta: bool) -> str:
    """The top-3 classes of the first ``n`` images of ``dataset`` beside their true class."""
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    x = torch.stack([img for img, _ in items]).to(device)
    with torch.inference_mode():
        probs = predict_batch(model, x, tta).softmax(dim=1)
    top = probs.topk(min(3, probs.shape[1]), dim=1)
    image_names = getattr(dataset, "image_names", None) or [f"#{i}" for i in range(len(items))]
    lines = ["examples (first images of the split):"]
    for i, (_, label) in enumerate(items):
        guesses = ", ".join(f"{short_name(names[int(c)])} {p:.0%}" for p, c in zip(top.values[i], top.indices[i]))
        mark = "right" if int(top.indices[i, 0]) == int(label) else "wrong"
        lines.append(f"  {Path(image_names[i]).name}: true {short_name(names[int(label)])} | predicted {guesses} "
                     f"({mark})")
    return "\n".join(lines)
