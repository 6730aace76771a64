"""swinlab benchmark: CPU inference speed of one model in several runtimes
(eager PyTorch, torch.compile, TorchScript, ONNX Runtime fp32 and int8):
images/s, batch latency (median, p90), peak resident memory, and the
fraction of this machine's fp32 GEMM speed reached, as a table or JSON.
The CPU's instruction set (torch.backends.cpu.get_cpu_capability) is printed
with the figures. Inputs are random (speed does not depend on them).

examples:
  swinlab benchmark swin_tiny_patch4_window7_224 --batch-sizes 1 8 32 --threads 2
  swinlab benchmark runs/main --runtimes eager onnxruntime onnxruntime-int8 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import positive_int

__all__ = ["register", "run"]

_RUNTIMES = ("eager", "compile", "onnxruntime", "onnxruntime-int8", "onnxruntime-int8-blockwise",
             "onnxruntime-int8-per-token", "torchscript")
_DEFAULT = ("eager", "onnxruntime", "onnxruntime-int8", "torchscript")


def register(subparsers: Any, help: str = "", parents: list[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``benchmark`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "benchmark", help=help, parents=list(parents), description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="MODEL_OR_SOURCE",
                   help="model name (random weights) or run folder / checkpoint / save_pretrained folder")
    p.add_argument("--batch-sizes", nargs="+", type=positive_int, default=[1, 8, 32], metavar="B",
                   help="default: 1 8 32")
    p.add_argument("--img-size", nargs=2, type=positive_int, metavar=("H", "W"),
                   help="input size [pixels] (default: the model's)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for every runtime (default: PyTorch's)")
    p.add_argument("--runtimes", nargs="+", choices=_RUNTIMES, default=list(_DEFAULT), metavar="RUNTIME",
                   help=f"some of {' '.join(_RUNTIMES)} (default: {' '.join(_DEFAULT)}; compile is opt-in: "
                        "it takes minutes on a small CPU)")
    p.add_argument("--iters", type=positive_int, default=10, help="timed calls per row (default: 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before them (default: 2)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``swinlab benchmark`` with parsed arguments; returns the exit code."""
    from ..export.benchmark import format_report, run_benchmark
    from ..inference.loading import load_model

    model, info = load_model(args.source, device="cpu")
    report = run_benchmark(
        model, info, runtimes=args.runtimes, batch_sizes=args.batch_sizes, img_hw=args.img_size,
        iters=args.iters, warmup=args.warmup, threads=args.threads,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0

