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

Runtimes: ``eager`` (PyTorch, ``torch.inference_mode``), ``compile``
(``torch.compile`` default mode, ``dynamic=False``: the first call of each
batch size compiles its own graph, as part of the warm-up), ``torchscript`` (``torch.jit.trace`` +
``torch.jit.freeze``), ``onnxruntime``, ``onnxruntime-int8`` and
``onnxruntime-int8-blockwise``, ``onnxruntime-int8-per-token`` (the ONNX
export of :mod:`swinlab.export.onnx_export`, fp32 or with int8 Linear layers
in the dynamic, blockwise or per-token scheme -- the latter with its weights
rounded to nearest, which runs as fast as GPTQ's -- run by
:class:`~swinlab.export.runtime.OnnxRuntimeModel`).
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
from .runtime import OnnxRuntimeModel
from .torch_export import trace_module

__all__ = ["RUNTIMES", "DEFAULT_RUNTIMES", "BenchmarkRow", "BenchmarkReport", "gemm_gflops", "run_benchmark",
           "format_report"]

RUNTIMES = ("eager", "compile", "onnxruntime", "onnxruntime-int8", "onnxruntime-int8-blockwise",
             "onnxruntime-int8-per-token", "torchscript")
#: without ``compile``: compiling takes minutes on a small CPU; ask for it by name.
DEFAULT_RUNTIMES = ("eager", "onnxruntime", "onnxruntime-int8", "torchscript")


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


def build_runner(runtime: str, model: nn.Module, info: ModelInfo, img_hw: tuple[int, int],
                 threads: int) -> Callable[[torch.Tensor], Any]:
    """A callable ``(B, 3, H, W) -> logits`` for ``runtime`` (see the module docstring).

    Raises:
        UsageError: an unknown runtime.
    """
    if runtime == "eager":
        return model
    if runtime == "compile":
        return torch.compile(model, dynamic=False)  # one static graph per batch size, compiled in the warm-up
    if runtime == "torchscript":
        return torch.jit.freeze(trace_module(model, img_hw))
    if runtime in ("onnxruntime", "onnxruntime-int8", "onnxruntime-int8-blockwise", "onnxruntime-int8-per-token"):
        scheme = runtime.removeprefix("onnxruntime-int8-") if runtime.startswith("onnxruntime-int8-") else "dynamic"
        return OnnxRuntimeModel.from_model(model, info, int8="int8" in runtime, threads=threads, img_hw=img_hw,
                                           int8_scheme=scheme)
    raise UsageError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")


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


def _bench_runtime(runtime: str, model: nn.Module, info: ModelInfo, img_hw: tuple[int, int], batch_sizes: Sequence[int],
                   iters: int, warmup: int, threads: int, gemm: float, gflop: float) -> list[BenchmarkRow]:
    """Rows of one runtime; its peak memory spans building it and all its batch sizes."""
    rss_before = _current_rss_mib()
    _reset_peak_rss()
    t0 = time.perf_counter()
    runner = build_runner(runtime, model, info, img_hw, threads)
    setup = time.perf_counter() - t0
    rows = []
    for b in batch_sizes:
        x = torch.randn(b, 3, *img_hw, generator=torch.Generator().manual_seed(b))
        times = _time_calls(runner, x, iters, warmup)
        median = statistics.median(times)
        ips = b / median
        rows.append(BenchmarkRow(runtime, b, ips, 1e3 * median, 1e3 * _p90(times), ips * gflop / gemm, 0.0, 0.0, setup))
    peak = _peak_rss_mib()
    for row in rows:
        row.peak_rss_mib, row.rss_increase_mib = peak, max(0.0, peak - rss_before)
    del runner
    return rows


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
) -> BenchmarkReport:
    """Benchmark ``model`` in each runtime at each batch size (see the module docstring).

    Args:
        model, info: from :func:`swinlab.inference.load_model` (moved to the CPU, eval mode).
        runtimes: names from :data:`RUNTIMES`. batch_sizes: images per call.
        img_hw: input ``(H, W)`` [pixels] (default: ``info.img_size`` square).
        iters: timed calls per batch size. warmup: untimed calls before them.
        threads: ``torch.set_num_threads`` and ONNX Runtime intra-op threads
            (default: PyTorch's current setting).
        progress: called with a line before each runtime (e.g. ``print`` to stderr).

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
    threads = torch.get_num_threads()
    hw = (int(img_hw[0]), int(img_hw[1])) if img_hw else (int(info.img_size), int(info.img_size))
    model = model.to("cpu").eval()
    gflop = 2 * count_macs(model, (3, *hw)) / 1e9
    gemm = gemm_gflops()
    report = BenchmarkReport(
        model=info.model_name, img_hw=hw, threads=threads, iters=iters,
        cpu_capability=torch.backends.cpu.get_cpu_capability(), cpu=platform.processor() or platform.machine(),
        torch_version=torch.__version__, gemm_gflops=gemm, gflop_per_image=gflop, peak_rss_reset=_reset_peak_rss(),
    )
    for runtime in runtimes:
        if progress:
            progress(f"benchmark: {runtime} ...")
        report.rows.extend(_bench_runtime(runtime, model, info, hw, batch_sizes, iters, warmup, threads, gemm, gflop))
    return report


def format_report(report: BenchmarkReport) -> str:
    """The report as a header and an aligned table."""
    h, w = report.img_hw
    head = [
        f"model {report.model}, input {h}x{w}, {report.gflop_per_image:.3f} GFLOP/image, "
        f"{report.threads} thread(s), {report.iters} timed calls per row",
        f"CPU ISA (torch.backends.cpu.get_cpu_capability): {report.cpu_capability}; torch {report.torch_version}",
        f"fp32 GEMM peak (2048^3 torch.mm, this process): {report.gemm_gflops:.1f} GFLOP/s",
        "peak RSS: VmHWM per runtime (reset before each)" if report.peak_rss_reset
        else "peak RSS: ru_maxrss since the process started (VmHWM reset not allowed here)",
    ]
    cols = ("runtime", "batch", "images/s", "median ms", "p90 ms", "% GEMM peak", "peak RSS MiB", "+RSS MiB", "setup s")
    rows = [cols] + [
        (r.runtime, str(r.batch_size), f"{r.images_per_s:.2f}", f"{r.latency_ms_median:.1f}", f"{r.latency_ms_p90:.1f}",
         f"{100 * r.fraction_of_gemm_peak:.1f}", f"{r.peak_rss_mib:.0f}", f"{r.rss_increase_mib:.0f}",
         f"{r.setup_s:.1f}")
        for r in report.rows
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)) for row in rows]
    return "\n".join(head + [""] + lines)
