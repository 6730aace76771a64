"""``swinlab features``: pooled embeddings ``(N, C)`` of images.

Every run also writes ``<stem>.skipped.json`` next to the output: the
unreadable images left out with ``--skip-corrupt``, a JSON list of
``{"input": ..., "error": ...}`` (``[]`` when none was skipped, and always
without the option, since an unreadable image then stops the command).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..data.images import SkippedInput, expand_inputs
from ..errors import UsageError
from ..inference.features import extract_features, names_sidecar, save_features, skipped_sidecar
from ..inference.loading import load_model
from ..inference.precision import resolve_precision, with_precision
from ..training.distributed import resolve_device
from .common import add_source_args, positive_int
from .inputs import add_input_args, check_some_read, report_skipped, skip_hint
from .runtime_args import add_precision_arg

__all__ = ["register", "run"]

_DESCRIPTION = """\
Pooled embeddings (N, C) of images (files, folders, A.zip, A.zip::FOLDER/, A.zip::MEMBER), saved as
.npy (names in <stem>.names.json) or .safetensors (tensor "features", names in the metadata); the
unreadable images skipped with --skip-corrupt are listed in <stem>.skipped.json.
"""


def register(subparsers: Any, help: str = "", parents: list[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``features`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("features", help=help, parents=list(parents), description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_args(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, folder, A.zip, A.zip::FOLDER/ or A.zip::MEMBER")
    p.add_argument("--out", required=True, help="output file: feats.npy or feats.safetensors")
    p.add_argument("--batch-size", type=positive_int, default=32, help="default: 32")
    add_precision_arg(p)
    add_input_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``swinlab features`` with parsed arguments; returns the exit code."""
    if not args.out.lower().endswith((".npy", ".safetensors")):
        raise UsageError(f"--out {args.out!r} must end in .npy or .safetensors")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision or "fp32", device)
    if args.precision == "auto":
        print(f"precision {precision.name} ({precision.reason})", file=sys.stderr)
    model, info = load_model(args.source, device=device, ema=args.ema)
    model = with_precision(model, precision)
    specs = expand_inputs(args.inputs)
    skipped: list[SkippedInput] = []
    with skip_hint():
        feats, names = extract_features(
            model, info, specs, batch_size=args.batch_size, skipped=skipped if args.skip_corrupt else None,
            max_pixels=args.max_pixels, progress=not args.no_progress,
        )
    check_some_read(skipped, len(specs))
    path = save_features(args.out, feats, names, skipped=skipped)
    where = f" (names: {names_sidecar(path)})" if path.suffix.lower() == ".npy" else ""
    print(f"features {tuple(feats.shape)} float32 -> {path}{where}; skipped list: {skipped_sidecar(path)}")
    report_skipped(skipped, len(specs))
    return 0
