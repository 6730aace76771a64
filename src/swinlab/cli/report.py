"""``swinlab report RUN``: the run report, ``RUN/report.html``.

One self-contained page (images inlined, no network): the run's model, data,
recipe and hardware, the training curves, val top-1 / top-5, the best and
worst classes by name, the most-confused class pairs, a grid of val images
with their labels and the last stage's attention, and links to the run's
files (:func:`swinlab.report.write_report`).

The page is built from ``RUN/eval`` (``swinlab evaluate``'s outputs). When
that evaluation is missing or older than the run's model file, ``RUN`` is
evaluated first, exactly as ``swinlab evaluate RUN`` does (which writes the
page too); otherwise only the images shown are read again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..inference.loading import load_model
from ..io.rundir import RunDir
from ..report import write_report
from ..training.distributed import resolve_device
from . import evaluate
from .common import positive_int

__all__ = ["register", "run", "report_run"]

_DESCRIPTION = """\
Write RUN/report.html: one self-contained page (images inlined, opens from disk) with the run's model,
data, recipe and hardware, its training curves, val top-1/top-5, the best and worst classes by name,
the most-confused class pairs with examples, val images with their predicted and true classes and the
last stage's attention, and links to the run's files. Uses RUN/eval (swinlab evaluate); evaluates RUN
first when that is missing or older than the model.
"""


def register(subparsers: Any, help: str = "", parents: list[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``report`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("report", help=help, parents=list(parents), description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run folder of 'swinlab train'")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="batch size of an evaluation it runs (default: 256)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _eval_is_current(run_dir: RunDir) -> bool:
    """``RUN/eval`` holds an evaluation of the run's model file (written after it)."""
    files = [run_dir / RunDir.EVAL / name for name in ("metrics.json", "predictions.csv")]
    return all(f.is_file() for f in files) and min(f.stat().st_mtime for f in files) >= \
        run_dir.model_file().stat().st_mtime


def _evaluate_args(run: str, flags: list[str]) -> argparse.Namespace:
    """The parsed command line ``swinlab evaluate RUN FLAGS``."""
    parser = argparse.ArgumentParser(prog="swinlab")
    evaluate.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["evaluate", run, *flags])


def _flags_of(metrics: dict[str, Any]) -> list[str]:
    """``evaluate`` flags that rebuild the data set of a stored evaluation (same images, order, preprocessing)."""
    pre = metrics.get("preprocessing") or {}
    pairs = [("--data", metrics.get("data")), ("--data-root", metrics.get("data_root")),
             ("--split", metrics.get("split")), ("--num-classes", metrics.get("num_classes")),
             ("--img-size", pre.get("img_size")), ("--crop-ratio", pre.get("crop_ratio")),
             ("--interpolation", pre.get("interpolation"))]
    flags = [str(x) for k, v in pairs if v is not None for x in (k, v)]
    return flags + (["--skip-corrupt"] if metrics.get("skipped") else []) + (["--ema"] if metrics.get("ema") else [])


def _report_from_eval(run_dir: RunDir, args: argparse.Namespace) -> Path:
    """The page from the stored evaluation: rebuild its data set, load the model for the attention."""
    path = run_dir / RunDir.EVAL / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InvalidInputError(f"{path}: not JSON ({e}); run 'swinlab evaluate {run_dir.path}' again") from None
    eargs = _evaluate_args(str(run_dir.path), _flags_of(metrics) + (["--no-progress"] if args.no_progress else []))
    model, info = load_model(run_dir.path, device=resolve_device(args.device), ema=bool(metrics.get("ema")))
    data_args = evaluate.data_args_of(eargs, info)
    dataset = evaluate.eval_dataset(eargs, info, *data_args)
    return write_report(run_dir / "report.html", eval_dir=run_dir / RunDir.EVAL, dataset=dataset, model=model,
                        info=info, run_dir=run_dir.path)


def report_run(run: str | Path, *, device: str = "auto", batch_size: int = 256, max_batches: int | None = None,
               tta_hflip: bool = False, progress: bool = True) -> int:
    """Write ``RUN/report.html``, evaluating the run first when ``RUN/eval``
    is missing or stale (with these settings; the end of ``swinlab train``).

    Returns:
        0 (the exit code).

    Raises:
        InputNotFoundError: not a run folder. Anything ``swinlab evaluate`` raises.
    """
    run_dir = RunDir(run)
    run_dir.model_file()  # raises InputNotFoundError for a folder that is not a run
    no_progress = [] if progress else ["--no-progress"]
    if _eval_is_current(run_dir):
        args = argparse.Namespace(device=device, no_progress=not progress)
        print(f"report: {_report_from_eval(run_dir, args)}")
        return 0
    print(f"report: evaluating {run_dir.model_file()} on the val split first (as 'swinlab evaluate {run}')",
          file=sys.stderr, flush=True)
    flags = ["--device", device, "--batch-size", str(batch_size), *no_progress]
    flags += (["--max-batches", str(max_batches)] if max_batches else []) + (["--tta-hflip"] if tta_hflip else [])
    return evaluate.run(_evaluate_args(str(run), flags))


def run(args: argparse.Namespace) -> int:
    """Run ``swinlab report`` with parsed arguments; returns the exit code."""
    return report_run(args.run, device=args.device, batch_size=args.batch_size, progress=not args.no_progress)
