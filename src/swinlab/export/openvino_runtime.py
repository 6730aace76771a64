"""OpenVINO as a drop-in for the eager model: :class:`OpenVinoModel`, the
second runtime of :class:`~swinlab.export.runtime.ExportedModel`.

It reads the same ``.onnx`` file (and metadata) as ONNX Runtime and compiles
it for OpenVINO's CPU plugin with

* ``INFERENCE_PRECISION_HINT`` ``f32`` (fp32) or ``bf16`` (bf16: matrix
  products in bfloat16 on CPUs with AMX or AVX512-BF16; the plugin falls back
  to f32 on other CPUs, recorded in ``effective_precision``). The hint is
  always set: the plugin's default is bf16 on CPUs that have it;
* ``INFERENCE_NUM_THREADS`` = ``threads``, one stream, the latency hint;
* int8: NNCF's post-training quantization (``nncf.quantize`` with its
  default settings: int8 weights per channel, activations per tensor with
  static ranges from the calibration images; Kozlov et al. 2020, "Neural
  Network Compression Framework for fast model inference") of the fp32 graph
  when it is loaded, followed by the int8 check of the ONNX Runtime int8
  exports (:mod:`swinlab.export.verify`: on the same seeded random inputs,
  every image's logits at a cosine of at least 0.99 to the fp32 graph's),
  else :class:`~swinlab.export.verify.VerificationError`. On the main job's
  model ``model_type=TRANSFORMER`` kept fewer predictions than the default
  (see ``benchmarks/RESULTS_deploy.md``). The ops NNCF leaves in float run at ``precision``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputNotFoundError, InvalidInputError, UsageError
from .runtime import ExportedModel
from .verify import VerificationError, verify_on_images

__all__ = ["OPENVINO_PRECISIONS", "import_openvino", "import_nncf", "keep_signal_stack", "OpenVinoModel"]

#: ``precision`` -> the CPU plugin's ``INFERENCE_PRECISION_HINT``.
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
_CHECK_SEED = 0  # the random inputs of swinlab.export.verify.verify_outputs


def _import(module: str, what: str) -> Any:
    """``importlib.import_module(module)``.

    Raises:
        UsageError: it is not installed (``what`` needs it; names the extra to install).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{what}: pip install -e '.[export]' (or pip install {module})") from None


def import_openvino() -> Any:
    """The ``openvino`` module (UsageError naming the extra when it is not installed)."""
    return _import("openvino", "OpenVINO is not installed")


def import_nncf() -> Any:
    """The ``nncf`` module (OpenVINO's int8 quantization), its log quietened to errors
    (UsageError naming the extra when it is not installed)."""
    nncf = _import("nncf", "OpenVINO int8 needs NNCF, which is not installed")
    nncf.set_log_level(logging.ERROR)
    return nncf


class _SignalStack(ctypes.Structure):
    """``stack_t`` of ``sigaltstack(2)`` (Linux)."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def keep_signal_stack():
    """Runs the block, then gives the calling thread back the alternate
    signal stack it had before (Linux; elsewhere a no-op).

    OpenVINO's CPU plugin, when it is created (the first ``compile_model`` or
    ``get_property`` of ``"CPU"`` in a ``Core``), installs a signal stack of its
    own on the calling thread and unmaps it when the plugin is destroyed; it
    puts the previous one back only if its own is still the thread's current
    one (``SigAltStackSetup`` in its ``plugin.cpp``). Two ``Core`` objects
    freed oldest first (two models; NNCF makes its own) leave the thread on
    unmapped memory, and the next signal with a Python handler (Ctrl-C,
    SIGCHLD, SIGTERM) kills the process with SIGSEGV. With the thread's own
    stack back in place, the plugin's stack is never in use and freeing it is
    harmless. A stack the kernel refuses back (too small for AMX frames) is
    left as OpenVINO set it.
    """
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    before = _SignalStack()
    saved = libc.sigaltstack(None, ctypes.byref(before)) == 0
    try:
        yield
    finally:
        if saved:
            before.ss_flags &= ~1  # SS_ONSTACK is reported, never set
            libc.sigaltstack(ctypes.byref(before), None)


def _onnx_props(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (OpenVINO does not hand them on)."""
    import onnx

    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError / ValueError / OSError variants
        raise InvalidInputError(f"{path} is not a readable ONNX file ({type(e).__name__})") from None
    return {entry.key: entry.value for entry in proto.metadata_props}


