"""The ``"per-token"`` int8 scheme: activations quantized per token, weights
per output channel and rounded by GPTQ.

ONNX Runtime's dynamic scheme quantizes a Linear layer's whole input with one
scale; on the main job's model that alone flips 1.3-1.5% of the top-1
predictions, and rounding the weights to nearest flips about 1% more
(simulation: ``benchmarks/bench_int8_finer.py``). This scheme rewrites every
MatMul of the exported graph whose second input is a 2-D weight (the Linear
layers on token maps and the patch-merging reductions; the classifier head,
a Linear with a bias on a 2-D input, is exported as a Gemm and stays fp32) into

    x (M, K) -> scale s = max|x_row| / 127 per row (token) -> QuantizeLinear
    per row, uint8 with zero point 128 -> MatMulIntegerToFloat with the
    int8 weights and their per-output-channel scales (ONNX Runtime's
    com.microsoft kernel: int8 GEMM, scaling fused) -> times s

from standard operators plus that one ONNX Runtime kernel (there is no fused
kernel with a per-row activation scale). The weights are rounded by GPTQ
(Frantar et al. 2023, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", Alg. 1, one column at a time without
the lazy batching): each column's rounding error is spread over the columns
not yet rounded through the Cholesky factor of the inverse Hessian
``H = sum x^T x`` of the layer's inputs on calibration images; each row's
largest weight is kept exact, so it still sets the row's scale. Without
calibration images the weights are rounded to nearest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import RunError

__all__ = ["CALIBRATION_IMAGES", "calibration_choice", "gptq_int8", "linear_hessians", "nearest_int8", "quantize_per_token"]

log = logging.getLogger(__name__)

#: calibration images used for GPTQ (a random choice among those given).
CALIBRATION_IMAGES = 512
_DAMP = 0.01  # GPTQ's dampening: 1% of the mean diagonal of H added to the diagonal


def linear_hessians(model: nn.Module, images: torch.Tensor, batch_size: int = 32) -> dict[nn.Linear, torch.Tensor]:
    """``H = sum_x x^T x`` (float64, ``(K, K)``) of the input of every Linear layer
    of ``model`` (eval mode, CPU) over ``images`` ``(n, 3, H, W)``.

    Forward pre-hooks on every Linear collect the inputs (the MLP's blocked
    inference path calls ``fc1`` / ``fc2`` once per block of tokens; the
    sums are the same).
    """
    hessians: dict[nn.Linear, torch.Tensor] = {}

    def add(linear: nn.Linear, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        hessians[linear] = hessians.get(linear, 0) + x.T @ x

    hooks = [m.register_forward_pre_hook(lambda mod, a: add(mod, a[0]))
             for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                model(images[i:i + batch_size])
    finally:
        for h in hooks:
            h.remove()
    return hessians


def _row_scales(w: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 scale of each output channel (row) of ``w`` ``(N, K)``: ``max|w_row| / 127``."""
    return w.abs().amax(1).clamp(min=1e-12) / 127


