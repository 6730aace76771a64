"""``swinlab.export`` and ``swinlab export``: ONNX graphs (ONNX Runtime and
OpenVINO), TorchScript and ExportedProgram files against eager PyTorch, the
metadata they carry, int8, and the command's exit codes.

Full-size models get random weights (seeded); one export per model and
size (module-scoped fixtures) keeps the file fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from swinlab import create_model
from swinlab.cli.main import main
from swinlab.errors import InputNotFoundError, InvalidInputError, UsageError
from swinlab.export import (
    ExportMetadata,
    OnnxRuntimeModel,
    VerificationError,
    export_model,
    load_exported,
    read_onnx_metadata,
    read_sidecar,
    sidecar_path,
)
from swinlab.export.onnx_export import quantize_int8, torch_to_onnx
from swinlab.inference.loading import ModelInfo
from swinlab.weights import load_pretrained

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

MICRO = "swin_micro_patch4_window4_64"
SWINV2_T = "swinv2_tiny_window8_256"
ONNX_MODELS = ["swin_tiny_patch4_window7_224", "swin_s3_tiny_224", "vit_small_patch16_224", MICRO, SWINV2_T]
ORT_BATCHES = (1, 3, 17)
TOL = 1e-4
OV_TOL = 1e-3


def _side(model: torch.nn.Module) -> int:
    size = model.img_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _info(name: str, model: torch.nn.Module, **kw) -> ModelInfo:
    n = model.num_classes
    return ModelInfo(model_name=name, class_names=[f"c{i}" for i in range(n)], img_size=_side(model), source=name, **kw)


def _inputs(hw: tuple[int, int]) -> dict[int, torch.Tensor]:
    """Batches of 1, 3 and 17 random images: the first rows of one batch of 17."""
    x = torch.randn(max(ORT_BATCHES), 3, *hw, generator=torch.Generator().manual_seed(123))
    return {b: x[:b] for b in ORT_BATCHES}


@torch.no_grad()
def _switch_on_post_norms(model: torch.nn.Module) -> None:
    """Swin V2 starts its res-post-norms at zero (every block the identity):
    random norm weights make every attention and MLP count in the output."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=g))


@pytest.fixture(scope="module")
def zoo():
    """Random-weight models by name, built once per module (seeded)."""
    cache: dict[str, torch.nn.Module] = {}

    def get(name: str) -> torch.nn.Module:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = create_model(name).eval()
            if name.startswith("swinv2"):
                _switch_on_post_norms(cache[name])
        return cache[name]

    return get


@pytest.fixture(scope="module")
def onnx_case(request, zoo, tmp_path_factory):
    """(model, onnx path, inputs per batch, eager logits per batch) for one (model name, size)."""
    name, hw = request.param
    model = zoo(name)
    hw = hw or (_side(model), _side(model))
    path = tmp_path_factory.mktemp("onnx") / f"{name}.onnx"
    export_model(model, _info(name, model), path, fmt="onnx", img_hw=hw, verify=False)
    xs = _inputs(hw)
    with torch.inference_mode():  # one eager batch of 17; its first rows are the references of batches 1 and 3
        full = model(xs[max(ORT_BATCHES)]).numpy()
    refs = {b: full[:b] for b in ORT_BATCHES}
    return model, path, xs, refs


CASES = [(n, None) for n in ONNX_MODELS] + [("swin_tiny_patch4_window7_224", (256, 320))]
IDS = [n for n in ONNX_MODELS] + ["swin_tiny_256x320"]


@pytest.mark.parametrize("onnx_case", CASES, ids=IDS, indirect=True)
def test_onnx_runs_in_onnxruntime_at_several_batch_sizes(onnx_case):
    model, path, xs, refs = onnx_case
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.shape[0] == "batch" and inp.shape[1:] == [3, *xs[1].shape[2:]]  # dynamic batch, static H, W
    for b, x in xs.items():
        (out,) = session.run(None, {inp.name: x.numpy()})
        assert out.shape == refs[b].shape
        diff = float(np.abs(out - refs[b]).max())
        assert diff <= TOL, f"batch {b}: max |ORT - eager| = {diff}"


