"""Exported ONNX files as drop-ins for the eager model: :class:`ExportedModel`
and its ONNX Runtime form :class:`OnnxRuntimeModel` (the OpenVINO form is
:class:`swinlab.export.openvino_runtime.OpenVinoModel`).

Each is an ``nn.Module`` without parameters whose ``forward`` takes the float
``(B, 3, H, W)`` batch that the eager model takes and returns ``(B, C)``
float32 logits as a torch tensor, so :func:`swinlab.inference.predict` and
the evaluation loop (:func:`swinlab.training.evaluation.evaluate_model`) use
it unchanged (they call ``eval()``, ``train()``, ``parameters()`` and
``__call__`` only). They run on the CPU; the input is the ``.onnx`` file of
``swinlab export`` with its metadata, so one exported file runs in either runtime.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputNotFoundError, InvalidInputError
from ..inference.loading import ModelInfo
from .metadata import ExportMetadata
from .onnx_export import export_onnx_file

__all__ = ["open_session", "ExportedModel", "OnnxRuntimeModel"]


def open_session(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (default: ``torch.get_num_threads()``, so
            that ONNX Runtime and PyTorch use the same cores); inter-op: 1.
            Threads do not spin-wait between runs.

    Raises:
        InputNotFoundError: no such file.
        InvalidInputError: ONNX Runtime cannot load it (first line of its message).
    """
    import onnxruntime as ort

    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"ONNX file not found: {p}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    # no busy-waiting between runs: spinning ORT threads would steal the cores from PyTorch
    # running in the same process (measured: eager 20x slower when timed in turns with ORT)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(os.fspath(p), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types (InvalidGraph, Fail, ...)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InvalidInputError(f"ONNX Runtime cannot load {p}: {first}") from None


