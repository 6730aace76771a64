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

from ..errors import InputError, UsageError

__all__ = ["RUNTIMES", "add_runtime_args", "calibration_images", "load_for_runtime", "eager_model_of"]

#: ``--runtime`` choices of predict / evaluate / serve.
RUNTIMES = ("eager", "onnxruntime")
#: ``--int8-scheme`` choices: ``swinlab.export.metadata.INT8_SCHEMES`` (repeated
#: here so that parsing the command line imports no torch; a test checks they agree).
INT8_SCHEMES = ("dynamic", "blockwise", "per-token")
INT8_SCHEME_HELP = ("with --int8: 'dynamic' (int8 weights and per-tensor activations: fastest), 'per-token' "
                    "(activations per token, weights per channel rounded by GPTQ on --calibration images: "
                    "close to fp32, fast) or 'blockwise' (8-bit weights and activations in blocks of 32: "
                    "close to fp32, slow) (default: dynamic)")
CALIBRATION_HELP = ("with --int8-scheme per-token: images (files, folders, ARCHIVE.zip::FOLDER) of which "
                    "512 chosen at random calibrate GPTQ's weight rounding; without it the weights are "
                    "rounded to nearest")


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """``--runtime eager|onnxruntime`` and ``--int8`` (predict, evaluate)."""
    g = p.add_argument_group("runtime")
    g.add_argument("--runtime", choices=RUNTIMES, default="eager",
                   help="eager PyTorch, or ONNX Runtime on the CPU (the model is exported to a temporary "
                        "ONNX file first; an .onnx SOURCE always runs in ONNX Runtime) (default: eager)")
    g.add_argument("--int8", action="store_true",
                   help="with --runtime onnxruntime: int8 quantization of the Linear layers")
    g.add_argument("--int8-scheme", choices=INT8_SCHEMES, default="dynamic", help=INT8_SCHEME_HELP)
    g.add_argument("--calibration", metavar="IMAGES", help=CALIBRATION_HELP)


def calibration_images(args: argparse.Namespace, info: Any) -> Any:
    """The ``--calibration`` images, preprocessed for the model (``info``, at its
    input size): float ``(n, 3, H, W)`` with n <= 512 chosen at random
    (seeded); None without ``--calibration``. The options are checked before
    any image is read.

    Raises:
        UsageError: ``--calibration`` without ``--int8 --int8-scheme per-token``
            (or with an export format other than ONNX).
        InputNotFoundError / CorruptImageError: an unreadable path or image (the
            message names ``--calibration``).
    """
    from ..export.metadata import check_int8_options
    from ..export.per_token import calibration_choice
    from ..inference.images import expand_inputs
    from ..inference.loading import eval_transform_for
    from ..inference.predict import preprocess_images

    spec = getattr(args, "calibration", None)
    if spec is None:
        return None
    check_int8_options(getattr(args, "format", "onnx"), getattr(args, "int8", False),
                       getattr(args, "int8_scheme", "dynamic"), spec)
    try:
        specs = calibration_choice(expand_inputs([spec]))
        if not specs:
            raise UsageError(f"--calibration {spec}: no images there")
        return preprocess_images(specs, eval_transform_for(info))
    except InputError as e:
        raise type(e)(f"--calibration: {e}") from None


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
    from ..export.metadata import check_int8_options
    from ..inference.loading import load_model

    runtime, int8 = getattr(args, "runtime", "eager"), getattr(args, "int8", False)
    scheme = getattr(args, "int8_scheme", "dynamic")
    is_onnx = str(args.source).lower().endswith(".onnx")
    if int8 and runtime != "onnxruntime":
        raise UsageError("--int8 needs --runtime onnxruntime")
    check_int8_options("onnx", int8, scheme, getattr(args, "calibration", None))
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
    calibration = calibration_images(args, info)
    return OnnxRuntimeModel.from_model(eager, info, int8=int8, int8_scheme=scheme, calibration=calibration), info


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
