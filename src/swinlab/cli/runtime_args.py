"""Shared pieces of the deployment commands (``export``, ``benchmark``,
``serve``) and the ``--runtime`` / ``--int8`` options of ``predict`` and
``evaluate``.

Nothing heavy is imported here at module level (``swinlab --help`` stays
fast): torch, swinlab.inference and swinlab.export are imported when a
command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UsageError

__all__ = ["RUNTIMES", "add_runtime_args", "load_for_runtime", "eager_model_of"]

#: ``--runtime`` choices of predict / evaluate / serve.
RUNTIMES = ("eager", "onnxruntime")
#: ``--int8-scheme`` choices: ``swinlab.export.metadata.INT8_SCHEMES`` (repeated
#: here so that parsing the command line imports no torch; a test checks they agree).
INT8_SCHEMES = ("dynamic", "blockwise")
INT8_SCHEME_HELP = ("with --int8: 'dynamic' (int8 weights and per-tensor activations, fast) or 'blockwise' "
                    "(8-bit weights and activations in blocks of 32, closer to fp32, slower) (default: dynamic)")


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """``--runtime eager|onnxruntime`` and ``--int8`` (predict, evaluate)."""
    g = p.add_argument_group("runtime")
    g.add_argument("--runtime", choices=RUNTIMES, default="eager",
                   help="eager PyTorch, or ONNX Runtime on the CPU (the model is exported to a temporary "
                        "ONNX file first; an .onnx SOURCE always runs in ONNX Runtime) (default: eager)")
    g.add_argument("--int8", action="store_true",
                   help="with --runtime onnxruntime: int8 quantization of the Linear layers")
    g.add_argument("--int8-scheme", choices=INT8_SCHEMES, default="dynamic", help=INT8_SCHEME_HELP)


def load_for_runtime(args: argparse.Namespace, device: Any) -> tuple[Any, Any]:
    """The model to run and its ``ModelInfo``, as ``--runtime`` / ``--int8`` say.

    * eager: :func:`swinlab.inference.load_model` on ``device``;
    * onnxruntime: the model is loaded on the CPU and exported on the fly
      (:meth:`swinlab.export.OnnxRuntimeModel.from_model`);
    * SOURCE ``*.onnx`` (e.g. from ``swinlab export``): run by ONNX Runtime
      with the class names and preprocessing stored in the file.

    Raises:
        UsageError: ``--int8`` without ``--runtime onnxruntime``, ``--int8-scheme``
            without ``--int8``, ``--amp``
            with ONNX Runtime, or a non-CPU ``--device`` with ONNX Runtime.
    """
    from ..inference.loading import load_model

    runtime, int8 = getattr(args, "runtime", "eager"), getattr(args, "int8", False)
    scheme = getattr(args, "int8_scheme", "dynamic")
    is_onnx = str(args.source).lower().endswith(".onnx")
    if int8 and runtime != "onnxruntime":
        raise UsageError("--int8 needs --runtime onnxruntime")
    if scheme != "dynamic" and not int8:
        raise UsageError(f"--int8-scheme {scheme} needs --int8")
    if runtime == "eager" and not is_onnx:
        return load_model(args.source, device=device, ema=getattr(args, "ema", False))
    if getattr(args, "amp", "none") not in (None, "none"):
        raise UsageError(f"--amp {args.amp} applies to --runtime eager only")
    if getattr(args, "device", "auto") not in ("auto", "cpu"):
        raise UsageError(f"--device {args.device}: ONNX Runtime runs on the CPU here; use --device cpu")
    from ..export.runtime import OnnxRuntimeModel

    if is_onnx:
        if int8:
            raise UsageError(f"--int8: {args.source} is an ONNX file already; export it with 'swinlab export --int8'")
        model = OnnxRuntimeModel(args.source)
        return model, model.info
    eager, info = load_model(args.source, device="cpu", ema=getattr(args, "ema", False))
    return OnnxRuntimeModel.from_model(eager, info, int8=int8, int8_scheme=scheme), info


def eager_model_of(model: Any) -> Any:
    """The PyTorch model behind ``model`` (itself when eager), for attention maps.

    Raises:
        UsageError: an ONNX file loaded without its PyTorch model.
    """
    if not hasattr(model, "eager_model"):
        return model
    if model.eager_model is None:
        raise UsageError("attention maps need the PyTorch model; give a run folder, checkpoint or model name as SOURCE")
    return model.eager_model