class ExportedModel(nn.Module):
    """An ONNX file run by an inference runtime, called like the eager classifier.

    Subclasses open the file in ``__init__(path, threads, ...)``, then call
    :meth:`_set_io` with the input shape and the file's metadata props, and
    implement :meth:`run` (float32 ``(B, 3, H, W)`` array -> ``(B, C)`` array).

    Attributes:
        path: the file. input_hw: the graph's static ``(H, W)`` (None if dynamic).
        metadata: its :class:`ExportMetadata`, or None when it has none.
        eager_model: the PyTorch model it was made from
            (:meth:`from_model`), else None; used for attention maps.
        runtime_label: the runtime's name as ``swinlab benchmark`` spells it.

    ``forward(x)``: float ``(B, 3, H, W)`` -> float32 ``(B, C)`` logits on
    ``x``'s device (the graph itself runs on the CPU).

    Raises:
        ``forward`` raises InvalidInputError for an input of another shape.
    """

    #: whether :meth:`from_model` writes int8 into the ONNX file (ONNX Runtime) or
    #: the runtime quantizes the fp32 file when it loads it (OpenVINO + NNCF).
    INT8_IN_FILE = True
    runtime_label = "exported"

    def _set_io(self, path: str | os.PathLike[str], shape: Any, props: dict[str, str]) -> None:
        """Record the file, the input shape ``(batch, 3, H, W)`` and the metadata props."""
        self.path = Path(path)
        dims = [d if isinstance(d, int) else None for d in list(shape)[2:4]]
        self.input_hw = (dims[0], dims[1]) if None not in dims and len(dims) == 2 else None
        self.metadata = ExportMetadata.from_onnx_props(props, str(self.path)) if "class_names" in props else None
        object.__setattr__(self, "eager_model", None)

    @classmethod
    def from_model(
        cls, model: nn.Module, info: ModelInfo, int8: bool = False, threads: int | None = None,
        img_hw: tuple[int, int] | None = None, int8_scheme: str = "dynamic",
        calibration: torch.Tensor | None = None, **options: Any,
    ) -> "ExportedModel":
        """Export ``model`` to ONNX in a temporary folder (removed when this
        object is garbage collected or the process exits) and load it.

        Args:
            model: the eager classifier (moved to no device; exported on the CPU).
            info: its :class:`ModelInfo` (metadata). int8: quantize the Linear layers:
                in the file with ``int8_scheme`` (ONNX Runtime, one of ``INT8_SCHEMES``),
                or at load time (OpenVINO); ``calibration``: images ``(n, 3, H, W)``
                for the ``"per-token"`` scheme's GPTQ or for NNCF.
            img_hw: input ``(H, W)`` (default ``(info.img_size, info.img_size)``).
            options: passed on to the constructor (e.g. OpenVINO's ``precision``).

        Raises:
            RunError: the export failed (see :func:`.onnx_export.export_onnx_file`).
        """
        hw = (int(img_hw[0]), int(img_hw[1])) if img_hw else (int(info.img_size), int(info.img_size))
        in_file = cls.INT8_IN_FILE
        meta = ExportMetadata.from_model_info(info, hw, "onnx", int8=int8 and in_file,
                                              int8_scheme=int8_scheme if in_file else "dynamic")
        if not in_file:
            options.update(int8=int8, calibration=calibration)
        tmp = Path(tempfile.mkdtemp(prefix="swinlab-onnx-"))
        try:
            path = export_onnx_file(model, meta, tmp / "model.onnx", calibration=calibration if in_file else None)
            runtime = cls(path, threads, **options)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        weakref.finalize(runtime, shutil.rmtree, tmp, True)
        # a plain attribute, not a registered submodule: parameters() stays empty, eval() stays cheap
        object.__setattr__(runtime, "eager_model", model)
        return runtime

    @property
    def info(self) -> ModelInfo:
        """:class:`ModelInfo` from the file's metadata.

        Raises:
            InvalidInputError: the file has no swinlab metadata.
        """
        if self.metadata is None:
            raise InvalidInputError(f"{self.path} has no swinlab metadata (class names, preprocessing)")
        return self.metadata.to_model_info()

    def run(self, array: np.ndarray) -> np.ndarray:
        """float32 ``(B, 3, H, W)`` -> ``(B, C)`` logits (implemented by each runtime)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph: float ``(B, 3, H, W)`` -> float32 ``(B, C)`` on ``x``'s device."""
        if x.ndim != 4 or x.shape[1] != 3 or (self.input_hw and tuple(x.shape[2:]) != tuple(self.input_hw)):
            want = f"(B, 3, {self.input_hw[0]}, {self.input_hw[1]})" if self.input_hw else "(B, 3, H, W)"
            raise InvalidInputError(f"{self.path.name}: input of shape {tuple(x.shape)}, expected {want}")
        out = self.run(x.detach().to("cpu", torch.float32).contiguous().numpy())
        return torch.from_numpy(np.ascontiguousarray(out, np.float32)).to(x.device)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, input_hw={self.input_hw}"


class OnnxRuntimeModel(ExportedModel):
    """An ONNX file run by ONNX Runtime (``CPUExecutionProvider``).

    Args:
        path: an ``.onnx`` file with one input ``(batch, 3, H, W)`` float32
            and one output ``(batch, C)`` (e.g. from ``swinlab export``).
        threads: intra-op threads (see :func:`open_session`).

    Attributes: see :class:`ExportedModel`; ``runtime_label`` is
    ``"onnxruntime"``, ``"onnxruntime-int8"`` or ``"onnxruntime-int8-SCHEME"``.

    Raises:
        InputNotFoundError / InvalidInputError: see :func:`open_session`, or a
            graph without exactly one input and one output.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__()
        self.session = open_session(path, threads)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(self.session.get_outputs()) != 1:
            raise InvalidInputError(f"{path}: expected one input and one output, got {len(inputs)} and "
                                    f"{len(self.session.get_outputs())}")
        self.input_name = inputs[0].name
        self._set_io(path, inputs[0].shape, dict(self.session.get_modelmeta().custom_metadata_map))
        meta = self.metadata
        scheme = "" if meta is None or not meta.int8 else "-int8" + (
            "" if meta.int8_scheme == "dynamic" else f"-{meta.int8_scheme}")
        self.runtime_label = "onnxruntime" + scheme

    def run(self, array: np.ndarray) -> np.ndarray:
        """float32 ``(B, 3, H, W)`` -> ``(B, C)`` logits."""
        (out,) = self.session.run(None, {self.input_name: array})
        return out
