"""Training speed of the small models on the CPU, today's code against the
commit the issues started from (056c22d), in one process (a script, not a test).

For each case the same architecture (the base commit's registry arguments)
is built by both codes; a training step is forward + soft-target
cross-entropy + backward + ``torch.optim.AdamW`` step on a random batch, fp32,
2 threads. Repeats alternate between the codes; the figure is the median of
the per-repeat ratios (images/s today / images/s base). ``--compile`` also
times today's step under ``torch.compile`` (after its warm-up, which is
reported), and the reference-000 model as registered today (its Keras
definition: more dropout, the MLP applied twice) is timed too.

Usage::

    python benchmarks/bench_train_speed.py                  # ~6 min on 2 cores
    python benchmarks/bench_train_speed.py --compile        # + torch.compile
    python benchmarks/bench_train_speed.py --repeats 3 --steps 2   # quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from baseline import BASE_COMMIT, load_baseline
from swinlab.models.registry import build_model

CASES = {  # name: (registry model, input side, classes)
    "micro": ("swin_micro_patch4_window4_64", 64, 200),
    "ref000": ("swin_keras_cifar100_patch2_window2_32", 32, 100),
}


def make_step(model: torch.nn.Module, batch: int, size: int, classes: int):
    """A closure running one training step on a fixed random batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size)
    target = F.one_hot(torch.randint(0, classes, (batch,)), classes).float() * 0.9 + 0.1 / classes
    model.train()

    def step() -> None:
        loss = torch.sum(-target * F.log_softmax(model(x), dim=-1), dim=-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed(step, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - t


def run_case(name: str, args: argparse.Namespace, base) -> dict:
    model_name, size, classes = CASES[name]
    spec_kwargs = dict(base.models.get_model_spec(model_name).kwargs, num_classes=classes)
    torch.manual_seed(0)
    runners = {"base": make_step(base.models.create_model(model_name, **spec_kwargs), args.batch, size, classes)}
    torch.manual_seed(0)
    runners["today"] = make_step(build_model(model_name, **spec_kwargs), args.batch, size, classes)
    warmup = {}
    if name == "ref000":
        runners["today (Keras definition)"] = make_step(build_model(model_name, num_classes=classes), args.batch,
                                                        size, classes)
    if args.compile:
        compiled = torch.compile(build_model(model_name, **spec_kwargs), dynamic=False)
        runners["today compiled"] = make_step(compiled, args.batch, size, classes)
    for key, step in runners.items():
        t = time.perf_counter()
        for _ in range(args.warmup):
            step()
        warmup[key] = time.perf_counter() - t
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(args.repeats):
        for key, step in runners.items():
            times[key].append(timed(step, args.steps))
    ips = {k: [args.batch * args.steps / t for t in v] for k, v in times.items()}
    out = {"model": model_name, "input": size, "batch": args.batch, "warmup_s": warmup,
           "images_per_s": {k: statistics.median(v) for k, v in ips.items()}}
    out["ratio_vs_base"] = {k: statistics.median([a / b for a, b in zip(v, ips["base"])])
                            for k, v in ips.items() if k != "base"}
    out["ratio_range"] = {k: (min(a / b for a, b in zip(v, ips["base"])), max(a / b for a, b in zip(v, ips["base"])))
                          for k, v in ips.items() if k != "base"}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=3, help="steps per timed repeat")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile happens here)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time today's step under torch.compile")
    p.add_argument("--json-out", help="also write the results as JSON")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base = load_baseline()
    print(f"CPU ISA {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, {args.threads} threads, "
          f"fp32, batch {args.batch}; base = commit {BASE_COMMIT}")
    results = {}
    for name in args.cases:
        r = results[name] = run_case(name, args, base)
        print(f"\n{r['model']} at {r['input']} px:")
        for key, v in r["images_per_s"].items():
            ratio = "" if key == "base" else (f"  {r['ratio_vs_base'][key]:.2f}x base (repeats "
                                              f"{r['ratio_range'][key][0]:.2f}-{r['ratio_range'][key][1]:.2f})")
            print(f"  {key:28s} {v:7.1f} images/s{ratio}  (warm-up {r['warmup_s'][key]:.1f} s)")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
