"""TorchScript and ``torch.export`` ExportedProgram files of a classifier.

* TorchScript: ``torch.jit.trace`` at batch 1, saved with ``torch.jit.save``
  and read with ``torch.jit.load``. The trace records the batch size
  symbolically (the model's shapes come from ``x.shape``), so the file runs
  at any batch size; H and W are fixed by the trace.
* ExportedProgram: ``torch.export.export`` with a dynamic batch dimension
  (``torch.export.Dim``), saved with ``torch.export.save`` (``.pt2``) and run
  with ``torch.export.load(path).module()``. The example batch is 2:
  ``torch.export`` specialises a size-1 example dimension to the constant 1
  ("0/1 specialisation"), which would fix the batch to 1.

Both formats get their metadata in a sidecar ``PATH.json``
(:mod:`swinlab.export.metadata`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import InputNotFoundError, InvalidInputError, RunError

__all__ = ["trace_module", "trace_torchscript", "export_program", "load_torchscript", "load_exported_program"]


def trace_module(model: nn.Module, img_hw: tuple[int, int]) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of ``model`` (eval mode) at ``(1, 3, H, W)`` on its device.

    Raises:
        RunError: tracing failed (the first line of PyTorch's message is kept).
    """
    model.eval()
    param = next(model.parameters(), None)
    example = torch.zeros(1, 3, int(img_hw[0]), int(img_hw[1]), device=param.device if param is not None else "cpu")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings on Python-int shape logic
            return torch.jit.trace(model, example, check_trace=False)
    except RuntimeError as e:
        raise RunError(f"TorchScript trace failed: {str(e).splitlines()[0]}") from e


def trace_torchscript(model: nn.Module, path: str | os.PathLike[str], img_hw: tuple[int, int]) -> Path:
    """Trace ``model`` (:func:`trace_module`) and save it to ``path`` (scratch file, written directly).

    Raises:
        RunError: tracing failed.
    """
    torch.jit.save(trace_module(model, img_hw), os.fspath(path))
    return Path(path)


def export_program(model: nn.Module, path: str | os.PathLike[str], img_hw: tuple[int, int]) -> Path:
    """``torch.export.export`` ``model`` with a dynamic batch (example ``(2, 3, H, W)``)
    and save it with ``torch.export.save`` to ``path`` (scratch file, written directly).

    Raises:
        RunError: ``torch.export`` failed (the first line of its message is kept).
    """
    model.eval()
    example = torch.zeros(2, 3, int(img_hw[0]), int(img_hw[1]))
    batch = torch.export.Dim("batch", min=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    except Exception as e:  # torch.export raises UserError / GuardOnDataDependentSymNode / RuntimeError
        raise RunError(f"torch.export failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    torch.export.save(program, os.fspath(path))
    return Path(path)


def _check_file(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"{what} file not found: {p}")
    return p


def load_torchscript(path: str | os.PathLike[str]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.jit.load`` a traced model onto the CPU, in eval mode.

    Raises:
        InputNotFoundError: no such file. InvalidInputError: not a TorchScript file.
    """
    p = _check_file(path, "TorchScript")
    try:
        module = torch.jit.load(os.fspath(p), map_location="cpu")
    except (RuntimeError, ValueError) as e:
        raise InvalidInputError(f"{p} is not a TorchScript file: {str(e).splitlines()[0]}") from None
    return module.eval()


def load_exported_program(path: str | os.PathLike[str]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.export.load`` an ExportedProgram and return its runnable ``.module()``.

    Raises:
        InputNotFoundError: no such file. InvalidInputError: not an ExportedProgram file.
    """
    p = _check_file(path, "ExportedProgram")
    try:
        program = torch.export.load(os.fspath(p))
    except Exception as e:  # zip / pickle / version errors of various types
        first = str(e).splitlines()[0] if str(e) else ""
        raise InvalidInputError(f"{p} is not a torch.export file: {type(e).__name__}: {first}") from None
    return program.module()
