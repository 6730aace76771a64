"""``swinlab predict``: top-k classes of images (files, folders, ``A.zip``,
``A.zip::FOLDER/`` or ``A.zip::MEMBER``), as a table or JSON, optionally
with one attention-map figure per image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .evaluate import _positive_int, add_model_args, guarded, resolve_device
from .runtime_args import add_runtime_args, eager_model_of, load_for_runtime

__all__ = ["register", "run", "format_table"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``predict`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "predict",
        help="top-k predictions for images (table or JSON), optional attention maps",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p)
    add_runtime_args(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, folder, A.zip, A.zip::FOLDER/ or A.zip::MEMBER")
    p.add_argument("--topk", type=_positive_int, default=5, help="classes per image (default: 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="default: 32")
    p.add_argument("--attention-out", metavar="DIR", help="write one attention-map PNG per input into DIR")
    p.set_defaults(func=run)
    return p


def format_table(specs: list[str], preds: list[list[tuple[int, str, float]]]) -> str:
    """Rows ``input  rank  class  probability`` with aligned columns."""
    rows = [("input", "rank", "class", "probability")]
    for spec, plist in zip(specs, preds):
        for rank, (idx, name, prob) in enumerate(plist, start=1):
            rows.append((spec if rank == 1 else "", str(rank), f"{name} ({idx})", f"{prob:.4f}"))
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]
    return "\n".join(lines)


def _write_attention(model: Any, info: Any, specs: list[str], preds: list, out_dir: Path) -> list[Path]:
    from ..inference.attention import attention_maps, denormalize
    from ..plots import save_attention_figure
    from ..inference.images import open_image, spec_display_name, split_spec
    from ..inference.loading import eval_transform_for

    transform = eval_transform_for(info)
    device = next(model.parameters()).device
    if hasattr(transform, "to"):
        transform = transform.to(device)
    written = []
    for i, spec in enumerate(specs):
        x = transform(open_image(spec).unsqueeze(0).to(device))[0]
        maps = attention_maps(model, x)
        idx, name, prob = preds[i][0]
        path = out_dir / f"{i:04d}_{spec_display_name(spec)}.png"
        title = f"{Path(split_spec(spec)[1] or spec).name}: {name} ({prob:.1%})"
        written.append(save_attention_figure(path, denormalize(x, info.mean, info.std), maps, suptitle=title))
    return written


def _predict(args: argparse.Namespace) -> int:
    from ..inference.images import expand_inputs
    from ..inference.predict import predict

    device = resolve_device(args.device)
    model, info = load_for_runtime(args, device)  # --runtime eager|onnxruntime, --int8
    specs = expand_inputs(args.inputs)
    preds = predict(model, info, specs, topk=args.topk, batch_size=args.batch_size)
    if args.json:
        out = [
            {
                "input": spec,
                "predictions": [
                    {"rank": r, "index": idx, "class": name, "probability": prob}
                    for r, (idx, name, prob) in enumerate(plist, start=1)
                ],
            }
            for spec, plist in zip(specs, preds)
        ]
        print(json.dumps(out, indent=2))
    else:
        print(format_table(specs, preds))
    if args.attention_out:
        written = _write_attention(eager_model_of(model), info, specs, preds, Path(args.attention_out))
        print(f"wrote {len(written)} attention figure(s) to {args.attention_out}", file=sys.stderr)
    return 0


run = guarded(_predict)
run.__doc__ = "Run ``swinlab predict`` with parsed arguments; returns the exit code."
