"""``swinlab benchmark`` and :mod:`swinlab.export.benchmark` on the micro Swin
(1 timed call per row: this checks what is measured and reported, not speed)."""

from __future__ import annotations

import json

import pytest
import torch

from swinlab.cli.main import main
from swinlab.export.benchmark import _p90, format_report, gemm_gflops, run_benchmark
from swinlab.inference.loading import load_model
from swinlab.models.flops import count_macs

from runs_helpers import save_swinv2_ref_run

pytest.importorskip("onnxruntime")

MICRO = "swin_micro_patch4_window4_64"


def test_benchmark_json_rows(capsys):
    argv = ["benchmark", MICRO, "--batch-sizes", "1", "2", "--iters", "2", "--warmup", "1", "--threads", "1",
            "--runtimes", "eager", "onnxruntime-int8", "onnxruntime-int8-blockwise", "onnxruntime-int8-per-token",
            "torchscript", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert report["threads"] == 1 and report["img_hw"] == [64, 64] and report["gemm_gflops"] > 0
    assert report["gflop_per_image"] == pytest.approx(0.065, abs=0.01)  # 2 x count_macs of the micro Swin at 64 px
    rows = report["rows"]
    assert [(r["runtime"], r["batch_size"]) for r in rows] == [
        ("eager", 1), ("eager", 2), ("onnxruntime-int8", 1), ("onnxruntime-int8", 2),
        ("onnxruntime-int8-blockwise", 1), ("onnxruntime-int8-blockwise", 2),
        ("onnxruntime-int8-per-token", 1), ("onnxruntime-int8-per-token", 2), ("torchscript", 1), ("torchscript", 2)]
    for r in rows:
        assert r["images_per_s"] == pytest.approx(r["batch_size"] / (r["latency_ms_median"] / 1e3), rel=1e-6)
        assert r["latency_ms_p90"] >= r["latency_ms_median"] > 0
        frac = r["images_per_s"] * report["gflop_per_image"] / report["gemm_gflops"]
        assert r["fraction_of_gemm_peak"] == pytest.approx(frac, rel=1e-6)
        assert r["peak_rss_mib"] > r["rss_increase_mib"] >= 0
    assert "benchmark: onnxruntime-int8 ..." in captured.err


def test_benchmark_table_names_isa_and_gemm():
    model, info = load_model(MICRO)
    report = run_benchmark(model, info, runtimes=["eager"], batch_sizes=[1], iters=1, warmup=0)
    text = format_report(report)
    assert f"CPU ISA (torch.backends.cpu.get_cpu_capability): {torch.backends.cpu.get_cpu_capability()}" in text
    assert "fp32 GEMM peak (2048^3 torch.mm, this process)" in text and "% GEMM peak" in text


def test_benchmark_bad_runtime_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", MICRO, "--runtimes", "tensorrt"])
    assert exc.value.code == 2 and "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_p90_and_gemm():
    assert _p90([5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]) == 9.0
    assert _p90([2.0]) == 2.0
    assert gemm_gflops(n=256, repeats=2) > 0


def test_cli_runtime_choices_match_the_library():
    from swinlab.cli.benchmark import _RUNTIMES
    from swinlab.export.benchmark import RUNTIMES

    assert _RUNTIMES == RUNTIMES


def test_benchmark_swinv2_run(tmp_path, reference_dir, capsys):
    """``swinlab benchmark`` on a run folder of the small reference Swin V2: eager and
    ONNX Runtime rows at its 256 px, and the GFLOP per image of ``count_macs``."""
    run = save_swinv2_ref_run(tmp_path / "v2", reference_dir)
    argv = ["benchmark", str(run), "--batch-sizes", "1", "--iters", "1", "--warmup", "0", "--threads", "1",
            "--runtimes", "eager", "onnxruntime", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    model, _ = load_model(run)
    assert report["img_hw"] == [256, 256] and [r["runtime"] for r in report["rows"]] == ["eager", "onnxruntime"]
    assert report["gflop_per_image"] == pytest.approx(2 * count_macs(model, (3, 256, 256)) / 1e9, rel=1e-3)
    assert all(r["images_per_s"] > 0 for r in report["rows"])
