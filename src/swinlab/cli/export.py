"""swinlab export: write a model as ONNX, TorchScript or a torch.export
ExportedProgram, with a dynamic batch axis and a static input size, carrying
its class names and preprocessing (ONNX metadata_props, else a sidecar
PATH.json), then verify the file against eager PyTorch on random inputs at
batch 1 and 3: fp32 must agree to --tolerance (max |diff|, default 1e-4),
int8 (--int8, ONNX only) to a cosine similarity of the logits >= 0.99.
The file is written only if the check passes (exit 1 otherwise).

examples:
  swinlab export runs/main --format onnx --out deploy/micro.onnx
  swinlab export swin_tiny_patch4_window7_224 --format onnx --img-size 256 320 --out swin_t_256x320.onnx
  swinlab export runs/main --format onnx --int8 --out deploy/micro-int8.onnx
  swinlab export runs/main --format torchscript --out deploy/micro.pt     (+ deploy/micro.pt.json)
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import positive_int
from .runtime_args import CALIBRATION_HELP, INT8_SCHEME_HELP, INT8_SCHEMES, calibration_images

__all__ = ["register", "run"]

_FORMATS = ("onnx", "torchscript", "exported-program")


def register(subparsers: Any, help: str = "", parents: list[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``export`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "export", help=help, parents=list(parents), description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE",
                   help="run folder, training checkpoint, save_pretrained folder or model name (as for predict)")
    p.add_argument("--format", required=True, choices=_FORMATS, help="file format")
    p.add_argument("--out", required=True, metavar="PATH", help="file to write (TorchScript / ExportedProgram: "
                   "also PATH.json)")
    p.add_argument("--img-size", nargs=2, type=positive_int, metavar=("H", "W"),
                   help="static input size [pixels] (default: the model's input size)")
    p.add_argument("--int8", action="store_true", help="int8 quantization of the Linear layers (ONNX only)")
    p.add_argument("--int8-scheme", choices=INT8_SCHEMES, default="dynamic", help=INT8_SCHEME_HELP)
    p.add_argument("--calibration", metavar="IMAGES", help=CALIBRATION_HELP)
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="fp32 check: max |exported - PyTorch| (default: 1e-4)")
    p.add_argument("--ema", action="store_true", help="export the checkpoint's EMA weights")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``swinlab export`` with parsed arguments; returns the exit code."""
    from ..errors import UsageError
    from ..export.api import export_model
    from ..inference.loading import load_model

    if not args.tolerance >= 0:
        raise UsageError(f"--tolerance {args.tolerance}: expected a number >= 0")
    model, info = load_model(args.source, device="cpu", ema=args.ema)
    calibration = calibration_images(args, info)
    result = export_model(model, info, args.out, fmt=args.format, img_hw=args.img_size, int8=args.int8,
                          int8_scheme=args.int8_scheme, opset=args.opset, tolerance=args.tolerance,
                          calibration=calibration)
    meta = result.metadata
    h, w = meta.img_hw
    print(f"wrote {result.path} ({result.size_bytes / 2**20:.1f} MiB): {meta.model_name}, {args.format}"
          f"{f' int8 ({meta.int8_scheme})' if meta.int8 else ''}, input (batch, 3, {h}, {w}), {len(meta.class_names)} classes")
    if result.sidecar is not None:
        print(f"wrote {result.sidecar} (class names and preprocessing)")
    print("verified against PyTorch on random inputs:")
    print(result.verify.summary())
    return 0

