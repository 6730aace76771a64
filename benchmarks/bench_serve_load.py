"""Load test of ``swinlab serve``: a real server process on 127.0.0.1, many
concurrent clients posting real Tiny ImageNet val images.

Starts ``python -m swinlab serve SOURCE`` on a free port, waits for
``/health``, sends ``--requests`` POST /predict requests (one JPEG each, raw
body) from ``--clients`` concurrent client threads, and prints: errors (non-200
answers and failed connections), requests/s, latency p50 / p95 / max
(``time.perf_counter`` around each request), how many forward passes served
them (the server's micro-batching, from ``/info``), and the server's resident
memory (``VmRSS`` of ``/proc/PID/status``) after start-up, after a warm-up of
``--clients`` requests and at the end (growth = end - after warm-up), plus its
peak (``VmHWM``). The CPU ISA of this machine is printed with the figures.
Exits 1 on any error or an RSS growth above ``--max-growth-mib`` (50 MiB).

Run on an idle machine:

    python benchmarks/bench_serve_load.py --source runs/main --requests 200 --clients 8

The auto runtime (OpenVINO bf16 on a CPU with bf16 matrix instructions):

    python benchmarks/bench_serve_load.py --source runs/main --requests 200 --clients 8 --runtime auto

Quick check that it works:

    python benchmarks/bench_serve_load.py --source swin_micro_patch4_window4_64 --requests 16 --clients 4
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kib(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    return float("nan")


def _images(zip_path: str, n: int) -> list[bytes]:
    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(m for m in zf.namelist() if m.startswith("tiny-imagenet-200/val/images/") and m.endswith(".JPEG"))
        return [zf.read(m) for m in names[:n]]


def _start(args: argparse.Namespace, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "swinlab", "serve", args.source, "--port", str(port), "--log-level", "warning",
           "--runtime", args.runtime, *(["--int8"] if args.int8 else []),
           *(["--precision", args.precision] if args.precision else []),
           *(["--calibration", args.calibration] if args.calibration else []),
           *(["--threads", str(args.threads)] if args.threads else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.25)
    proc.kill()
    sys.exit("server did not answer /health within 180 s")


def _load(url: str, images: list[bytes], requests: int, clients: int) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        t0 = time.perf_counter()
        try:
            r = httpx.post(f"{url}/predict", content=images[i % len(images)], timeout=120)
            ok, what = r.status_code == 200, f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as e:
            ok, what = False, f"{type(e).__name__}: {e}"
        dt = time.perf_counter() - t0
        with lock:
            (latencies.append(dt) if ok else errors.append(what))

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    return latencies, errors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="run folder, checkpoint or model name for swinlab serve")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-imagenet-200.zip"))
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--runtime", default="eager", choices=("eager", "onnxruntime", "openvino", "auto"),
                   help="swinlab serve --runtime (auto: the server prints and /health names its choice)")
    p.add_argument("--int8", action="store_true")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="swinlab serve --precision")
    p.add_argument("--calibration", help="swinlab serve --calibration (int8 of OpenVINO / per-token)")
    p.add_argument("--threads", type=int, help="server model threads")
    p.add_argument("--max-growth-mib", type=float, default=50.0,
                   help="fail (exit 1) when the server's RSS grows more than this after warm-up (default: 50)")
    p.add_argument("--json-out")
    args = p.parse_args()
    images = _images(args.data, min(args.requests, 500))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(args, port)
    try:
        rss_start = _status_kib(proc.pid, "VmRSS") / 1024
        _load(url, images, args.clients, args.clients)  # warm-up: first batches, allocator growth
        rss_warm = _status_kib(proc.pid, "VmRSS") / 1024
        info0 = httpx.get(f"{url}/info", timeout=10).json()
        served_by = httpx.get(f"{url}/health", timeout=10).json().get("runtime")
        t0 = time.perf_counter()
        latencies, errors = _load(url, images, args.requests, args.clients)
        wall = time.perf_counter() - t0
        info1 = httpx.get(f"{url}/info", timeout=10).json()
        rss_end = _status_kib(proc.pid, "VmRSS") / 1024
        rss_peak = _status_kib(proc.pid, "VmHWM") / 1024
        alive = httpx.get(f"{url}/health", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    lat = sorted(latencies)
    q = (lambda f: 1e3 * lat[min(len(lat) - 1, int(f * len(lat)))]) if lat else (lambda f: float("nan"))
    out = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "source": args.source, "runtime": args.runtime,
        "served_by": served_by,
        "int8": args.int8, "requests": args.requests, "clients": args.clients, "errors": len(errors),
        "error_examples": errors[:3], "wall_s": wall, "requests_per_s": len(latencies) / wall,
        "latency_ms_p50": 1e3 * statistics.median(lat) if lat else float("nan"), "latency_ms_p95": q(0.95),
        "latency_ms_max": 1e3 * lat[-1] if lat else float("nan"),
        "forward_passes": info1["batches"] - info0["batches"], "images": info1["batched_images"] - info0["batched_images"],
        "rss_mib_start": rss_start, "rss_mib_after_warmup": rss_warm, "rss_mib_end": rss_end,
        "rss_growth_mib": rss_end - rss_warm, "rss_peak_mib": rss_peak, "alive_after": alive,
    }
    print(f"CPU ISA: {out['cpu_capability']}; server: {args.source} (--runtime {args.runtime}"
          f"{' --int8' if args.int8 else ''}: {served_by})")
    print(f"{args.requests} requests from {args.clients} clients in {wall:.1f} s: {out['requests_per_s']:.1f} requests/s, "
          f"{out['errors']} errors")
    print(f"latency p50 {out['latency_ms_p50']:.0f} ms, p95 {out['latency_ms_p95']:.0f} ms, max {out['latency_ms_max']:.0f} ms; "
          f"{out['images']} images in {out['forward_passes']} forward passes")
    print(f"server RSS: {rss_start:.0f} MiB at start, {rss_warm:.0f} after warm-up, {rss_end:.0f} at the end "
          f"(growth {out['rss_growth_mib']:+.1f} MiB), peak {rss_peak:.0f} MiB; alive after: {alive}")
    for e in errors[:3]:
        print("  error:", e)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    if out["errors"] or not alive or out["rss_growth_mib"] > args.max_growth_mib:
        sys.exit(f"FAILED: {out['errors']} errors, alive {alive}, RSS growth {out['rss_growth_mib']:+.1f} MiB "
                 f"(bound {args.max_growth_mib:g} MiB)")


if __name__ == "__main__":
    main()
