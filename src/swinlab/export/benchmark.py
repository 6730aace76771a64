"""CPU inference benchmark of one model in several runtimes (``swinlab benchmark``).

For each runtime and batch size: images per second and the latency of one
batch (median and 90th percentile of ``iters`` timed calls after ``warmup``
untimed ones, ``time.perf_counter``), the process's peak resident memory
while that runtime ran, and the fraction of the machine's fp32 GEMM speed
reached.

* GEMM speed: a timed ``torch.mm`` of two 2048 x 2048 float32 matrices in
  the same process and thread setting (2 * 2048^3 FLOP per product; best of
  5 after a warm-up), so figures from one run compare with each other.
* Model FLOPs: ``2 x`` :func:`swinlab.models.flops.count_macs` per image
  (matrix products and convolutions). Fraction of GEMM peak =
  images/s x FLOP per image / GEMM FLOP/s.
* Peak memory: Linux's resident-set high-water mark (``VmHWM`` of
  ``/proc/self/status``), reset before each runtime is built by writing
  ``5`` to ``/proc/self/clear_refs``, so each row shows the peak of the whole
  process (model weights included) while that runtime was built and run;
  ``rss_increase_mib`` is that peak minus the resident size just before.
  Where the reset is not allowed the figure is ``ru_maxrss`` (the peak since
  the process started) and ``peak_rss_reset`` is false.

Runtimes: ``eager`` (PyTorch, ``torch.inference_mode``), ``eager-bf16``
(the same under bf16 autocast), ``compile``
(``torch.compile`` default mode, ``dynamic=False``: the first call of each
batch size compiles its own graph, as part of the warm-up), ``torchscript`` (``torch.jit.trace`` +
``torch.jit.freeze``), ``onnxruntime``, ``onnxruntime-int8`` and
``onnxruntime-int8-blockwise``, ``onnxruntime-int8-per-token`` (the ONNX
export of :mod:`swinlab.export.onnx_export`, fp32 or with int8 Linear layers
in the dynamic, blockwise or per-token scheme -- the latter with its weights
rounded to nearest unless calibration images are given, which runs as fast
as GPTQ's -- run by :class:`~swinlab.export.runtime.OnnxRuntimeModel`),
``openvino``, ``openvino-bf16``, ``openvino-int8`` and ``openvino-int8-bf16``
(the same ONNX file in OpenVINO's CPU plugin with the f32 or bf16 precision
hint, int8 by NNCF; :class:`~swinlab.export.openvino_runtime.OpenVinoModel`).
OpenVINO int8 calibrates on the calibration images, else on 32 random
normal inputs (enough for its speed, not for its agreement).

Agreement: given preprocessed images, each runtime's top-1 class on them
is compared with eager fp32's (``top1_agreement``, a fraction), and per batch
size the fastest runtime agreeing on at least :data:`MIN_AGREEMENT` is
marked (``BenchmarkReport.fastest_agreeing``). Those images are run once
per runtime after its timing, in chunks of 32, untimed.
"""

from __future__ import annotations

import math
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from ..inference.loading import ModelInfo
from ..models.flops import count_macs
from .choice import RUNTIME_NAMES, RuntimeChoice, build_runtime
from .torch_export import trace_module

__all__ = ["RUNTIMES", "DEFAULT_RUNTIMES", "MIN_AGREEMENT", "BenchmarkRow", "BenchmarkReport", "gemm_gflops", "run_benchmark",
           "format_report"]

RUNTIMES = RUNTIME_NAMES + ("compile", "torchscript")
#: without ``compile``: compiling takes minutes on a small CPU; ask for it by name.
DEFAULT_RUNTIMES = ("eager", "onnxruntime", "onnxruntime-int8", "torchscript")
#: the top-1 agreement with eager fp32 a runtime needs to be marked the fastest accurate one.
MIN_AGREEMENT = 0.99


@dataclass
class BenchmarkRow:
    """One runtime at one batch size (times in ms, memory in MiB)."""

    runtime: str
    batch_size: int
    images_per_s: float
    latency_ms_median: float
    latency_ms_p90: float
    fraction_of_gemm_peak: float
    peak_rss_mib: float
    rss_increase_mib: float
    setup_s: float
    top1_agreement: float | None = None