@pytest.mark.parametrize("onnx_case", CASES, ids=IDS, indirect=True)
def test_onnx_runs_in_openvino(onnx_case):
    ov = pytest.importorskip("openvino")
    _, path, xs, refs = onnx_case
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for b in (1, 3):  # batch 17 runs in OpenVINO too (benchmarks/bench_onnx_exporters.py); 1 and 3 keep this fast
        out = compiled(xs[b].numpy())[0]
        diff = float(np.abs(out - refs[b]).max())
        assert diff <= OV_TOL, f"batch {b}: max |OpenVINO - eager| = {diff}"


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model(MICRO, num_classes=5).eval()
    info = ModelInfo(
        model_name=MICRO, class_names=["ant", "bee", "cat", "dog", "eel"], classes=["n1", "n2", "n3", "n4", "n5"],
        img_size=64, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), crop_ratio=0.9, interpolation="bilinear",
        source="runs/x",
    )
    return model, info, tmp_path_factory.mktemp("micro")


@pytest.mark.parametrize("fmt,suffix", [("torchscript", ".pt"), ("exported-program", ".pt2")])
def test_torch_formats_match_eager_and_carry_sidecar(micro, fmt, suffix):
    model, info, tmp = micro
    path = tmp / f"model{suffix}"
    result = export_model(model, info, path, fmt=fmt)
    assert result.verify.ok and result.verify.batch_sizes == [1, 3]
    assert result.sidecar == sidecar_path(path) == Path(str(path) + ".json")
    runner = load_exported(path, fmt)
    g = torch.Generator().manual_seed(5)
    for b in (1, 3):
        x = torch.randn(b, 3, 64, 64, generator=g)
        with torch.inference_mode():
            ref = model(x)
            out = runner(x)
        assert (out - ref).abs().max().item() <= TOL
    meta = read_sidecar(path)
    assert meta == ExportMetadata.from_model_info(info, (64, 64), fmt)


@pytest.mark.parametrize("fmt,suffix", [("torchscript", ".pt"), ("exported-program", ".pt2")])
def test_torch_formats_swinv2(zoo, tmp_path, fmt, suffix):
    """SwinV2-T (random weights): TorchScript and ExportedProgram at batch 1 and 3
    (export_model verifies both against eager; checked again here)."""
    model = zoo(SWINV2_T)
    path = tmp_path / f"v2{suffix}"
    result = export_model(model, _info(SWINV2_T, model), path, fmt=fmt)
    assert result.verify.ok and result.verify.batch_sizes == [1, 3]
    runner = load_exported(path, fmt)
    xs = _inputs((256, 256))
    with torch.inference_mode():
        for b in (1, 3):
            ref = model(xs[b])
            assert ref.std() > 0.1
            assert (runner(xs[b]) - ref).abs().max().item() <= TOL


