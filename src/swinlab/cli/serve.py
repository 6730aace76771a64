"""swinlab serve: an HTTP server for a model (FastAPI + uvicorn).

  POST /predict     images (multipart file fields, or one raw body) -> JSON top-k
  POST /attention   one image -> PNG attention overlay (?block=K, ?format=json)
  GET  /health      liveness;  GET /info: model, limits, attention blocks
  GET  /            demo page: drop an image, see the top-5 and the attention map
  GET  /docs        OpenAPI documentation

Requests arriving together are batched into one forward pass. Bad uploads get
a 4xx JSON error (not an image, truncated, too many pixels, empty, too large)
and the server keeps serving.

examples:
  swinlab serve runs/main --port 8000
  swinlab serve runs/main --runtime onnxruntime --int8
  swinlab serve runs/main --runtime openvino --precision bf16
  swinlab serve runs/main --runtime auto --calibration tiny-imagenet-200.zip::tiny-imagenet-200/train
  curl -F file=@cat.jpg http://127.0.0.1:8000/predict
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

from ..errors import UsageError
from .common import positive_int
from .runtime_args import add_runtime_args, load_for_runtime, runtime_label

__all__ = ["register", "run"]


def register(subparsers: Any, help: str = "", parents: list[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``serve`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "serve", help=help, parents=list(parents), description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE",
                   help="run folder, checkpoint, save_pretrained folder, model name or .onnx file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="default: 8000")
    add_runtime_args(p)
    p.add_argument("--max-bytes", type=positive_int, default=20 * 2**20,
                   help="largest request body in bytes (413 above; default: 20 MiB)")
    p.add_argument("--max-pixels", type=positive_int, default=40_000_000,
                   help="largest image, width x height (413 above; default: 40,000,000)")
    p.add_argument("--topk", type=positive_int, default=5, help="classes per image (default: 5)")
    p.add_argument("--max-batch", type=positive_int, default=16, help="most images per forward pass (default: 16)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="longest wait for more requests to batch with (default: 5 ms)")
    p.add_argument("--threads", type=positive_int, help="CPU threads of the model (default: PyTorch's)")
    p.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run)
    return p


def _check_port(host: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: expected 0 to 65535")
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def run(args: argparse.Namespace) -> int:
    """Run ``swinlab serve`` with parsed arguments; returns the exit code."""
    import torch

    from ..serve import Predictor, ServeConfig, serve

    _check_port(args.host, args.port)
    if not args.batch_wait_ms >= 0:
        raise UsageError(f"--batch-wait-ms {args.batch_wait_ms}: expected a number >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, info = load_for_runtime(args, torch.device("cpu"))
    eager = getattr(model, "eager_model", model)
    runtime = runtime_label(model)
    predictor = Predictor(model, info, eager_model=eager, runtime=runtime)
    config = ServeConfig(max_bytes=args.max_bytes, max_pixels=args.max_pixels, topk=args.topk,
                         max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms)
    print(f"serving {info.model_name} ({runtime}) on http://{args.host}:{args.port}/  (Ctrl-C stops)", flush=True)
    serve(predictor, config, host=args.host, port=args.port, log_level=args.log_level)
    return 0