@dataclass
class BenchmarkReport:
    """Everything ``swinlab benchmark`` prints (``asdict`` gives the JSON)."""

    model: str
    img_hw: tuple[int, int]
    threads: int
    iters: int
    cpu_capability: str
    cpu: str
    torch_version: str
    gemm_gflops: float
    gflop_per_image: float
    peak_rss_reset: bool
    rows: list[BenchmarkRow] = field(default_factory=list)
    agreement_images: int = 0
    calibration: str = ""
    fastest_agreeing: dict[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        d = asdict(self)
        d["img_hw"] = list(self.img_hw)
        return d


def gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 GEMM speed of this process [GFLOP/s]: best of ``repeats`` timed
    ``torch.mm`` of two ``n x n`` matrices (``2 n^3`` FLOP each) after one warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _proc_status_kib(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the resident high-water mark (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    hwm = _proc_status_kib("VmHWM")
    kib = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024


def _current_rss_mib() -> float:
    rss = _proc_status_kib("VmRSS")
    return (rss or 0.0) / 1024


@dataclass
class _Bench:
    """What every runtime of one benchmark shares."""

    model: nn.Module
    info: ModelInfo
    img_hw: tuple[int, int]
    threads: int
    gemm: float
    gflop: float
    calibration: torch.Tensor | None
    agreement_images: torch.Tensor | None
    reference_top1: torch.Tensor | None


def build_runner(runtime: str, model: nn.Module, info: ModelInfo, img_hw: tuple[int, int],
                 threads: int, calibration: torch.Tensor | None = None) -> Callable[[torch.Tensor], Any]:
    """A callable ``(B, 3, H, W) -> logits`` for ``runtime`` (see the module docstring).

    Args:
        calibration: images ``(n, 3, H, W)`` for per-token GPTQ and NNCF
            (OpenVINO int8 without them: 32 random normal inputs).

    Raises:
        UsageError: an unknown runtime.
    """
    if runtime == "compile":
        return torch.compile(model, dynamic=False)  # one static graph per batch size, compiled in the warm-up
    if runtime == "torchscript":
        return torch.jit.freeze(trace_module(model, img_hw))
    choice = RuntimeChoice.parse(runtime)
    if calibration is None and choice.runtime == "openvino" and choice.int8:
        calibration = torch.randn(32, 3, *img_hw, generator=torch.Generator().manual_seed(0))
    return build_runtime(choice, model, info, threads=threads, img_hw=img_hw, calibration=calibration)


def _top1(fn: Callable[[torch.Tensor], Any], images: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """Arg-max class ``(n,)`` of ``fn`` on ``images`` ``(n, 3, H, W)``, in chunks."""
    with torch.inference_mode():
        return torch.cat([torch.as_tensor(fn(images[i:i + chunk])).float().argmax(1)
                          for i in range(0, len(images), chunk)])


def _time_calls(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, iters: int, warmup: int) -> list[float]:
    """Seconds per call of ``fn(x)``, ``iters`` timed calls after ``warmup`` untimed ones."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return times


def _p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def _bench_runtime(runtime: str, bench: _Bench, batch_sizes: Sequence[int], iters: int,
                   warmup: int) -> list[BenchmarkRow]:
    """Rows of one runtime; its peak memory spans building it and all its batch sizes
    (the agreement images run after the peak is read)."""
    rss_before = _current_rss_mib()
    _reset_peak_rss()
    t0 = time.perf_counter()
    runner = build_runner(runtime, bench.model, bench.info, bench.img_hw, bench.threads, bench.calibration)
    setup = time.perf_counter() - t0
    rows = []
    for b in batch_sizes:
        x = torch.randn(b, 3, *bench.img_hw, generator=torch.Generator().manual_seed(b))
        times = _time_calls(runner, x, iters, warmup)
        median = statistics.median(times)
        ips = b / median
        rows.append(BenchmarkRow(runtime, b, ips, 1e3 * median, 1e3 * _p90(times), ips * bench.gflop / bench.gemm,
                                 0.0, 0.0, setup))
    peak = _peak_rss_mib()
    agreement = None
    if bench.agreement_images is not None:
        agreement = float((_top1(runner, bench.agreement_images) == bench.reference_top1).float().mean())
    for row in rows:
        row.peak_rss_mib, row.rss_increase_mib, row.top1_agreement = peak, max(0.0, peak - rss_before), agreement
    del runner
    return rows


def _fastest_agreeing(rows: Sequence[BenchmarkRow]) -> dict[int, str]:
    """Per batch size, the fastest runtime with ``top1_agreement >= MIN_AGREEMENT``."""
    best: dict[int, BenchmarkRow] = {}
    for r in rows:
        if r.top1_agreement is not None and r.top1_agreement >= MIN_AGREEMENT:
            if r.batch_size not in best or r.images_per_s > best[r.batch_size].images_per_s:
                best[r.batch_size] = r
    return {b: r.runtime for b, r in best.items()}


def run_benchmark(
    model: nn.Module,
    info: ModelInfo,
    runtimes: Sequence[str] = DEFAULT_RUNTIMES,
    batch_sizes: Sequence[int] = (1, 8, 32),
    img_hw: tuple[int, int] | None = None,
    iters: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    calibration: torch.Tensor | None = None,
    agreement_images: torch.Tensor | None = None,
) -> BenchmarkReport:
    """Benchmark ``model`` in each runtime at each batch size (see the module docstring).

    Args:
        model, info: from :func:`swinlab.inference.load_model` (moved to the CPU, eval mode).
        runtimes: names from :data:`RUNTIMES`. batch_sizes: images per call.
        img_hw: input ``(H, W)`` [pixels] (default: ``info.img_size`` square).
        iters: timed calls per batch size. warmup: untimed calls before them.
        threads: ``torch.set_num_threads`` and ONNX Runtime / OpenVINO threads
            (default: PyTorch's current setting).
        progress: called with a line before each runtime (e.g. ``print`` to stderr).
        calibration: preprocessed images ``(n, 3, H, W)`` for per-token GPTQ and NNCF.
        agreement_images: preprocessed images ``(n, 3, H, W)``: each row's top-1
            agreement with eager fp32 on them, and the fastest agreeing runtime.

    Returns:
        :class:`BenchmarkReport`.

    Raises:
        UsageError: unknown runtimes, or non-positive sizes / counts.
    """
    bad = [r for r in runtimes if r not in RUNTIMES]
    if bad or not runtimes:
        raise UsageError(f"--runtimes {' '.join(bad) or '(none)'}: expected some of {', '.join(RUNTIMES)}")
    if not batch_sizes or min(batch_sizes) < 1 or iters < 1 or warmup < 0:
        raise UsageError(f"batch sizes and --iters must be positive, got {list(batch_sizes)} and {iters}")
    if threads:
        torch.set_num_threads(int(threads))
    hw = (int(img_hw[0]), int(img_hw[1])) if img_hw else (int(info.img_size), int(info.img_size))
    model = model.to("cpu").eval()
    reference = _top1(model, agreement_images) if agreement_images is not None else None
    bench = _Bench(model, info, hw, torch.get_num_threads(), gemm_gflops(), 2 * count_macs(model, (3, *hw)) / 1e9,
                   calibration, agreement_images, reference)
    report = BenchmarkReport(
        model=info.model_name, img_hw=hw, threads=bench.threads, iters=iters,
        cpu_capability=torch.backends.cpu.get_cpu_capability(), cpu=platform.processor() or platform.machine(),
        torch_version=torch.__version__, gemm_gflops=bench.gemm, gflop_per_image=bench.gflop,
        peak_rss_reset=_reset_peak_rss(), agreement_images=0 if agreement_images is None else len(agreement_images),
        calibration=f"{len(calibration)} images" if calibration is not None else "none (OpenVINO int8: 32 random inputs)",
    )
    for runtime in runtimes:
        if progress:
            progress(f"benchmark: {runtime} ...")
        report.rows.extend(_bench_runtime(runtime, bench, batch_sizes, iters, warmup))
    report.fastest_agreeing = _fastest_agreeing(report.rows)
    return report


def _table(report: BenchmarkReport) -> list[str]:
    """The aligned rows; with agreement images an ``agree %`` column and ``*``
    on the fastest row agreeing on at least :data:`MIN_AGREEMENT`."""
    cols = ["runtime", "batch", "images/s", "median ms", "p90 ms", "% GEMM peak", "peak RSS MiB", "+RSS MiB", "setup s"]
    measured = report.agreement_images > 0
    if measured:
        cols.append("agree %")
    rows = [tuple(cols)]
    for r in report.rows:
        mark = "*" if report.fastest_agreeing.get(r.batch_size) == r.runtime else ""
        row = [r.runtime + mark, str(r.batch_size), f"{r.images_per_s:.2f}", f"{r.latency_ms_median:.1f}",
               f"{r.latency_ms_p90:.1f}", f"{100 * r.fraction_of_gemm_peak:.1f}", f"{r.peak_rss_mib:.0f}",
               f"{r.rss_increase_mib:.0f}", f"{r.setup_s:.1f}"]
        if measured:
            row.append("-" if r.top1_agreement is None else f"{100 * r.top1_agreement:.2f}")
        rows.append(tuple(row))
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    return ["  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)) for row in rows]


def format_report(report: BenchmarkReport) -> str:
    """The report as a header and an aligned table (and the fastest agreeing runtime per batch size)."""
    h, w = report.img_hw
    head = [
        f"model {report.model}, input {h}x{w}, {report.gflop_per_image:.3f} GFLOP/image, "
        f"{report.threads} thread(s), {report.iters} timed calls per row",
        f"CPU ISA (torch.backends.cpu.get_cpu_capability): {report.cpu_capability}; torch {report.torch_version}",
        f"fp32 GEMM peak (2048^3 torch.mm, this process): {report.gemm_gflops:.1f} GFLOP/s",
        "peak RSS: VmHWM per runtime (reset before each)" if report.peak_rss_reset
        else "peak RSS: ru_maxrss since the process started (VmHWM reset not allowed here)",
        f"int8 calibration: {report.calibration}",
    ]
    tail = []
    if report.agreement_images:
        tail = [f"agree %: top-1 agreement with eager fp32 on {report.agreement_images} images; "
                f"* fastest with >= {100 * MIN_AGREEMENT:g}%"]
        tail += [f"batch {b}: fastest at >= {100 * MIN_AGREEMENT:g}% agreement: {report.fastest_agreeing.get(b, 'none')}"
                 for b in sorted({r.batch_size for r in report.rows})]
    return "\n".join(head + [""] + _table(report) + ([""] + tail if tail else []))
