"""Peak memory of a Swin-T training step with and without gradient
checkpointing (a script, not a test; issue 21).

A training step is forward + cross-entropy + backward + ``torch.optim.AdamW``
step on a random batch (default: Swin-T, 224x224, batch 16, 1000 classes,
fp32, the model's default speed paths, stochastic depth 0.2). Gradient
checkpointing is ``model.set_grad_checkpointing(True)``: every block under
``torch.utils.checkpoint``, so backward keeps only the block inputs and
recomputes each block's activations (``swinlab.models.backbone``).

Each measurement runs in a fresh Python process (peak RSS is per process and
never falls), the two settings alternating. A process builds the model,
optimizer and batch, records its resident memory (``VmRSS``), runs
``--steps`` steps and reports its peak resident memory (``ru_maxrss``, the
kernel's high-water mark) and the median step time. "step" = peak minus the
memory before the first step (activations, gradients, the AdamW state
allocated on step 1, the allocator's slack). Printed with the CPU's ISA.

Three allocator settings are measured, since the resident memory of a
process is what its allocator keeps, not what its tensors hold:

* ``glibc``: glibc's defaults. Its mmap threshold rises with every freed
  large block (up to 32 MiB), so the 10-30 MiB maps of stage 1 come from
  the heap after the first free, where fragmentation keeps freed memory
  resident: the peak overstates live memory, most for the checkpointed
  step (it frees and reallocates every block's maps in backward).
* ``mmap``: a fixed mmap threshold of 128 KiB (``mallopt(M_MMAP_THRESHOLD)``,
  which also stops the rise): every large tensor is its own mapping, returned
  to the kernel when freed, so the peak RSS follows the live tensors.
* ``tuned``: the settings ``swinlab train`` applies
  (``swinlab.memory.tune_cpu_allocator``: freed blocks stay in the heap).

Usage::

    python benchmarks/bench_grad_checkpointing.py             # ~3 min on 2 cores
    python benchmarks/bench_grad_checkpointing.py --steps 3 --repeats 2
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from swinlab.factory import create_model
from swinlab.memory import tune_cpu_allocator


def _rss_mib() -> float:
    """This process's resident memory now [MiB] (``VmRSS`` of /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line in /proc/self/status")


ALLOCATORS = ("glibc", "mmap", "tuned")
_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>


def set_allocator(name: str) -> bool:
    """Apply allocator setting ``name`` (see the module docstring) to this
    process; True when a setting other than glibc's defaults is in effect."""
    if name == "tuned":
        return tune_cpu_allocator()
    if name == "mmap":
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024))
    return False


def child(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process; returns the figures."""
    tuned = set_allocator(args.allocator)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.model, img_size=args.size, drop_path_rate=0.2).train()
    model.set_grad_checkpointing(args.checkpointing == "on")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, model.num_classes, (args.batch,))
    before = _rss_mib()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return dict(before_mib=before, peak_mib=peak, step_s=statistics.median(times[1:] or times), allocator_set=tuned)


def measure(args: argparse.Namespace, checkpointing: str, allocator: str) -> dict:
    """Run :func:`child` in a fresh interpreter and return its figures."""
    cmd = [sys.executable, __file__, "--child", "--checkpointing", checkpointing, "--allocator", allocator,
           "--model", args.model, "--size", str(args.size), "--batch", str(args.batch),
           "--steps", str(args.steps), "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="swin_tiny_patch4_window7_224")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="processes per setting")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--allocators", nargs="+", default=list(ALLOCATORS), choices=ALLOCATORS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", default="off", choices=["off", "on"], help=argparse.SUPPRESS)
    parser.add_argument("--allocator", default="glibc", choices=ALLOCATORS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    print(f"CPU ISA {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, {args.threads} threads; "
          f"{args.model} {args.size}x{args.size}, batch {args.batch}, {args.steps} training steps per process, "
          f"fp32, a fresh process per figure")
    print(f"{'allocator':<10}{'checkpointing':<15}{'before MiB':>12}{'peak RSS MiB':>14}{'step MiB':>10}{'s/step':>8}")
    for allocator in args.allocators:
        runs: dict[str, list[dict]] = {"off": [], "on": []}
        for _ in range(args.repeats):
            for setting in ("off", "on"):
                runs[setting].append(measure(args, setting, allocator))
        peaks = {}
        for setting, rs in runs.items():
            before = statistics.median(r["before_mib"] for r in rs)
            peak = statistics.median(r["peak_mib"] for r in rs)
            step = statistics.median(r["step_s"] for r in rs)
            peaks[setting] = (peak, peak - before)
            print(f"{allocator:<10}{setting:<15}{before:>12.0f}{peak:>14.0f}{peak - before:>10.0f}{step:>8.2f}")
        (p_off, s_off), (p_on, s_on) = peaks["off"], peaks["on"]
        print(f"{allocator:<10}checkpointing: peak RSS {p_on / p_off:.2f}x ({p_on - p_off:+.0f} MiB), "
              f"step memory {s_on / s_off:.2f}x")


if __name__ == "__main__":
    main()
