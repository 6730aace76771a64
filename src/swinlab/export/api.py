"""Export a loaded model to ONNX, TorchScript or an ExportedProgram, verify the
file against the eager model, and only then put it in place.

The steps of :func:`export_model`: write the file into a hidden scratch
folder next to the target; load it with the runtime that will run it (ONNX
Runtime, ``torch.jit.load`` or ``torch.export.load``); compare its outputs
with the eager model's (:func:`swinlab.export.verify.verify_outputs`); on
success move it to the target (atomic write) with its metadata (ONNX
``metadata_props``, or the sidecar ``PATH.json``); on failure raise
:class:`~swinlab.export.verify.VerificationError` and leave the target
untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError
from ..inference.loading import ModelInfo
from ..io.files import atomic_write, ensure_dir
from .metadata import FORMATS, ExportMetadata, check_int8_options, write_sidecar
from .onnx_export import DEFAULT_OPSET, export_onnx_file
from .runtime import OnnxRuntimeModel
from .torch_export import export_program, load_exported_program, load_torchscript, trace_torchscript
from .verify import FP32_TOLERANCE, INT8_MIN_COSINE, VerificationError, VerifyReport, verify_outputs

__all__ = ["ExportResult", "export_model", "load_exported"]

_SCRATCH_NAMES = {"onnx": "model.onnx", "torchscript": "model.pt", "exported-program": "model.pt2"}
_RUNTIME_NAMES = {"onnx": "ONNX Runtime", "torchscript": "TorchScript", "exported-program": "ExportedProgram"}


@dataclass
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes:
        path: the model file. sidecar: its ``PATH.json`` (None for ONNX).
        metadata: what the file carries. verify: the check (None if skipped).
        size_bytes: size of ``path``.
    """

    path: Path
    sidecar: Path | None
    metadata: ExportMetadata
    verify: VerifyReport | None
    size_bytes: int


def _write_scratch(model: nn.Module, meta: ExportMetadata, dst: Path, opset: int,
                   calibration: torch.Tensor | None = None) -> None:
    """The export file at ``dst`` (inside the scratch folder)."""
    if meta.format == "onnx":
        export_onnx_file(model, meta, dst, opset=opset, calibration=calibration)
    elif meta.format == "torchscript":
        trace_torchscript(model, dst, meta.img_hw)
    else:
        export_program(model, dst, meta.img_hw)


def load_exported(path: str | os.PathLike[str], fmt: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable ``(B, 3, H, W) float -> (B, C)`` running an exported file of format ``fmt``.

    Raises:
        UsageError: an unknown format. InputNotFoundError / InvalidInputError: an unreadable file.
    """
    if fmt == "onnx":
        return OnnxRuntimeModel(path)
    if fmt == "torchscript":
        return load_torchscript(path)
    if fmt == "exported-program":
        return load_exported_program(path)
    raise UsageError(f"unknown export format {fmt!r}; expected one of {FORMATS}")


def _check_options(fmt: str, int8: bool, int8_scheme: str, img_hw: Sequence[int], batch_sizes: Sequence[int],
                   calibration: torch.Tensor | None = None) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    check_int8_options(fmt, int8, int8_scheme, calibration)
    if len(img_hw) != 2 or any(int(v) < 1 for v in img_hw):
        raise UsageError(f"--img-size: expected two positive ints H W, got {list(img_hw)}")
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise UsageError(f"verification batch sizes must be positive, got {list(batch_sizes)}")


def export_model(
    model: nn.Module,
    info: ModelInfo,
    path: str | os.PathLike[str],
    fmt: str = "onnx",
    img_hw: Sequence[int] | None = None,
    int8: bool = False,
    int8_scheme: str = "dynamic",
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    tolerance: float = FP32_TOLERANCE,
    min_cosine: float = INT8_MIN_COSINE,
    batch_sizes: Sequence[int] = (1, 3),
    calibration: torch.Tensor | None = None,
) -> ExportResult:
    """Export ``model`` (CPU, eval mode) to ``path`` and verify it (see the module docstring).

    Args:
        model, info: from :func:`swinlab.inference.load_model`.
        path: the file to write. fmt: ``"onnx"``, ``"torchscript"`` or ``"exported-program"``.
        img_hw: static input ``(H, W)`` [pixels] (default: ``info.img_size`` square).
        int8: quantize the Linear layers to int8 (ONNX only), with
            ``int8_scheme`` ``"dynamic"`` (fastest), ``"per-token"`` (close to
            fp32, fast) or ``"blockwise"`` (close to fp32, slow).
        opset: ONNX opset. verify: run the check (skipping it is for tests and benchmarks).
        tolerance: fp32 max |diff| allowed. min_cosine: int8 per-image cosine bound.
        batch_sizes: batches checked (the first should be 1, the batch the graph was traced at).
        calibration: preprocessed images ``(n, 3, H, W)`` for the ``"per-token"``
            scheme's GPTQ (None: weights rounded to nearest).

    Returns:
        :class:`ExportResult`.

    Raises:
        UsageError: bad options. RunError: the exporter failed.
        VerificationError: outputs differ beyond the bound (``path`` not written).
    """
    hw = tuple(int(v) for v in (img_hw or (info.img_size, info.img_size)))
    _check_options(fmt, int8, int8_scheme, hw, batch_sizes, calibration)
    model = model.to("cpu").eval()
    meta = ExportMetadata.from_model_info(info, hw, fmt, int8=int8, int8_scheme=int8_scheme)
    path = Path(path)
    ensure_dir(path.parent)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        scratch = Path(tmp) / _SCRATCH_NAMES[fmt]
        _write_scratch(model, meta, scratch, opset, calibration)
        report = None
        if verify:
            runner = load_exported(scratch, fmt)
            report = verify_outputs(model, runner, hw, _RUNTIME_NAMES[fmt], batch_sizes, int8, tolerance, min_cosine)
            del runner
            if not report.ok:
                raise VerificationError(f"verification failed, {path} not written: {report.failure()}")
        with open(scratch, "rb") as src:
            atomic_write(path, lambda f: shutil.copyfileobj(src, f, 16 * 2**20), size_hint=scratch.stat().st_size)
    sidecar = write_sidecar(path, meta) if fmt != "onnx" else None
    return ExportResult(path, sidecar, meta, report, path.stat().st_size)
