"""Training speed of the small models on the CPU: today's code against the
commit the issues started from (056c22d) (a script, not a test).

A training step is forward + soft-target cross-entropy + backward +
``torch.optim.AdamW`` step on a random batch of 128, fp32, 2 threads. Both
codes build the same architecture (the base commit's registry arguments).
Two measurements, both printed with the CPU's ISA:

* **as users run them** (the headline): fresh processes, base and today
  alternating, each one warming up and timing its own steps -- the base
  code with the default memory allocator, today's with the allocator
  settings that ``swinlab train`` applies (``swinlab.memory``). The
  allocator's state is process-wide, so this part of the speed-up cannot be
  seen inside one process. Ratio: median over the pairs of adjacent runs.
* **code only**: both codes in one process, taking turns every repeat, with
  the allocator settings applied to the process (so neither code pays page
  faults); each timed block follows an untimed step of the same code.

``--compile`` also times today's step under ``torch.compile`` in both parts,
``--bf16`` under bf16 autocast.

Usage::

    python benchmarks/bench_train_speed.py                  # ~10 min on 2 cores
    python benchmarks/bench_train_speed.py --pairs 3 --repeats 3   # quicker look
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from baseline import BASE_COMMIT, load_baseline
from swinlab.memory import tune_cpu_allocator
from swinlab.models.registry import get_model_spec

CASES = {  # name: (registry model, input side, classes)
    "micro": ("swin_micro_patch4_window4_64", 64, 200),
    "ref000": ("swin_keras_cifar100_patch2_window2_32", 32, 100),
}


def build(code: str, case: str, compile_: bool = False,
          base_ref: str = BASE_COMMIT) -> tuple[torch.nn.Module, int, int]:
    """The case's model built by ``code`` ("base" or "today") with the base commit's arguments."""
    model_name, size, classes = CASES[case]
    base = load_baseline(base_ref)
    kwargs = dict(base.models.get_model_spec(model_name).kwargs, num_classes=classes)
    torch.manual_seed(0)
    builder = base.models.get_model_spec(model_name).builder if code == "base" else get_model_spec(model_name).builder
    model = builder(**kwargs)
    return (torch.compile(model, dynamic=False) if compile_ else model), size, classes


def make_step(model: torch.nn.Module, batch: int, size: int, classes: int, bf16: bool = False):
    """A closure running one training step on a fixed random batch (``bf16``:
    under bf16 autocast, as ``swinlab train`` with ``amp`` on the CPU)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size)
    target = F.one_hot(torch.randint(0, classes, (batch,)), classes).float() * 0.9 + 0.1 / classes
    model.train()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed(step, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - t


def worker(code: str, case: str, args: argparse.Namespace) -> dict:
    """One fresh process: warm up, then the median images/s of ``args.blocks`` timed blocks."""
    torch.set_num_threads(args.threads)
    if code != "base":
        tune_cpu_allocator()
    model, size, classes = build("today" if code != "base" else "base", case, code == "compiled", args.base)
    step = make_step(model, args.batch, size, classes, bf16=code == "bf16")
    t = time.perf_counter()
    for _ in range(args.warmup):
        step()
    warm = time.perf_counter() - t
    ips = [args.batch * args.steps / timed(step, args.steps) for _ in range(args.blocks)]
    return {"images_per_s": statistics.median(ips), "warmup_s": warm}


def fresh_processes(case: str, codes: list[str], args: argparse.Namespace) -> dict:
    runs: dict[str, list[float]] = {c: [] for c in codes}
    warm: dict[str, float] = {}
    for _ in range(args.pairs):
        for code in codes:
            cmd = [sys.executable, __file__, "--worker", code, case, "--base", args.base,
                   "--threads", str(args.threads), "--batch",
                   str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                            cwd=Path(__file__).parent).stdout.splitlines()[-1])
            runs[code].append(out["images_per_s"])
            warm[code] = out["warmup_s"]
    return _summary(runs, warm)


def one_process(case: str, codes: list[str], args: argparse.Namespace) -> dict:
    tune_cpu_allocator()
    steps, warm = {}, {}
    for code in codes:
        model, size, classes = build("today" if code != "base" else "base", case, code == "compiled", args.base)
        steps[code] = make_step(model, args.batch, size, classes, bf16=code == "bf16")
        t = time.perf_counter()
        for _ in range(args.warmup):
            steps[code]()
        warm[code] = time.perf_counter() - t
    runs: dict[str, list[float]] = {c: [] for c in codes}
    for _ in range(args.repeats):
        for code in codes:
            steps[code]()  # untimed: the allocator settles into this code's pattern
            runs[code].append(args.batch * args.steps / timed(steps[code], args.steps))
    return _summary(runs, warm)


def _summary(runs: dict[str, list[float]], warm: dict[str, float]) -> dict:
    base = runs["base"]
    out = {"images_per_s": {k: statistics.median(v) for k, v in runs.items()}, "warmup_s": warm}
    ratios = {k: [a / b for a, b in zip(v, base)] for k, v in runs.items() if k != "base"}
    out["ratio"] = {k: statistics.median(r) for k, r in ratios.items()}
    out["ratio_range"] = {k: [min(r), max(r)] for k, r in ratios.items()}
    return out


def _print(title: str, res: dict) -> None:
    print(f"  {title}:")
    for code, ips in res["images_per_s"].items():
        extra = "" if code == "base" else (f"  {res['ratio'][code]:.2f}x base (pairs/repeats "
                                           f"{res['ratio_range'][code][0]:.2f}-{res['ratio_range'][code][1]:.2f})")
        print(f"    {code:9s} {ips:7.1f} images/s{extra}  (warm-up {res['warmup_s'][code]:.1f} s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--pairs", type=int, default=5, help="fresh-process pairs per case")
    p.add_argument("--repeats", type=int, default=7, help="turns per code in the one-process part")
    p.add_argument("--steps", type=int, default=3, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=3, help="timed blocks per fresh process")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile happens here)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time today's step under torch.compile")
    p.add_argument("--bf16", action="store_true",
                   help="also time today's step under bf16 autocast (the precision amp=auto picks on CPUs with "
                        "AMX or AVX512-BF16)")
    p.add_argument("--json-out", help="also write the results as JSON")
    p.add_argument("--base", default=BASE_COMMIT, help=f"the base commit (default {BASE_COMMIT})")
    p.add_argument("--worker", nargs=2, metavar=("CODE", "CASE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args)))
        return
    torch.set_num_threads(args.threads)
    codes = ["base", "today"] + (["compiled"] if args.compile else []) + (["bf16"] if args.bf16 else [])
    print(f"CPU ISA {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, {args.threads} threads, "
          f"fp32 (bf16: autocast), batch {args.batch}; base = commit {args.base}")
    results = {}
    for case in args.cases:
        model_name, size, _ = CASES[case]
        print(f"\n{model_name} at {size} px:")
        results[case] = {"as users run them (fresh processes)": fresh_processes(case, codes, args)}
        _print("as users run them (fresh processes)", results[case]["as users run them (fresh processes)"])
        results[case]["code only (one process)"] = one_process(case, codes, args)
        _print("code only (one process, allocator settings for both)", results[case]["code only (one process)"])
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