def test_onnx_metadata_round_trip(micro):
    model, info, tmp = micro
    path = tmp / "meta.onnx"
    export_model(model, info, path, fmt="onnx")
    meta = read_onnx_metadata(path)
    assert meta == ExportMetadata.from_model_info(info, (64, 64), "onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["class_names"]) == info.class_names
    assert json.loads(props["input_size"]) == [3, 64, 64]
    back = OnnxRuntimeModel(path).info
    assert (back.class_names, back.classes, back.img_size) == (info.class_names, info.classes, 64)
    assert (back.mean, back.std, back.crop_ratio, back.interpolation) == (info.mean, info.std, 0.9, "bilinear")


def test_onnx_without_metadata_is_refused_with_the_key(micro):
    model, info, tmp = micro
    path = tmp / "bare.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(path), dynamo=False, input_names=["input"])
    with pytest.raises(InvalidInputError, match="'class_names' is missing"):
        read_onnx_metadata(path)
    with pytest.raises(InvalidInputError, match="no swinlab metadata"):
        _ = OnnxRuntimeModel(path).info
    with pytest.raises(InputNotFoundError, match="nothere.onnx"):
        read_onnx_metadata(tmp / "nothere.onnx")


def test_bad_sidecar_names_file_and_key(micro):
    model, info, tmp = micro
    path = tmp / "bad.pt"
    export_model(model, info, path, fmt="torchscript", verify=False)
    d = json.loads(sidecar_path(path).read_text())
    d["input_size"] = [3, 64]
    sidecar_path(path).write_text(json.dumps(d))
    with pytest.raises(InvalidInputError, match=r"bad\.pt\.json: metadata 'input_size' must be \[3, H, W\]"):
        read_sidecar(path)


def test_int8_onnx_is_quantized_and_agrees(micro):
    model, info, tmp = micro
    path = tmp / "int8.onnx"
    result = export_model(model, info, path, fmt="onnx", int8=True)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert ops.count("MatMulInteger") == linears  # every Linear layer, head included
    assert ops.count("MatMul") == 2 * len(model.layers[0].blocks) * len(model.layers)  # q k^T, p v stay fp32
    assert result.metadata.int8 and read_onnx_metadata(path).int8
    assert result.verify.int8 and min(result.verify.cosine) >= 0.99
    assert max(result.verify.max_abs_diff) > 0  # it is not the fp32 graph


def test_int8_blockwise_onnx_is_quantized_and_agrees(micro):
    """--int8-scheme blockwise: every Linear layer but the head (a Gemm node,
    which the quantizer leaves in fp32) becomes a MatMulNBits node (8 bits,
    blocks of 32), the scheme is in the metadata, and it stays closer to fp32
    than the dynamic scheme on the same random inputs."""
    model, info, tmp = micro
    path = tmp / "int8-blockwise.onnx"
    result = export_model(model, info, path, fmt="onnx", int8=True, int8_scheme="blockwise")
    nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type == "MatMulNBits"]
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert len(nodes) == linears - 1
    assert [n.op_type for n in onnx.load(str(path)).graph.node].count("Gemm") == 1
    for node in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["bits"] == 8 and attrs["block_size"] == 32 and attrs["accuracy_level"] == 4
    meta = read_onnx_metadata(path)
    assert meta.int8 and meta.int8_scheme == "blockwise" and result.metadata.int8_scheme == "blockwise"
    assert result.verify.int8 and min(result.verify.cosine) >= 0.99
    dynamic = export_model(model, info, tmp / "int8-dynamic.onnx", fmt="onnx", int8=True)
    assert max(result.verify.max_abs_diff) < max(dynamic.verify.max_abs_diff)
    with pytest.raises(UsageError, match="--int8-scheme 'fp4'"):
        export_model(model, info, tmp / "x.onnx", fmt="onnx", int8=True, int8_scheme="fp4")


@pytest.fixture(scope="module")
def v2_ref(reference_dir, tmp_path_factory):
    """The small reference SwinV2 (configs_v2.json -> swinv2_ref: 256 px, window 8, 4 stages, 10 classes)
    with its perturbed weights (swinv2_ref_official.pth), its ModelInfo, a scratch folder and the eager
    logits of the batches of :func:`_inputs` (1 and 3 images)."""
    cfg = json.loads((reference_dir / "configs_v2.json").read_text())["swinv2_ref"]
    model = create_model(SWINV2_T, **cfg).eval()
    assert load_pretrained(model, reference_dir / "swinv2_ref_official.pth").ok
    xs = {b: x for b, x in _inputs((256, 256)).items() if b in (1, 3)}
    with torch.inference_mode():
        refs = {b: model(x).numpy() for b, x in xs.items()}
    return model, _info("swinv2_ref", model), tmp_path_factory.mktemp("v2int8"), xs, refs


@pytest.fixture(scope="module")
def v2_dynamic(v2_ref):
    """The reference SwinV2 exported with --int8 (dynamic): (its ExportResult, the file)."""
    model, info, tmp, _, _ = v2_ref
    path = tmp / "v2-int8.onnx"
    return export_model(model, info, path, fmt="onnx", int8=True), path


