"""swinlab benchmark: CPU inference speed of one model in several runtimes
(eager PyTorch fp32 and bf16, torch.compile, TorchScript, ONNX Runtime fp32
and int8, OpenVINO fp32, bf16 and int8):
images/s, batch latency (median, p90), peak resident memory, and the
fraction of this machine's fp32 GEMM speed reached, as a table or JSON.
The CPU's instruction set (torch.backends.cpu.get_cpu_capability) is printed
with the figures. Inputs are random (speed does not depend on them).

examples:
  swinlab benchmark swin_tiny_patch4_window7_224 --batch-sizes 1 8 32 --threads 2
  swinlab benchmark runs/main --runtimes eager onnxruntime onnxruntime-int8 --json
  swinlab benchmark runs/main --batch-sizes 16 --threads 2 \\
      --runtimes eager eager-bf16 onnxruntime-int8-per-token openvino openvino-bf16 openvino-int8 \\
      --agreement-data tiny-imagenet-200.zip::tiny-imagenet-200/val/images \\
      --calibration tiny-imagenet-200.zip::tiny-imagenet-200/train

With --agreement-data, each row gets its top-1 agreement with eager fp32 on
those images (--agreement-images of them, chosen at random) and the fastest
runtime agreeing on >= 99% is marked with '*' (what 'serve --runtime auto'
is derived from). --precision bf16 turns eager / openvino / openvino-int8
into their bf16 rows; auto decides as training's amp=auto does.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import positive_int
from .runtime_args import CALIBRATION_HELP, add_precision_arg, load_calibration, load_image_set

__all__ = ["register", "run"]

_RUNTIMES = ("eager", "eager-bf16", "onnxruntime", "onnxruntime-int8", "onnxruntime-int8-blockwise",
             "onnxruntime-int8-per-token", "openvino", "openvino-bf16", "openvino-int8", "openvino-int8-bf16",
             "compile", "torchscript")
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
    add_precision_arg(p)
    p.add_argument("--agreement-data", metavar="IMAGES",
                   help="images (files, folders, ARCHIVE.zip::FOLDER) for a top-1 agreement column against "
                        "eager fp32; marks the fastest runtime agreeing on >= 99%%")
    p.add_argument("--agreement-images", type=positive_int, default=500,
                   help="how many of --agreement-data to use, chosen at random (default: 500)")
    p.add_argument("--calibration", metavar="IMAGES", help=CALIBRATION_HELP + " (openvino-int8, "
                   "onnxruntime-int8-per-token)")
    p.set_defaults(func=run)
    return p


def _with_precision(runtime: str, precision: str) -> str:
    """``eager`` / ``openvino`` / ``openvino-int8`` as their bf16 rows under ``--precision bf16``."""
    return f"{runtime}-bf16" if precision == "bf16" and runtime in ("eager", "openvino", "openvino-int8") else runtime


def run(args: argparse.Namespace) -> int:
    """Run ``swinlab benchmark`` with parsed arguments; returns the exit code."""
    from ..export.benchmark import format_report, run_benchmark
    from ..inference.loading import load_model
    from ..inference.precision import resolve_precision

    precision = resolve_precision(args.precision or "fp32", "cpu")
    if args.precision == "auto":
        print(f"precision {precision.name} ({precision.reason})", file=sys.stderr)
    runtimes = list(dict.fromkeys(_with_precision(r, precision.name) for r in args.runtimes))
    model, info = load_model(args.source, device="cpu")
    agreement = (load_image_set(args.agreement_data, info, args.agreement_images, "--agreement-data", seed=1)
                 if args.agreement_data else None)
    report = run_benchmark(
        model, info, runtimes=runtimes, batch_sizes=args.batch_sizes, img_hw=args.img_size,
        iters=args.iters, warmup=args.warmup, threads=args.threads,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
        calibration=load_calibration(args.calibration, info), agreement_images=agreement,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0
