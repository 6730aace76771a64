"""``swinlab features``: pooled embeddings ``(N, C)`` of images, saved as
``.npy`` (names in ``<stem>.names.json``) or ``.safetensors`` (tensor
``features``, names in the metadata).
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_source_args, positive_int

__all__ = ["register", "run"]

_DESCRIPTION = """\
Pooled embeddings (N, C) of images (files, folders, A.zip, A.zip::FOLDER/, A.zip::MEMBER), saved as
.npy (names in <stem>.names.json) or .safetensors (tensor "features", names in the metadata).
"""


def register(subparsers: Any, help: str = "", parents: list[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``features`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("features", help=help, parents=list(parents), description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_args(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, folder, A.zip, A.zip::FOLDER/ or A.zip::MEMBER")
    p.add_argument("--out", required=True, help="output file: feats.npy or feats.safetensors")
    p.add_argument("--batch-size", type=positive_int, default=32, help="default: 32")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``swinlab features`` with parsed arguments; returns the exit code."""
    from ..errors import UsageError
    from ..inference.features import extract_features, names_sidecar, save_features
    from ..inference.images import expand_inputs
    from ..inference.loading import load_model
    from ..training.distributed import resolve_device

    if not args.out.lower().endswith((".npy", ".safetensors")):
        raise UsageError(f"--out {args.out!r} must end in .npy or .safetensors")
    device = resolve_device(args.device)
    model, info = load_model(args.source, device=device, ema=args.ema)
    specs = expand_inputs(args.inputs)
    feats, names = extract_features(model, info, specs, batch_size=args.batch_size)
    path = save_features(args.out, feats, names)
    where = f" (names: {names_sidecar(path)})" if path.suffix.lower() == ".npy" else ""
    print(f"features {tuple(feats.shape)} float32 -> {path}{where}")
    return 0