def _int8_agrees_in_onnxruntime(path: Path, xs: dict, refs: dict, rel_bound: float) -> float:
    """Run the int8 file in ONNX Runtime at batch 1 and 3: the same top-1 as eager for every image,
    each image's logits at cosine >= 0.99 of eager's, max |int8 - eager| <= rel_bound * max |eager|.
    Returns the largest |int8 - eager| (> 0: not the fp32 graph)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.shape[0] == "batch"
    worst = 0.0
    for b, x in xs.items():
        (out,) = session.run(None, {inp.name: x.numpy()})
        ref = refs[b]
        assert out.shape == ref.shape
        assert (out.argmax(1) == ref.argmax(1)).all(), f"batch {b}: top-1 {out.argmax(1)} vs eager {ref.argmax(1)}"
        cosine = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
        assert cosine.min() >= 0.99, f"batch {b}: cosine {cosine.min()}"
        diff = float(np.abs(out - ref).max())
        assert diff <= rel_bound * float(np.abs(ref).max()), f"batch {b}: max |int8 - eager| = {diff}"
        worst = max(worst, diff)
    assert worst > 0
    return worst


def test_int8_swinv2_onnx_is_quantized_and_agrees(v2_ref, v2_dynamic):
    """--int8 (dynamic) on SwinV2: every Linear layer becomes a MatMulInteger (the position-bias
    MLPs' included), the attention products stay fp32 MatMuls; in ONNX Runtime at batch 1 and 3
    the top-1 is eager's and the logits are within 5% of eager's largest (measured: 1%)."""
    model, _, _, xs, refs = v2_ref
    result, path = v2_dynamic
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    blocks = sum(len(layer.blocks) for layer in model.layers)
    assert ops.count("MatMulInteger") == linears and ops.count("MatMul") == 2 * blocks  # q k^T, p v stay fp32
    assert result.metadata.int8 and read_onnx_metadata(path).int8 and result.verify.ok
    _int8_agrees_in_onnxruntime(path, xs, refs, rel_bound=0.05)


def test_int8_per_token_swinv2_onnx_is_quantized_and_agrees(v2_ref, v2_dynamic):
    """--int8-scheme per-token on SwinV2 (GPTQ on calibration images): every weight MatMul becomes
    MatMulIntegerToFloat; the Gemm nodes (the head and each block's first position-bias layer, a
    Linear with a bias on the 2-D coordinate table) stay fp32; in ONNX Runtime at batch 1 and 3 the
    top-1 is eager's, the logits are within 2% of eager's largest (measured: 0.5%) and closer than
    the dynamic scheme's."""
    model, info, tmp, xs, refs = v2_ref
    calibration = torch.randn(16, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    path = tmp / "v2-int8-per-token.onnx"
    result = export_model(model, info, path, fmt="onnx", int8=True, int8_scheme="per-token", calibration=calibration)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    blocks = sum(len(layer.blocks) for layer in model.layers)
    assert ops.count("Gemm") == 1 + blocks and ops.count("MatMulIntegerToFloat") == linears - 1 - blocks
    assert ops.count("QuantizeLinear") == linears - 1 - blocks
    assert read_onnx_metadata(path).int8_scheme == "per-token" and result.verify.ok
    per_token = _int8_agrees_in_onnxruntime(path, xs, refs, rel_bound=0.02)
    assert per_token < _int8_agrees_in_onnxruntime(v2_dynamic[1], xs, refs, rel_bound=0.05)


def test_gptq_rounding_beats_nearest_on_the_layer_output():
    """GPTQ (swinlab.export.per_token.gptq_int8) keeps the per-channel grid of
    rounding to nearest (same scales, each row's largest weight exact at
    +-127) and gives a smaller layer-output error on inputs with correlated
    features, the case it is built for (Frantar et al. 2023)."""
    from swinlab.export.per_token import gptq_int8, nearest_int8

    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 48, generator=g)
    x = torch.randn(4096, 8, generator=g) @ torch.randn(8, 48, generator=g) + 0.1 * torch.randn(4096, 48, generator=g)
    q_near, s_near = nearest_int8(w)
    q_gptq, s_gptq = gptq_int8(w, x.double().T @ x.double())
    assert q_gptq.dtype == np.int8 and np.array_equal(s_near, s_gptq)
    assert (np.abs(q_gptq).max(1) == 127).all() and np.abs(q_gptq).max() <= 127
    error = {name: float(((x @ w.T - x @ (torch.from_numpy(q).float() * torch.from_numpy(s)[:, None]).T) ** 2).sum())
             for name, q, s in (("nearest", q_near, s_near), ("gptq", q_gptq, s_gptq))}
    assert error["gptq"] < 0.5 * error["nearest"]


def test_int8_per_token_onnx_is_quantized_and_agrees(micro):
    """--int8-scheme per-token: every Linear layer but the head becomes an
    int8 MatMulIntegerToFloat with per-channel weight scales fed by a
    per-row QuantizeLinear; the scheme is in the metadata; the file passes
    export's int8 check at batch 1 and 3 and, with GPTQ on calibration
    images, stays closer to fp32 than the dynamic scheme."""
    model, info, tmp = micro
    calibration = torch.randn(48, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    path = tmp / "int8-per-token.onnx"
    result = export_model(model, info, path, fmt="onnx", int8=True, int8_scheme="per-token", calibration=calibration)
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert ops.count("MatMulIntegerToFloat") == linears - 1 and ops.count("Gemm") == 1
    assert ops.count("QuantizeLinear") == linears - 1 and "MatMul" in ops  # q k^T and p v stay fp32
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    for node in (n for n in graph.node if n.op_type == "MatMulIntegerToFloat"):
        wq, ws = inits[node.input[1]], inits[node.input[3]]
        assert wq.dtype == np.int8 and ws.shape == (wq.shape[1],)  # one scale per output channel
    assert read_onnx_metadata(path).int8_scheme == "per-token" and result.verify.int8
    assert result.verify.batch_sizes == [1, 3] and min(result.verify.cosine) >= 0.99
    dynamic = export_model(model, info, tmp / "int8-dynamic-pt.onnx", fmt="onnx", int8=True)
    assert max(result.verify.max_abs_diff) < max(dynamic.verify.max_abs_diff)
    nearest = export_model(model, info, tmp / "int8-per-token-nearest.onnx", fmt="onnx", int8=True,
                           int8_scheme="per-token")  # no calibration: rounded to nearest, still valid
    assert nearest.verify.ok
    src = torch_to_onnx(model, tmp / "fp32-pt.onnx", (64, 64))
    with pytest.raises(UsageError, match="per-token needs the PyTorch model"):
        quantize_int8(src, tmp / "x.onnx", "per-token")
    with pytest.raises(UsageError, match="--calibration is for --int8-scheme per-token"):
        export_model(model, info, tmp / "x.onnx", fmt="onnx", int8=True, calibration=calibration)


def test_int8_per_token_opset_18_and_shared_weights(micro, caplog):
    """At opset 18 (ReduceMax/ReduceMin take their axes as an input) the
    per-token file loads and passes the int8 check; two Linear layers with
    equal weights are rounded once, by GPTQ with both layers' Hessians."""
    import copy
    import logging

    model, info, tmp = micro
    tied = copy.deepcopy(model)
    blocks = tied.layers[0].blocks
    blocks[1].mlp.fc1.weight.data.copy_(blocks[0].mlp.fc1.weight.data)
    calibration = torch.randn(16, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with caplog.at_level(logging.INFO, logger="swinlab.export.per_token"):
        result = export_model(tied, info, tmp / "pt-18.onnx", fmt="onnx", int8=True, int8_scheme="per-token",
                              opset=18, calibration=calibration)
    assert result.verify.ok and min(result.verify.cosine) >= 0.99
    linears = sum(isinstance(m, torch.nn.Linear) for m in tied.modules())
    message = next(r.getMessage() for r in caplog.records if "per-token int8" in r.getMessage())
    assert f"{linears - 1} MatMuls" in message and f"{linears - 2} rounded by GPTQ, 0 to nearest" in message


def test_int8_without_the_blockwise_quantizer(micro, monkeypatch):
    """Without the blockwise quantizer's dependencies (onnx-ir), the dynamic
    scheme still works and the blockwise one fails with a clear UsageError."""
    model, info, tmp = micro
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization.matmul_nbits_quantizer", None)
    src = torch_to_onnx(model, tmp / "fp32-noir.onnx", (info.img_size, info.img_size))
    ops = [n.op_type for n in onnx.load(str(quantize_int8(src, tmp / "dyn-noir.onnx"))).graph.node]
    assert "MatMulInteger" in ops
    with pytest.raises(UsageError, match="needs the onnx-ir package"):
        quantize_int8(src, tmp / "bw-noir.onnx", "blockwise")


def test_cli_int8_scheme_choices_match_the_library():
    from swinlab.cli.runtime_args import INT8_SCHEMES as CLI_SCHEMES
    from swinlab.export.metadata import INT8_SCHEMES

    assert CLI_SCHEMES == INT8_SCHEMES


def test_verification_failure_leaves_no_file(micro, monkeypatch):
    model, info, tmp = micro
    path = tmp / "fails.onnx"
    with pytest.raises(VerificationError, match=r"fails\.onnx not written: max \|ONNX Runtime - PyTorch\|"):
        export_model(model, info, path, fmt="onnx", tolerance=0.0, batch_sizes=(1, 3))
    assert not path.exists()
    assert not [p for p in tmp.iterdir() if p.name.startswith(".fails.onnx")]  # scratch folder removed


def test_options_are_checked(micro):
    model, info, tmp = micro
    with pytest.raises(UsageError, match="--int8 works with --format onnx only"):
        export_model(model, info, tmp / "a.pt", fmt="torchscript", int8=True)
    with pytest.raises(UsageError, match="--format 'tflite'"):
        export_model(model, info, tmp / "a.tfl", fmt="tflite")
    with pytest.raises(UsageError, match="--opset 9"):
        export_model(model, info, tmp / "a.onnx", fmt="onnx", opset=9)


def test_onnx_runtime_model_checks_input_shape(micro):
    model, info, tmp = micro
    runtime = OnnxRuntimeModel.from_model(model, info)
    with pytest.raises(InvalidInputError, match=r"expected \(B, 3, 64, 64\)"):
        runtime(torch.zeros(1, 3, 32, 32))
    assert list(runtime.parameters()) == []  # duck-types the eager model without holding its weights twice
    assert runtime.eager_model is model


# ------------------------------------------------------------------ the command
def test_cli_export_writes_and_verifies(micro, tmp_path, capsys):
    out = tmp_path / "deploy" / "m.onnx"
    assert main(["export", MICRO, "--format", "onnx", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "batch   1: max |ONNX Runtime - PyTorch|" in text and "batch   3:" in text
    assert read_onnx_metadata(out).model_name == MICRO
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]  # nothing else left behind


def test_cli_export_verify_failure_exits_1(tmp_path, capsys, monkeypatch):
    from swinlab.export import api

    real = api.load_exported
    monkeypatch.setattr(api, "load_exported", lambda p, f: (lambda x: real(p, f)(x) + 1e-3))
    out = tmp_path / "m.pt"
    assert main(["export", MICRO, "--format", "torchscript", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("swinlab export: error: verification failed") and "exceeds the tolerance 0.0001" in err
    assert err.count("\n") == 1 and not out.exists() and not sidecar_path(out).exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--format", "torchscript", "--int8"], "--int8 works with --format onnx only"),
        (["--format", "onnx", "--opset", "40"], "--opset 40: expected 14 to 23"),
        (["--format", "onnx", "--tolerance", "-1"], "--tolerance -1.0"),
        (["--format", "onnx", "--int8-scheme", "blockwise"], "--int8-scheme blockwise needs --int8"),
    ],
)
def test_cli_export_usage_errors_exit_2(tmp_path, capsys, argv, message):
    assert main(["export", MICRO, "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("swinlab export: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_cli_export_bad_source_exits_2(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing_run"), "--format", "onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "missing_run" in capsys.readouterr().err


def test_cli_modules_do_not_import_torch():
    code = (
        "import sys, importlib\n"
        "for m in ('swinlab.cli.export', 'swinlab.cli.benchmark', 'swinlab.cli.serve', 'swinlab.cli.runtime_args'):\n"
        "    importlib.import_module(m)\n"
        "print(sorted(k for k in ('torch', 'onnx', 'onnxruntime', 'fastapi', 'uvicorn') if k in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
