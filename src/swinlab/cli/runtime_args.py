"""Shared pieces of the deployment commands (``export``, ``benchmark``,
``serve``) and the ``--runtime`` / ``--precision`` / ``--int8`` options of
``predict``, ``evaluate`` and ``serve`` (``--precision`` also of ``features``
and ``benchmark``).

Nothing heavy is imported here at module level (``swinlab --help`` stays
fast): torch, swinlab.inference and swinlab.export are imported when a
command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InputError, UsageError

__all__ = ["RUNTIMES", "PRECISIONS", "add_runtime_args", "add_precision_arg", "calibration_images",
           "load_calibration", "load_image_set", "load_for_runtime", "eager_model_of", "runtime_label"]

#: ``--runtime`` choices of predict / evaluate / serve.
RUNTIMES = ("eager", "onnxruntime", "openvino", "auto")
#: ``--precision`` choices: ``swinlab.inference.precision.PRECISIONS`` and ``--int8-scheme``
#: choices: ``swinlab.export.metadata.INT8_SCHEMES`` (repeated here so that parsing the
#: command line imports no torch; a test checks they agree).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
INT8_SCHEMES = ("dynamic", "blockwise", "per-token")
#: calibration images used (``swinlab.export.per_token.CALIBRATION_IMAGES``; a test checks they agree).
CALIBRATION_COUNT = 512
RUNTIME_HELP = ("eager PyTorch, ONNX Runtime or OpenVINO on the CPU (the model is exported to a temporary "
                "ONNX file first; an .onnx SOURCE runs in ONNX Runtime unless --runtime openvino), or auto: "
                "the fastest runtime that keeps >= 99%% of the fp32 predictions on this CPU class "
                "(OpenVINO bf16 with bf16 matrix instructions; without them ONNX Runtime per-token int8 when "
                "--calibration is given, else OpenVINO fp32; printed) (default: eager)")
PRECISION_HELP = ("auto: bf16 where the CPU has bf16 matrix instructions (AMX, AVX512-BF16), else fp32 -- "
                  "the choice of training's amp=auto, printed with its reason; bf16: eager under bf16 "
                  "autocast, OpenVINO with its bf16 precision hint; fp16: eager on CUDA (default: fp32)")
INT8_SCHEME_HELP = ("with --int8 in ONNX Runtime: 'dynamic' (int8 weights and per-tensor activations: fastest), "
                    "'per-token' (activations per token, weights per channel rounded by GPTQ on --calibration "
                    "images: close to fp32, fast) or 'blockwise' (8-bit weights and activations in blocks of 32: "
                    "close to fp32, slow) (default: dynamic)")
CALIBRATION_HELP = ("with --int8-scheme per-token, or --runtime openvino --int8 (NNCF): images (files, folders, "
                    "ARCHIVE.zip::FOLDER) of which 512 chosen at random calibrate GPTQ's weight rounding or "
                    "NNCF's int8 ranges; without it per-token rounds the weights to nearest")


def add_precision_arg(p: Any) -> None:
    """``--precision auto|fp32|bf16|fp16`` (default None: fp32, or the auto runtime's)."""
    p.add_argument("--precision", choices=PRECISIONS, help=PRECISION_HELP)


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """``--runtime``, ``--precision``, ``--int8``, ``--int8-scheme``, ``--calibration``
    (predict, evaluate, serve)."""
    g = p.add_argument_group("runtime")
    g.add_argument("--runtime", choices=RUNTIMES, default="eager", help=RUNTIME_HELP)
    add_precision_arg(g)
    g.add_argument("--int8", action="store_true",
                   help="with --runtime onnxruntime (--int8-scheme) or openvino (NNCF, needs --calibration): "
                        "int8 Linear layers")
    g.add_argument("--int8-scheme", choices=INT8_SCHEMES, default="dynamic", help=INT8_SCHEME_HELP)
    g.add_argument("--calibration", metavar="IMAGES", help=CALIBRATION_HELP)


def calibration_images(args: argparse.Namespace, info: Any) -> Any:
    """The ``--calibration`` images of an export (see :func:`load_calibration`);
    None without ``--calibration``. The options are checked before any image is read.

    Raises:
        UsageError: ``--calibration`` without ``--int8 --int8-scheme per-token``
            (or with an export format other than ONNX).
        InputNotFoundError / CorruptImageError: see :func:`load_calibration`.
    """
    from ..export.metadata import check_int8_options

    spec = getattr(args, "calibration", None)
    if spec is None:
        return None
    check_int8_options(getattr(args, "format", "onnx"), getattr(args, "int8", False),
                       getattr(args, "int8_scheme", "dynamic"), spec)
    return load_calibration(spec, info)


def load_calibration(spec: str | None, info: Any) -> Any:
    """The ``--calibration`` images of ``spec`` (:func:`load_image_set`, 512 at most, seed 0);
    None when ``spec`` is None."""
    return None if spec is None else load_image_set(spec, info, CALIBRATION_COUNT, "--calibration")


def load_image_set(spec: str, info: Any, count: int, option: str, seed: int = 0) -> Any:
    """Images of ``spec`` (files, folders, ``ARCHIVE.zip::FOLDER``), preprocessed for
    the model (``info``, at its input size): float ``(n, 3, H, W)`` with n <= ``count``
    chosen at random (``seed``), in their order.

    Raises:
        UsageError: no images there.
        InputNotFoundError / CorruptImageError: an unreadable path or image (the
            message names ``option``).
    """
    from ..export.per_token import calibration_choice
    from ..inference.images import expand_inputs
    from ..inference.loading import eval_transform_for
    from ..inference.predict import preprocess_images

    try:
        specs = calibration_choice(expand_inputs([spec]), count=count, seed=seed)
        if not specs:
            raise UsageError(f"{option} {spec}: no images there")
        return preprocess_images(specs, eval_transform_for(info))
    except InputError as e:
        raise type(e)(f"{option}: {e}") from None


def _runtime_choice(args: argparse.Namespace, device: Any, is_onnx: bool) -> Any:
    """The :class:`~swinlab.export.choice.RuntimeChoice` of ``--runtime``,
    ``--precision`` and the int8 options; a decided ``auto`` is printed with its reason.

    Raises:
        UsageError: options that do not fit together (see :func:`load_for_runtime`).
    """
    from ..export.choice import RuntimeChoice, auto_runtime
    from ..export.metadata import check_int8_options
    from ..inference.precision import resolve_precision

    runtime, int8 = getattr(args, "runtime", "eager"), getattr(args, "int8", False)
    scheme, calibration = getattr(args, "int8_scheme", "dynamic"), getattr(args, "calibration", None)
    precision = getattr(args, "precision", None)
    if runtime == "auto":
        if int8 or precision or scheme != "dynamic":
            raise UsageError("--runtime auto chooses the precision and int8 itself; drop --precision / --int8")
        choice, why = auto_runtime(calibration is not None)
        print(f"--runtime auto: {choice.name} ({why})", file=sys.stderr, flush=True)
        return choice
    runtime = "onnxruntime" if runtime == "eager" and is_onnx else runtime
    if int8 and runtime == "eager":
        raise UsageError("--int8 needs --runtime onnxruntime or openvino")
    check_int8_options("onnx", int8, scheme, calibration, runtime=runtime)
    decided = resolve_precision(precision or "fp32", device if runtime == "eager" else "cpu")
    name = decided.name
    if runtime == "onnxruntime" and precision == "auto":
        name = "fp32"  # ONNX Runtime runs the fp32 / int8 graph as it is
    if precision == "auto":
        print(f"precision {name} ({decided.reason}{'; ONNX Runtime runs fp32' if name != decided.name else ''})",
              file=sys.stderr, flush=True)
    return RuntimeChoice(runtime, name, int8, scheme)


def _open_onnx_file(args: argparse.Namespace, choice: Any) -> tuple[Any, Any]:
    """An ``.onnx`` SOURCE in ONNX Runtime or OpenVINO (int8: NNCF on ``--calibration``)."""
    from ..export.openvino_runtime import OpenVinoModel
    from ..export.onnx_export import read_onnx_metadata
    from ..export.runtime import OnnxRuntimeModel

    if choice.runtime == "onnxruntime":
        if choice.int8:
            raise UsageError(f"--int8: {args.source} is an ONNX file already; export it with 'swinlab export --int8'")
        if choice.precision != "fp32":
            raise UsageError(f"--precision {choice.precision}: ONNX Runtime runs the file in fp32 here; "
                             "use --runtime openvino for bf16")
        model = OnnxRuntimeModel(args.source)
        return model, model.info
    spec = getattr(args, "calibration", None)
    calibration = load_calibration(spec, read_onnx_metadata(args.source).to_model_info()) if choice.int8 else None
    model = OpenVinoModel(args.source, precision=choice.precision, int8=choice.int8, calibration=calibration)
    return model, model.info


def load_for_runtime(args: argparse.Namespace, device: Any) -> tuple[Any, Any]:
    """The model to run and its ``ModelInfo``, as ``--runtime`` / ``--precision`` / ``--int8`` say.

    * eager: :func:`swinlab.inference.load_model` on ``device``, under autocast
      for bf16 / fp16 (:class:`swinlab.inference.precision.AutocastModel`);
    * onnxruntime / openvino: the model is loaded on the CPU and exported on the fly
      (:func:`swinlab.export.choice.build_runtime`);
    * auto: :func:`swinlab.export.choice.auto_runtime`'s choice;
    * SOURCE ``*.onnx`` (e.g. from ``swinlab export``): run by ONNX Runtime
      (or OpenVINO) with the class names and preprocessing stored in the file.

    Raises:
        UsageError: ``--int8`` with eager, int8 options that do not fit the
            runtime (:func:`swinlab.export.metadata.check_int8_options`), a
            precision the runtime does not run, or a non-CPU ``--device``
            with ONNX Runtime / OpenVINO.
    """
    from ..export.choice import build_runtime
    from ..inference.loading import load_model

    is_onnx = str(args.source).lower().endswith(".onnx")
    choice = _runtime_choice(args, device, is_onnx)
    if choice.runtime == "eager" and not is_onnx:
        model, info = load_model(args.source, device=device, ema=getattr(args, "ema", False))
        return build_runtime(choice, model, info), info
    if getattr(args, "device", "auto") not in ("auto", "cpu"):
        raise UsageError(f"--device {args.device}: {choice.runtime} runs on the CPU here; use --device cpu")
    if is_onnx:
        return _open_onnx_file(args, choice)
    eager, info = load_model(args.source, device="cpu", ema=getattr(args, "ema", False))
    calibration = load_calibration(getattr(args, "calibration", None), info) if choice.int8 else None
    return build_runtime(choice, eager, info, calibration=calibration), info


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


def runtime_label(model: Any) -> str:
    """The runtime's name as ``swinlab benchmark`` spells it (``"eager"``, ``"eager-bf16"``,
    ``"onnxruntime-int8"``, ``"openvino-bf16"`` ...)."""
    return str(getattr(model, "runtime_label", "eager"))
