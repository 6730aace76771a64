"""SwinV2-T against timm's ``swinv2_tiny_window8_256`` on the CPU (issue 21,
acceptance 5 and the MAC check of acceptance 2; a script, not a test).

Run it in a virtualenv that has timm (timm needs torchvision, which installs
only beside the CUDA build of torch here; it runs on the CPU), with swinlab
from this checkout and never as a dependency::

    python3 -m venv /tmp/timmenv
    /tmp/timmenv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm
    /tmp/timmenv/bin/pip install --no-deps -e .
    /tmp/timmenv/bin/pip install kornia tqdm matplotlib tensorboard   # what swinlab imports
    /tmp/timmenv/bin/python benchmarks/bench_swinv2_timm.py --threads 2

Both models are built with random weights (``drop_path_rate`` 0.1 for both)
at 256 px, batch ``--batch`` (16), ``--threads`` threads, in one process,
taking turns every repeat: inference (eval, ``torch.inference_mode``) and a
training step (forward, cross-entropy, backward, ``torch.optim.AdamW``), in
fp32 and, with ``--bf16`` (default on when the CPU has bf16 matrix
instructions), under bf16 autocast. Printed: the CPU ISA, images/s (median
over repeats) and the per-repeat ratio swinlab / timm (median). The issue's
target is >= 1.2x timm in each.

``--ops ROWS`` prints, instead of the timings, the ROWS largest operators of
each case under ``torch.profiler`` for both models side by side (self CPU ms
per call, mean of ``--repeats`` profiled calls taking turns, GEMMs summed):
where each model's time goes.

MACs: one 256 px forward of each model counted with
``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2), beside swinlab's
own :func:`swinlab.models.flops.count_macs` (which counts the explicit
attention path; the counter sees less on swinlab's default fused path, whose
attention runs inside ``scaled_dot_product_attention``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import timm
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from swinlab import create_model
from swinlab.models.flops import count_macs
from swinlab.training.setup import cpu_bf16_matrix

NAME = "swinv2_tiny_window8_256"


def forward_macs(model: torch.nn.Module, size: int = 256) -> int:
    """Multiply-accumulates of one ``(1, 3, size, size)`` forward (FLOP counter / 2)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.eval()(torch.randn(1, 3, size, size))
    return counter.get_total_flops() // 2


def runner(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, train: bool,
           dtype: torch.dtype | None) -> Callable[[], None]:
    """One inference batch or one training step of ``model`` (autocast to ``dtype`` when given)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4) if train else None

    def autocast():
        return torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), autocast():
            model(x)

    def step() -> None:
        model.train()
        with autocast():
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step if train else infer


def timed(fn: Callable[[], None], iters: int) -> float:
    """Seconds per call of ``fn`` over ``iters`` calls (after one untimed call)."""
    fn()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


def compare(label: str, fns: dict[str, Callable[[], None]], batch: int, repeats: int, iters: int) -> None:
    """Interleaved repeats of each function; prints images/s and the swinlab / timm ratio."""
    rates: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            rates[k].append(batch / timed(fn, iters))
    ratios = [a / b for a, b in zip(rates["swinlab"], rates["timm"])]
    print(f"{label:18s} swinlab {statistics.median(rates['swinlab']):7.2f} images/s | timm "
          f"{statistics.median(rates['timm']):7.2f} images/s | swinlab / timm {statistics.median(ratios):.2f}x "
          f"(per repeat {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)


def op_table(label: str, fns: dict[str, Callable[[], None]], rounds: int, rows: int) -> None:
    """Per-operator self CPU time (ms per call, mean of ``rounds`` profiled calls of each
    function, taking turns) side by side, the ``rows`` largest; GEMMs summed on a last line."""
    totals: dict[str, dict[str, float]] = {k: {} for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            for e in prof.key_averages():
                totals[k][e.key] = totals[k].get(e.key, 0.0) + e.self_cpu_time_total / 1e3 / rounds
    keys = sorted(set().union(*totals.values()), key=lambda op: -sum(t.get(op, 0.0) for t in totals.values()))
    print(f"{label}: self CPU ms per call under the profiler (mean of {rounds})")
    print(f"  {'operator':44s}" + "".join(f"{k:>10s}" for k in fns))
    for op in keys[:rows]:
        print(f"  {op[:44]:44s}" + "".join(f"{totals[k].get(op, 0.0):10.1f}" for k in fns))
    gemm = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm")
    print(f"  {'GEMMs (mm, addmm, addmm_, bmm)':44s}" + "".join(
        f"{sum(totals[k].get(op, 0.0) for op in gemm):10.1f}" for k in fns))
    print(f"  {'total':44s}" + "".join(f"{sum(totals[k].values()):10.1f}" for k in fns), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--iters", type=int, default=2, help="calls per timed repeat")
    p.add_argument("--ops", type=int, default=0, metavar="ROWS",
                   help="instead of timing, print the ROWS largest operators of each case under the profiler")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="also time bf16 autocast (default: when the CPU has bf16 matrix instructions)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bf16_cpu = cpu_bf16_matrix()
    print(f"CPU ISA {torch.backends.cpu.get_cpu_capability()}, bf16 matrix instructions: {bf16_cpu or 'none'}; "
          f"torch {torch.__version__}, timm {timm.__version__}, {args.threads} threads, batch {args.batch}, 256 px")
    torch.manual_seed(0)
    models = {"swinlab": create_model(NAME, drop_path_rate=0.1),
              "timm": timm.create_model(NAME, drop_path_rate=0.1)}
    counts = {k: sum(q.numel() for q in m.parameters()) for k, m in models.items()}
    print(f"parameters: swinlab {counts['swinlab']:,}, timm {counts['timm']:,}")
    macs = {k: forward_macs(m) for k, m in models.items()}
    own = count_macs(models["swinlab"], (3, 256, 256))
    print(f"GMACs at 256 px (FlopCounterMode): swinlab {macs['swinlab'] / 1e9:.3f}, timm {macs['timm'] / 1e9:.3f} "
          f"({macs['swinlab'] / macs['timm'] - 1:+.2%}); swinlab count_macs {own / 1e9:.3f}")
    x = torch.randn(args.batch, 3, 256, 256)
    y = torch.randint(0, 1000, (args.batch,))
    dtypes = [None] + ([torch.bfloat16] if (args.bf16 if args.bf16 is not None else bool(bf16_cpu)) else [])
    for dtype in dtypes:
        tag = "bf16 autocast" if dtype else "fp32"
        for train in (False, True):
            fns = {k: runner(m, x, y, train, dtype) for k, m in models.items()}
            label = f"{tag} {'train' if train else 'infer'}"
            if args.ops:
                for fn in fns.values():
                    fn()  # warm up (caches, allocator) before profiling
                op_table(label, fns, args.repeats, args.ops)
            else:
                compare(label, fns, args.batch, args.repeats, args.iters)


if __name__ == "__main__":
    main()
