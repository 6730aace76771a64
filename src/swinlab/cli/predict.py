"""``swinlab predict``: top-k classes of images, as a table or JSON, optionally
with one attention-map figure per image.

``--json`` prints one object: ``{"results": [{"input", "predictions": [...]}, ...],
"skipped": [{"input", "error"}, ...]}``; ``skipped`` lists the unreadable
images left out with ``--skip-corrupt`` (empty without it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..data.images import SkippedInput, expand_inputs, open_image, spec_display_name, split_spec
from ..inference.attention import attention_maps, denormalize
from ..inference.loading import eval_transform_for
from ..inference.predict import predict
from ..inference.reports import short_name
from ..plots import save_attention_figure
from ..training.distributed import resolve_device
from .common import add_source_args, positive_int
from .inputs import add_input_args, check_some_read, report_skipped, skip_hint
from .runtime_args import add_runtime_args, eager_model_of, load_for_runtime

__all__ = ["register", "run", "format_table", "format_json"]

_DESCRIPTION = """\
Top-k classes of images: files, folders, zip archives (A.zip), folders inside them (A.zip::FOLDER/) or
single members (A.zip::MEMBER), printed as a table or as JSON, optionally with one attention-map figure
per image. Class names are shortened to their first synonym in the table (--names full for all).
"""


def register(subparsers: Any, help: str = "", parents: list[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``predict`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("predict", help=help, parents=list(parents), description=_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_args(p)
    add_runtime_args(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, folder, A.zip, A.zip::FOLDER/ or A.zip::MEMBER")
    p.add_argument("--topk", type=positive_int, default=5, help="classes per image (default: 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--names", choices=("first", "full"), default="first",
                   help="class names in the table: the first synonym (default) or the full name")
    p.add_argument("--batch-size", type=positive_int, default=32, help="default: 32")
    p.add_argument("--attention-out", metavar="DIR", help="write one attention-map PNG per input into DIR")
    add_input_args(p)
    p.set_defaults(func=run)
    return p


def format_table(specs: list[str], preds: list[list[tuple[int, str, float]]], names: str = "first") -> str:
    """Rows ``input  rank  class  probability`` with aligned columns."""
    rows = [("input", "rank", "class", "probability")]
    for spec, plist in zip(specs, preds):
        for rank, (idx, name, prob) in enumerate(plist, start=1):
            shown = short_name(name) if names == "first" else name
            rows.append((spec if rank == 1 else "", str(rank), f"{shown} ({idx})", f"{prob:.4f}"))
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows)


def format_json(specs: list[str], preds: list[list[tuple[int, str, float]]], skipped: list[SkippedInput]) -> str:
    """The ``--json`` output (module docstring); class names in full."""
    results = [
        {"input": spec,
         "predictions": [{"rank": r, "index": idx, "class": name, "probability": prob}
                         for r, (idx, name, prob) in enumerate(plist, start=1)]}
        for spec, plist in zip(specs, preds)
    ]
    return json.dumps({"results": results, "skipped": [s.to_dict() for s in skipped]}, indent=2)


def _write_attention(model: Any, info: Any, specs: list[str], preds: list, out_dir: Path,
                     max_pixels: int | None) -> list[Path]:
    transform = eval_transform_for(info)
    device = next(model.parameters()).device
    written = []
    for i, spec in enumerate(specs):
        x = transform(open_image(spec, max_pixels=max_pixels).unsqueeze(0).to(device))[0]
        maps = attention_maps(model, x)
        idx, name, prob = preds[i][0]
        path = out_dir / f"{i:04d}_{spec_display_name(spec)}.png"
        title = f"{Path(split_spec(spec)[1] or spec).name}: {short_name(name)} ({prob:.1%})"
        written.append(save_attention_figure(path, denormalize(x, info.mean, info.std), maps, suptitle=title))
    return written


def run(args: argparse.Namespace) -> int:
    """Run ``swinlab predict`` with parsed arguments; returns the exit code."""
    model, info = load_for_runtime(args, resolve_device(args.device))  # --runtime eager|onnxruntime, --int8
    specs = expand_inputs(args.inputs)
    skipped: list[SkippedInput] | None = [] if args.skip_corrupt else None
    with skip_hint():
        preds = predict(model, info, specs, topk=args.topk, batch_size=args.batch_size, skipped=skipped,
                        max_pixels=args.max_pixels, progress=not args.no_progress)
    skipped = skipped or []
    check_some_read(skipped, len(specs))
    gone = {s.index for s in skipped}
    kept = [spec for i, spec in enumerate(specs) if i not in gone]
    print(format_json(kept, preds, skipped) if args.json else format_table(kept, preds, args.names))
    if args.attention_out:
        written = _write_attention(eager_model_of(model), info, kept, preds, Path(args.attention_out),
                                   args.max_pixels)
        print(f"wrote {len(written)} attention figure(s) to {args.attention_out}", file=sys.stderr)
    report_skipped(skipped, len(specs))
    return 0
