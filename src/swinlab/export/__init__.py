"""Deployment: export a model to ONNX / TorchScript / ExportedProgram with its
class names and preprocessing, verified against PyTorch
(:func:`export_model`); int8 quantization (ONNX Runtime); ONNX Runtime and
OpenVINO as drop-ins for the eager model (:class:`OnnxRuntimeModel`,
:class:`OpenVinoModel`, int8 by NNCF), the runtime choice
(:mod:`swinlab.export.choice`, ``--runtime auto``); and CPU benchmarks of the
runtimes (:mod:`swinlab.export.benchmark`).

Layering: imports ``swinlab.inference`` and the layers below it; imported by
``swinlab.serve`` and ``swinlab.cli`` only. onnx / onnxruntime / openvino / nncf are
imported inside the functions that use them.
"""

from .api import ExportResult, export_model, load_exported
from .metadata import FORMATS, ExportMetadata, read_sidecar, sidecar_path
from .onnx_export import DEFAULT_OPSET, read_onnx_metadata
from .choice import RuntimeChoice, auto_runtime, build_runtime
from .openvino_runtime import OpenVinoModel
from .runtime import ExportedModel, OnnxRuntimeModel
from .verify import FP32_TOLERANCE, INT8_MIN_COSINE, VerificationError, VerifyReport, verify_outputs

__all__ = [
    "DEFAULT_OPSET",
    "ExportMetadata",
    "ExportResult",
    "ExportedModel",
    "FORMATS",
    "FP32_TOLERANCE",
    "INT8_MIN_COSINE",
    "OnnxRuntimeModel",
    "OpenVinoModel",
    "RuntimeChoice",
    "auto_runtime",
    "build_runtime",
    "VerificationError",
    "VerifyReport",
    "export_model",
    "load_exported",
    "read_onnx_metadata",
    "read_sidecar",
    "sidecar_path",
    "verify_outputs",
]
