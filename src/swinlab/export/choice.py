"""Which runtime runs a model: a :class:`RuntimeChoice` (runtime, precision,
int8), its name as ``swinlab benchmark`` and ``/health`` spell it, building
it (:func:`build_runtime`), and the rule of ``--runtime auto``
(:func:`auto_runtime`).

Names: ``eager``, ``eager-bf16``, ``onnxruntime``, ``onnxruntime-int8``
(dynamic), ``onnxruntime-int8-blockwise``, ``onnxruntime-int8-per-token``,
``openvino``, ``openvino-bf16``, ``openvino-int8`` (NNCF; ``-bf16`` for its
float ops in bf16).

The ``auto`` rule, derived from ``swinlab benchmark --agreement-data`` and
``benchmarks/bench_runtimes.py`` (Swin-T 224, batch 16, 2 threads; figures
in ``benchmarks/RESULTS_deploy.md``), per CPU class
(:func:`swinlab.training.setup.cpu_bf16_matrix`):

* bf16 matrix instructions (AMX or AVX512-BF16): OpenVINO bf16 (99.33% top-1
  agreement with eager fp32 on the main job's model; issue 24's probe on AMX:
  2.97x eager fp32, eager bf16 2.29x at 99.12%, the fastest int8 1.53x at 98%),
  eager bf16 where OpenVINO is not installed;
* none: ONNX Runtime per-token int8 (GPTQ on ``--calibration`` images;
  99.2-99.3% agreement and 1.74-1.84x eager fp32 on an AVX512-VNNI CPU in
  ``benchmarks/RESULTS_deploy.md``) when images are given, else OpenVINO fp32
  (or eager fp32). OpenVINO int8 (NNCF) is not chosen: it kept only about
  96% of the main job's model's predictions.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UsageError
from ..inference.loading import ModelInfo
from ..inference.precision import AutocastModel
from ..training.setup import cpu_bf16_matrix
from .openvino_runtime import OpenVinoModel
from .runtime import OnnxRuntimeModel

__all__ = ["RUNTIME_NAMES", "RuntimeChoice", "build_runtime", "auto_runtime"]

#: every runtime name :meth:`RuntimeChoice.parse` accepts.
RUNTIME_NAMES = ("eager", "eager-bf16", "onnxruntime", "onnxruntime-int8", "onnxruntime-int8-blockwise",
                 "onnxruntime-int8-per-token", "openvino", "openvino-bf16", "openvino-int8", "openvino-int8-bf16")


@dataclass(frozen=True)
class RuntimeChoice:
    """A runtime and how it computes.

    Attributes:
        runtime: ``"eager"``, ``"onnxruntime"`` or ``"openvino"``.
        precision: ``"fp32"`` or ``"bf16"`` (``"fp16"``: eager on CUDA).
        int8: int8 Linear layers. int8_scheme: ONNX Runtime's scheme
            (:data:`~swinlab.export.metadata.INT8_SCHEMES`; ``"dynamic"`` for the others).
    """

    runtime: str
    precision: str = "fp32"
    int8: bool = False
    int8_scheme: str = "dynamic"

    @property
    def name(self) -> str:
        """The runtime's name (module docstring), e.g. ``"openvino-bf16"``."""
        int8 = ("-int8" + ("" if self.int8_scheme == "dynamic" else f"-{self.int8_scheme}")) if self.int8 else ""
        return self.runtime + int8 + ("" if self.precision == "fp32" else f"-{self.precision}")

    @classmethod
    def parse(cls, name: str) -> "RuntimeChoice":
        """The choice named ``name`` (one of :data:`RUNTIME_NAMES`).

        Raises:
            UsageError: an unknown name.
        """
        runtime, _, rest = name.partition("-")
        parts = rest.split("-") if rest else []
        precision = parts.pop() if parts and parts[-1] in ("bf16", "fp16") else "fp32"
        int8 = bool(parts) and parts[0] == "int8"
        scheme = "-".join(parts[1:]) or "dynamic"
        if name not in RUNTIME_NAMES:
            raise UsageError(f"unknown runtime {name!r}; expected one of {', '.join(RUNTIME_NAMES)}")
        return cls(runtime, precision, int8, scheme)


def build_runtime(choice: RuntimeChoice, model: nn.Module, info: ModelInfo, threads: int | None = None,
                  img_hw: tuple[int, int] | None = None, calibration: torch.Tensor | None = None) -> nn.Module:
    """``model`` (eager, CPU, eval mode) in the runtime of ``choice``: itself,
    an :class:`~swinlab.inference.precision.AutocastModel`, or an exported
    model (:class:`~swinlab.export.runtime.OnnxRuntimeModel`,
    :class:`~swinlab.export.openvino_runtime.OpenVinoModel`) made from it.

    Args:
        calibration: images ``(n, 3, H, W)`` for per-token GPTQ or NNCF (OpenVINO int8 needs them).

    Raises:
        UsageError: a precision the runtime does not run, or openvino / nncf missing.
        RunError: the export failed. VerificationError: OpenVINO int8 failed its check.
    """
    if choice.runtime == "eager":
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice.precision]
        return model if dtype is None else AutocastModel(model, dtype)
    if choice.runtime == "onnxruntime":
        if choice.precision != "fp32":
            raise UsageError(f"--precision {choice.precision}: ONNX Runtime runs fp32 and int8 graphs here; "
                             "use --runtime openvino or eager for bf16")
        return OnnxRuntimeModel.from_model(model, info, int8=choice.int8, threads=threads, img_hw=img_hw,
                                           int8_scheme=choice.int8_scheme, calibration=calibration)
    return OpenVinoModel.from_model(model, info, int8=choice.int8, threads=threads, img_hw=img_hw,
                                    calibration=calibration, precision=choice.precision)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def auto_runtime(calibration: bool) -> tuple[RuntimeChoice, str]:
    """The runtime of ``--runtime auto`` on this CPU and why (the rule of the module docstring).

    Args:
        calibration: whether ``--calibration`` images were given (int8 needs them).
    """
    found = cpu_bf16_matrix()
    openvino = _installed("openvino")
    if found:
        if openvino:
            return RuntimeChoice("openvino", "bf16"), f"this CPU has {found}: OpenVINO bf16"
        return RuntimeChoice("eager", "bf16"), f"this CPU has {found}, OpenVINO is not installed: eager bf16"
    if calibration and _installed("onnxruntime"):
        return (RuntimeChoice("onnxruntime", int8=True, int8_scheme="per-token"),
                "no bf16 matrix instructions on this CPU: ONNX Runtime per-token int8 (GPTQ on --calibration)")
    why = "no bf16 matrix instructions on this CPU and no --calibration images for int8"
    return (RuntimeChoice("openvino"), f"{why}: OpenVINO fp32") if openvino else (RuntimeChoice("eager"), f"{why}: fp32")