def nearest_int8(weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` ``(N, K)`` rounded to nearest on symmetric int8 per output
    channel: ``(q (N, K) int8, scale (N,) float32)`` with ``weight ~ q * scale[:, None]``."""
    w = weight.detach().double()
    scale = _row_scales(w)
    q = (w / scale[:, None]).round().clamp(-127, 127)
    return q.to(torch.int8).numpy(), scale.float().numpy()


def gptq_int8(weight: torch.Tensor, hessian: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` ``(N, K)`` rounded by GPTQ on the grid of :func:`nearest_int8`
    (same scales), given the input Hessian ``(K, K)``: ``(q int8 (N, K), scale (N,))``."""
    w = weight.detach().double().clone()
    n, k = w.shape
    scale = _row_scales(w)
    largest = w.abs().argmax(1)
    exact = w[torch.arange(n), largest] / scale  # +-127: kept
    h = hessian.double().clone()
    dead = h.diag() == 0  # inputs that are always 0
    h[dead, dead] = 1.0
    h += _DAMP * h.diag().mean() * torch.eye(k, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.empty_like(w)
    for j in range(k):
        qj = (w[:, j] / scale).round().clamp(-127, 127)
        rows = largest == j
        qj[rows] = exact[rows].round()
        q[:, j] = qj
        err = (w[:, j] - qj * scale) / hinv[j, j]
        w[:, j + 1:] -= err[:, None] * hinv[j, j + 1:][None, :]
    return q.to(torch.int8).numpy(), scale.float().numpy()


def _rewrite_nodes(p: str, x: str, y: str, opset: int) -> list:
    """ONNX nodes for ``y = x @ W`` with ``x`` quantized per row (module docstring);
    ``p`` prefixes the names of the per-layer tensors (``p + "wq"``, ``"ws"``, ``"k"``, ``"n"``).
    ReduceMax / ReduceMin take their axes as an attribute before opset 18, as an input from 18 on."""
    from onnx import TensorProto, helper

    mk = helper.make_node
    axes = {"axes": [1]} if opset < 18 else {}
    extra = [] if opset < 18 else ["pt_axes1"]
    return [
        mk("Reshape", [x, p + "k"], [p + "x2"]),  # (M, K)
        mk("ReduceMax", [p + "x2", *extra], [p + "max"], keepdims=1, **axes),
        mk("ReduceMin", [p + "x2", *extra], [p + "min"], keepdims=1, **axes),
        mk("Neg", [p + "min"], [p + "negmin"]),
        mk("Max", [p + "max", p + "negmin", "pt_tiny"], [p + "absmax"]),
        mk("Div", [p + "absmax", "pt_127"], [p + "s"]),  # (M, 1)
        mk("Reshape", [p + "s", "pt_flat"], [p + "s1"]),  # (M,)
        mk("Shape", [p + "s1"], [p + "m"]),
        mk("ConstantOfShape", [p + "m"], [p + "zp"], value=helper.make_tensor("v", TensorProto.UINT8, [1], [128])),
        mk("QuantizeLinear", [p + "x2", p + "s1", p + "zp"], [p + "q"], axis=0),
        mk("MatMulIntegerToFloat", [p + "q", p + "wq", "pt_one", p + "ws", "pt_zp128", "pt_zp0"], [p + "yw"],
           domain="com.microsoft"),
        mk("Mul", [p + "yw", p + "s"], [p + "y2"]),  # (M, N)
        mk("Shape", [x], [p + "xs"]),
        mk("Slice", [p + "xs", "pt_start", "pt_end"], [p + "lead"]),
        mk("Concat", [p + "lead", p + "n"], [p + "ys"], axis=0),
        mk("Reshape", [p + "y2", p + "ys"], [y]),
    ]


_CONSTANTS = {"pt_127": np.array(127.0, np.float32), "pt_tiny": np.array(1e-30, np.float32),
              "pt_one": np.array(1.0, np.float32), "pt_zp128": np.array(128, np.uint8),
              "pt_zp0": np.array(0, np.int8), "pt_flat": np.array([-1], np.int64),
              "pt_start": np.array([0], np.int64), "pt_end": np.array([-1], np.int64),
              "pt_axes1": np.array([1], np.int64)}


def _linears_by_weight(model: nn.Module) -> dict[bytes, list[nn.Linear]]:
    """The Linear layers grouped by the bytes of ``weight.T`` (how the ONNX graph
    stores them; layers with equal weights share one group)."""
    groups: dict[bytes, list[nn.Linear]] = {}
    for lin in model.modules():
        if isinstance(lin, nn.Linear):
            groups.setdefault(lin.weight.detach().float().T.contiguous().numpy().tobytes(), []).append(lin)
    return groups


class _WeightRounder:
    """int8 weights for the graph's weight tensors, by their bytes: GPTQ with
    the summed Hessians of the Linear layers holding those weights (a layer
    called twice counts both calls; equal weights are rounded once), or
    rounding to nearest where no Hessian was collected."""

    def __init__(self, model: nn.Module, calibration: torch.Tensor | None) -> None:
        self.groups = _linears_by_weight(model)
        self.hessians = linear_hessians(model, calibration) if calibration is not None else {}
        self.done: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self.gptq = self.nearest = 0

    def __call__(self, w: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        key = np.ascontiguousarray(w, np.float32).tobytes()
        if key not in self.done:
            layers = self.groups.get(key)
            if layers is None:
                raise RunError(f"per-token int8: the graph's weight {name} {tuple(w.shape)} matches no Linear layer")
            hs = [self.hessians[lin] for lin in layers if lin in self.hessians]
            self.done[key] = gptq_int8(layers[0].weight, sum(hs)) if hs else nearest_int8(layers[0].weight)
            self.gptq, self.nearest = self.gptq + bool(hs), self.nearest + (not hs)
        return self.done[key]


def _through_identities(graph: Any, inits: dict[str, Any]) -> dict[str, Any]:
    """Outputs of Identity nodes (chains included) whose source is an initializer, mapped to it."""
    source = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
    found = {}
    for name in source:
        origin, seen = name, set()
        while origin in source and origin not in seen:
            seen.add(origin)
            origin = source[origin]
        if origin in inits:
            found[name] = inits[origin]
    return found


def quantize_per_token(src: str | os.PathLike[str], dst: str | os.PathLike[str], model: nn.Module,
                       calibration: torch.Tensor | None = None) -> Path:
    """Write ONNX file ``src`` (exported from ``model``) with every weight MatMul
    in the per-token int8 form of the module docstring to ``dst``.

    Args:
        model: the eager model the graph was exported from (CPU, eval mode).
        calibration: preprocessed images ``(n, 3, H, W)`` for GPTQ; None: weights rounded to nearest.

    Returns:
        ``dst``.

    Raises:
        RunError: a weight MatMul of the graph matches no Linear layer of
            ``model``, or the graph has no weight MatMul to quantize.
    """
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(os.fspath(src))
    graph = proto.graph
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    inits = {i.name: i for i in graph.initializer}
    # the exporter stores equal tensors once and hands them on through Identity nodes
    inits.update(_through_identities(graph, inits))
    rounder = _WeightRounder(model, calibration)
    consts, nodes, rewritten = dict(_CONSTANTS), [], 0
    for i, node in enumerate(graph.node):
        b = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        w = numpy_helper.to_array(b) if b is not None else None
        if w is None or w.ndim != 2:
            nodes.append(node)
            continue
        q, scale = rounder(w, b.name)
        p = f"pt{i}_"
        consts.update({p + "wq": np.ascontiguousarray(q.T), p + "ws": scale,
                       p + "k": np.array([-1, w.shape[0]], np.int64), p + "n": np.array([w.shape[1]], np.int64)})
        nodes.extend(_rewrite_nodes(p, node.input[0], node.output[0], opset))
        rewritten += 1
    if not rewritten:
        raise RunError("per-token int8: the graph has no MatMul with a weight to quantize")
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(proto, os.fspath(dst))
    log.info("per-token int8: %d MatMuls; weights: %d rounded by GPTQ, %d to nearest",
             rewritten, rounder.gptq, rounder.nearest)
    return Path(dst)


def calibration_choice(specs: Iterable[str], count: int = CALIBRATION_IMAGES, seed: int = 0) -> list[str]:
    """``count`` image specs chosen at random (seeded) among ``specs``, in their order."""
    specs = list(specs)
    if len(specs) <= count:
        return specs
    pick = torch.randperm(len(specs), generator=torch.Generator().manual_seed(seed))[:count]
    return [specs[int(i)] for i in sorted(pick)]
