"""ONNX export of a classifier, with its metadata, and int8 quantization.

Exporter: PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``), chosen by measurement over the ``torch.export``-based one
(``dynamo=True``, which needs ``onnxscript``; figures in
``benchmarks/RESULTS_deploy.md``, from ``benchmarks/bench_onnx_exporters.py``).
Both graphs of Swin-T and of the micro Swin run in ONNX Runtime and OpenVINO
at batch 1, 3 and 17 within float rounding of eager PyTorch, but

* the TorchScript-based exporter traces at batch 1 and keeps the batch axis
  dynamic; ``torch.export`` specialises a batch-1 example to a constant batch
  of 1 (its 0/1 specialisation), so it must be given a batch of 2 or more;
* it exports several times faster, and its graph runs as fast or faster in
  ONNX Runtime;
* it writes the opset asked for: the ``torch.export``-based exporter has no
  opset-17 implementations, writes opset 18 and logs a failed down-conversion.

``exporter="dynamo"`` is kept as an option for comparison and for PyTorch
versions without the TorchScript-based exporter (it writes opset >= 18).

int8 (:func:`quantize_int8`): ONNX Runtime's dynamic quantization
(``onnxruntime.quantization.quantize_dynamic``) of the MatMul nodes whose
second operand is a weight, i.e. every Linear layer (qkv, proj, MLP, patch
merging and the head, whose Gemm node the quantizer turns into a MatMul; in
the micro Swin: 27 MatMulInteger nodes); the patch-embedding convolution and
the attention products q k^T and p v (MatMuls of two activations) stay fp32:
int8 weights, activations quantized per batch at run time. Chosen over
``torch.ao.quantization.quantize_dynamic``: torch 2.13 warns that its
quantized tensors are deprecated and will be removed, and an ONNX file runs
in ONNX Runtime and OpenVINO alike.

A second int8 scheme, ``"blockwise"`` (:data:`INT8_SCHEMES`), trades speed for
fidelity: ONNX Runtime's ``MatMulNBits`` with 8-bit weights in blocks of 32
along the input dimension and ``accuracy_level=4`` (int8 arithmetic with the
activations quantized in blocks of 32 as well), for every Linear layer but
the head, whose Gemm node it leaves in fp32. On the main job's model it
keeps about 99% of the fp32 top-1 predictions where the dynamic scheme keeps
98%, but it runs Swin-T only slightly faster than fp32 (figures in
``benchmarks/RESULTS_deploy.md``, from ``benchmarks/bench_int8_schemes.py``).

A third scheme, ``"per-token"`` (:mod:`.per_token`), quantizes each token's
activations with its own scale and rounds the per-output-channel int8 weights
by GPTQ on calibration images, and runs the int8 GEMMs through ONNX Runtime's
``MatMulIntegerToFloat``: on the main job's model it keeps 99% of the fp32
predictions and runs Swin-T about 1.7x eager fp32 (the dynamic scheme about
2x; ``benchmarks/bench_int8.py --int8-scheme per-token``,
``benchmarks/bench_int8_finer.py``).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import InputNotFoundError, InvalidInputError, RunError, UsageError
from ..io.files import ensure_dir
from .metadata import INT8_SCHEMES, ExportMetadata, check_calibration
from .per_token import quantize_per_token

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "MAX_OPSET",
    "ONNX_EXPORTERS",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "torch_to_onnx",
    "export_onnx_file",
    "quantize_int8",
    "INT8_SCHEMES",
    "write_onnx_metadata",
    "read_onnx_metadata",
]

#: default ONNX opset (17: LayerNormalization is one node).
DEFAULT_OPSET = 17
#: lowest opset accepted (scaled_dot_product_attention needs 14).
MIN_OPSET = 14
#: highest opset accepted: the highest the TorchScript-based exporter of torch 2.13
#: writes (checked here first: on a higher one it dumps its whole graph before failing).
MAX_OPSET = 23
#: ``torch.onnx.export`` variants: ``torchscript`` (``dynamo=False``, default) or ``dynamo``.
ONNX_EXPORTERS = ("torchscript", "dynamo")
#: names of the graph's input (float ``(batch, 3, H, W)``) and output (``(batch, C)`` logits).
INPUT_NAME, OUTPUT_NAME = "input", "logits"


def _export_bytes(model: nn.Module, example: torch.Tensor, opset: int, exporter: str) -> bytes:
    """Run ``torch.onnx.export`` and return the serialized model."""
    if exporter == "torchscript":
        f = io.BytesIO()
        torch.onnx.export(
            model, (example,), f, dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
        return f.getvalue()
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's dependency)
    except ImportError:
        raise UsageError("the 'dynamo' ONNX exporter needs the onnxscript package (pip install onnxscript)") from None
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        model, (example.expand(2, *example.shape[1:]).contiguous(),), dynamo=True, opset_version=max(opset, 18),
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},),
    )
    return program.model_proto.SerializeToString()


def torch_to_onnx(
    model: nn.Module, path: str | os.PathLike[str], img_hw: tuple[int, int],
    opset: int = DEFAULT_OPSET, exporter: str = "torchscript",
) -> Path:
    """Export ``model`` (eval mode, CPU) to an ONNX file with a dynamic batch axis.

    Args:
        model: ``(B, 3, H, W)`` float -> ``(B, C)`` logits.
        path: the file to write (a scratch file: no metadata yet, written directly).
        img_hw: the static input ``(H, W)`` [pixels].
        opset: ONNX opset, :data:`MIN_OPSET` to :data:`MAX_OPSET`. exporter: one of :data:`ONNX_EXPORTERS`.

    Returns:
        ``path``. Graph input ``"input"`` ``(batch, 3, H, W)``, output ``"logits"`` ``(batch, C)``.

    Raises:
        UsageError: an unknown exporter or an opset out of range.
        RunError: the exporter failed on this model (its message is kept).
    """
    if exporter not in ONNX_EXPORTERS:
        raise UsageError(f"unknown ONNX exporter {exporter!r}; expected one of {ONNX_EXPORTERS}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"--opset {opset}: expected {MIN_OPSET} to {MAX_OPSET} (attention needs 14; "
                         f"{MAX_OPSET} is the highest PyTorch's exporter writes)")
    model.eval()
    param = next(model.parameters(), None)
    example = torch.zeros(1, 3, int(img_hw[0]), int(img_hw[1]), device=param.device if param is not None else "cpu")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings on Python-int shape logic, the exporter's deprecation note
            data = _export_bytes(model, example, opset, exporter)
    except RuntimeError as e:
        if "opset" in str(e).lower():
            raise UsageError(f"--opset {opset}: {str(e).splitlines()[0]}") from None
        raise RunError(f"ONNX export failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    Path(path).write_bytes(data)
    return Path(path)


def quantize_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str], scheme: str = "dynamic",
                  model: nn.Module | None = None, calibration: torch.Tensor | None = None) -> Path:
    """int8 quantization of the Linear layers of an ONNX file (see the module
    docstring). ``scheme="dynamic"``: ``onnxruntime.quantization.quantize_dynamic``
    with ``op_types_to_quantize=["MatMul"]``, ``MatMulConstBOnly`` (weights
    only), signed int8 weights, per-tensor scales. ``scheme="blockwise"``:
    ``MatMulNBitsQuantizer(bits=8, block_size=32, is_symmetric=True,
    accuracy_level=4)``. ``scheme="per-token"``:
    :func:`.per_token.quantize_per_token` with ``model`` (the eager model
    ``src`` was exported from) and ``calibration`` images ``(n, 3, H, W)``
    for GPTQ (None: weights rounded to nearest).

    Returns:
        ``dst`` (written directly: a scratch file).

    Raises:
        UsageError: an unknown ``scheme``; ``"per-token"`` without ``model``;
            ``calibration`` with another scheme.
    """
    if scheme not in INT8_SCHEMES:
        raise UsageError(f"--int8-scheme {scheme!r}: expected one of {', '.join(INT8_SCHEMES)}")
    check_calibration(scheme, calibration)
    if scheme == "per-token":
        if model is None:
            raise UsageError("--int8-scheme per-token needs the PyTorch model the graph was exported from")
        return quantize_per_token(src, dst, model, calibration)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the quantizers log advice ("consider pre-processing") on the root logger
    try:
        if scheme == "blockwise":
            _quantize_blockwise(src, dst)
        else:
            quantize_dynamic(
                os.fspath(src), os.fspath(dst), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                extra_options={"MatMulConstBOnly": True},
            )
    finally:
        logging.disable(previous)
    return Path(dst)


def _quantize_blockwise(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """The ``"blockwise"`` scheme of :func:`quantize_int8`. Its quantizer needs
    the ``onnx-ir`` package (in swinlab's ``onnx``/``export`` extras).

    Raises:
        UsageError: ``onnx-ir`` is not installed.
    """
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ModuleNotFoundError as e:
        raise UsageError(f"--int8-scheme blockwise: ONNX Runtime's MatMulNBits quantizer cannot be imported ({e}); "
                         "it needs the onnx-ir package (pip install onnx-ir)") from None
    quantizer = MatMulNBitsQuantizer(os.fspath(src), bits=8, block_size=32, is_symmetric=True, accuracy_level=4)
    quantizer.process()
    quantizer.model.save_model_to_file(os.fspath(dst), False)


def export_onnx_file(
    model: nn.Module, meta: ExportMetadata, path: str | os.PathLike[str],
    opset: int = DEFAULT_OPSET, exporter: str = "torchscript", calibration: torch.Tensor | None = None,
) -> Path:
    """Export ``model`` to the scratch file ``path``: ONNX graph (:func:`torch_to_onnx`)
    at ``meta.img_hw``, int8-quantized when ``meta.int8`` (:func:`quantize_int8`
    with ``meta.int8_scheme`` and, for ``"per-token"``, the ``calibration``
    images), with ``meta`` in its ``metadata_props``. Intermediate files go to a hidden folder next to
    ``path`` (removed afterwards). ``path`` is written directly: callers put it
    in a temporary folder and move it into place themselves
    (:func:`swinlab.export.export_model` with an atomic write).

    Returns:
        ``path``.

    Raises:
        UsageError / RunError: see :func:`torch_to_onnx`.
    """
    path = Path(path)
    ensure_dir(path.parent)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        src = torch_to_onnx(model, Path(tmp) / "fp32.onnx", meta.img_hw, opset=opset, exporter=exporter)
        if meta.int8:
            src = quantize_int8(src, Path(tmp) / "int8.onnx", meta.int8_scheme, model, calibration)
        path.write_bytes(write_onnx_metadata(src, meta))
    return path


def write_onnx_metadata(src: str | os.PathLike[str], meta: ExportMetadata) -> bytes:
    """The bytes of ONNX file ``src`` with ``meta`` as its ``metadata_props``
    (existing entries of the same keys replaced) and ``producer_name`` swinlab."""
    import onnx

    proto = onnx.load(os.fspath(src))
    props = meta.to_onnx_props()
    keep = [p for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "swinlab"
    proto.producer_version = meta.swinlab_version
    return proto.SerializeToString()


def read_onnx_metadata(path: str | os.PathLike[str]) -> ExportMetadata:
    """The :class:`ExportMetadata` stored in an ONNX file's ``metadata_props``.

    Raises:
        InputNotFoundError: no such file. InvalidInputError: not an ONNX
            file, or no / bad swinlab metadata (names the key).
    """
    import onnx

    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"ONNX file not found: {p}")
    try:
        proto = onnx.load(os.fspath(p), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError / ValueError / OSError variants
        raise InvalidInputError(f"{p} is not a readable ONNX file ({type(e).__name__})") from None
    props = {entry.key: entry.value for entry in proto.metadata_props}
    return ExportMetadata.from_onnx_props(props, os.fspath(p))