class OpenVinoModel(ExportedModel):
    """An ONNX file run by OpenVINO's CPU plugin (module docstring).

    Args:
        path: an ``.onnx`` file with one input ``(batch, 3, H, W)`` float32
            and one output ``(batch, C)`` (e.g. from ``swinlab export``).
        threads: inference threads (default: ``torch.get_num_threads()``).
        precision: ``"fp32"`` or ``"bf16"`` (:data:`OPENVINO_PRECISIONS`).
        int8: quantize with NNCF on ``calibration`` (preprocessed images
            ``(n, 3, H, W)``, needed with ``int8``).

    Attributes: see :class:`ExportedModel`; ``runtime_label`` is
    ``"openvino"``, ``"openvino-bf16"`` or ``"openvino-int8"`` (+ ``"-bf16"``);
    ``effective_precision``: the precision the plugin compiled the float ops to
    (``"f32"`` or ``"bf16"``).

    Raises:
        UsageError: openvino / nncf missing, an unknown precision, int8 without images.
        InputNotFoundError: no such file. InvalidInputError: OpenVINO cannot read it,
            or not one input and one output.
        VerificationError: the int8 graph fails the agreement check.
    """

    INT8_IN_FILE = False

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, precision: str = "fp32",
                 int8: bool = False, calibration: torch.Tensor | None = None) -> None:
        super().__init__()
        if precision not in OPENVINO_PRECISIONS:
            raise UsageError(f"OpenVINO precision {precision!r}: expected one of {', '.join(OPENVINO_PRECISIONS)}")
        if int8 and (calibration is None or len(calibration) == 0):
            raise UsageError("--runtime openvino --int8 needs --calibration IMAGES (NNCF calibrates int8 ranges on them)")
        ov = import_openvino()
        p = Path(path)
        if not p.is_file():
            raise InputNotFoundError(f"ONNX file not found: {p}")
        self.config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
                       "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
                       "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        with keep_signal_stack():  # the CPU plugin (and NNCF's own) is created in here
            self.core = ov.Core()
            graph = self._read(p)
            self._set_io(p, [d.get_length() if d.is_static else None for d in graph.inputs[0].get_partial_shape()],
                         _onnx_props(p))
            if int8:
                graph = self._quantize(graph, calibration)
            self.compiled = self.core.compile_model(graph, "CPU", self.config)
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an openvino.Type
        self.effective_precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        self.runtime_label = "openvino" + ("-int8" if int8 else "") + ("" if precision == "fp32" else f"-{precision}")

    def _read(self, path: Path) -> Any:
        """The OpenVINO model of ``path``, with one input and one output."""
        try:
            graph = self.core.read_model(os.fspath(path))
        except Exception as e:  # OpenVINO raises RuntimeError / GeneralFailure variants
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InvalidInputError(f"OpenVINO cannot read {path}: {first}") from None
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise InvalidInputError(f"{path}: expected one input and one output, got {len(graph.inputs)} and "
                                    f"{len(graph.outputs)}")
        return graph

    def _quantize(self, graph: Any, calibration: torch.Tensor) -> Any:
        """NNCF's int8 form of ``graph``, checked against the fp32 graph (module docstring)."""
        nncf = import_nncf()
        images = calibration.detach().to("cpu", torch.float32).contiguous()
        dataset = nncf.Dataset([images[i:i + 1].numpy() for i in range(len(images))])
        fp32 = self.core.compile_model(graph, "CPU", {**self.config, "INFERENCE_PRECISION_HINT": "f32"})
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout stays the command's own
            quantized = nncf.quantize(graph, dataset, subset_size=len(images))
        check = self.core.compile_model(quantized, "CPU", self.config)
        rand = torch.randn(4, *images.shape[1:], generator=torch.Generator().manual_seed(_CHECK_SEED))
        report = verify_on_images(lambda x: _infer(fp32, x), lambda x: _infer(check, x), rand, "OpenVINO int8",
                                  batch_size=3, reference_name="OpenVINO fp32")
        if not report.ok:
            raise VerificationError(f"OpenVINO int8 of {self.path.name}: {report.failure()}")
        self.int8_report = report
        return quantized

    def run(self, array: np.ndarray) -> np.ndarray:
        """float32 ``(B, 3, H, W)`` -> ``(B, C)`` logits (a copy: OpenVINO reuses its output buffer)."""
        return np.array(self.compiled(array)[0], dtype=np.float32, copy=True)


def _infer(compiled: Any, x: torch.Tensor) -> torch.Tensor:
    """``compiled`` (an OpenVINO compiled model) on ``x`` ``(B, 3, H, W)`` -> ``(B, C)``."""
    return torch.from_numpy(np.array(compiled(x.numpy())[0], dtype=np.float32, copy=True))
