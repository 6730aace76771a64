"""Host work per training step: how many operators one step of reference 003 launches
(a script, not a test; counts, not timings, so a busy machine does not change them).

One step of ``ref003_tiny_imagenet`` (Swin-T 64 px, its augmentation, soft-target loss,
backward, gradient clipping 3.0, AdamW) at batch 2 on the CPU, bf16 autocast (the GPU's
precision), counted with ``torch.profiler``:

* **classic** (the step before the graph step, ``train_step="classic"``): kornia's
  ``BatchAugment``, then the model's forward + loss + backward, ``clip_grad_norm_`` and
  ``AdamW.step()``, eager;
* **graph, eager** (``train_step="graph"`` without compile): :class:`DeviceAugment` (per-image
  draws: every RandAugment operation is computed for the whole batch) and the same model,
  loss, clipping and a fused AdamW update, in one Python function;
* **graph, compiled** (``train_step="graph"``, ``compile``): that function as one Inductor
  graph; counted: compiled graphs run per step, the ATen operators it still calls (extern
  kernels: matrix products, convolutions, random draws), Inductor's generated kernels
  (``cpp.enable_kernel_profile``; a GPU build generates Triton kernels instead, a similar
  number) and the operators run outside the graph (the lr fill, the output copy).

"Top-level" operators are the ATen calls the Python code makes (each one a kernel launch,
or a few, on a GPU); "all ATen" includes the calls nested inside them.  The augmentation is
counted alone as well (its share of the step).

Usage (about 1 minute eager; the compiled Swin-T step compiles for several minutes on two
cores, ``--compiled-depths 1 1`` shrinks the model of the compiled count only)::

    nice -n 10 python benchmarks/bench_step_ops.py
    nice -n 10 python benchmarks/bench_step_ops.py --skip-compiled
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch

from swinlab.data import BatchAugment
from swinlab.factory import create_model
from swinlab.training.config import load_config
from swinlab.training.graph_step import GraphStep
from swinlab.training.metrics import soft_target_cross_entropy
from swinlab.training.optim import build_optimizer

BATCH = 2


def counts(fn: Callable[[], Any], warmup: int = 1) -> dict[str, int]:
    """Profile one call of ``fn`` (after ``warmup`` calls): top-level and all ATen calls,
    compiled graphs entered, Inductor kernels (``cpp_fused_*`` / ``triton_*`` events)."""
    for _ in range(warmup):
        fn()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.events()
    aten = [e for e in events if e.name.startswith("aten::")]

    def nested(e: Any) -> bool:
        p = e.cpu_parent
        while p is not None:
            if p.name.startswith("aten::"):
                return True
            p = p.cpu_parent
        return False

    kernels = [e for e in events if "cpp_fused" in e.name or e.name.startswith("triton_")]
    return {"top_level": sum(1 for e in aten if not nested(e)), "all_aten": len(aten),
            "graphs": sum(1 for e in events if e.name.startswith("Torch-Compiled Region")),
            "kernels": sum(1 for e in kernels if not (e.cpu_parent and e.cpu_parent.name == e.name))}


def build(cfg: Any, overrides: dict[str, Any]) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = create_model(cfg.model, num_classes=200, drop_path_rate=cfg.drop_path_rate, **overrides)
    return model, build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas)


def classic_step(cfg: Any, model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[Callable, Callable]:
    """The engine's classic micro-step + optimizer step (``_micro_step``, ``_optimizer_step``)."""
    aug = BatchAugment(cfg.aug.with_size(64), 200)
    x = torch.randint(0, 256, (BATCH, 3, 64, 64), dtype=torch.uint8)
    y = torch.randint(0, 200, (BATCH,))

    def step() -> None:
        inputs, soft = aug(x, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(inputs)
        loss = soft_target_cross_entropy(logits.float(), soft.float())
        loss.backward()
        float(loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, lambda: aug(x, y)


def graph_step(cfg: Any, model: torch.nn.Module, opt: torch.optim.Optimizer, compile: bool) -> tuple[Callable, Any]:
    options = {"cpp.enable_kernel_profile": True} if compile else None
    step = GraphStep(model, opt, cfg.aug, 200, torch.device("cpu"), torch.bfloat16, cfg.clip_grad,
                     compile=compile, options=options)
    x = torch.randint(0, 256, (BATCH, 3, 64, 64), dtype=torch.uint8)
    y = torch.randint(0, 200, (BATCH,))
    return (lambda: step(x, y, 64)), step


def show(name: str, c: dict[str, int], aug: dict[str, int] | None = None) -> None:
    extra = f"; augmentation alone {aug['top_level']} top-level / {aug['all_aten']} ATen" if aug else ""
    graphs = f", {c['graphs']} compiled graph(s), {c['kernels']} Inductor kernels" if c["graphs"] else ""
    print(f"{name:<18} {c['top_level']:>6} top-level ATen operators, {c['all_aten']:>6} ATen calls in all"
          f"{graphs}{extra}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-compiled", action="store_true")
    p.add_argument("--compiled-depths", type=int, nargs="+", default=None,
                   help="shrink the model of the compiled count (e.g. 1 1: two one-block stages)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config("ref003_tiny_imagenet")
    print(f"torch {torch.__version__}, CPU ISA {torch.backends.cpu.get_cpu_capability()}, {cfg.model}, batch "
          f"{BATCH}, bf16 autocast, one step after one warm-up step")
    step, aug = classic_step(cfg, *build(cfg, {}))
    show("classic (kornia)", counts(step), counts(aug))
    step, gs = graph_step(cfg, *build(cfg, {}), compile=False)
    x = torch.randint(0, 256, (BATCH, 3, 64, 64), dtype=torch.uint8)
    show("graph, eager", counts(step), counts(lambda: gs.augment(64)(x, torch.zeros(BATCH, dtype=torch.long))))
    if args.skip_compiled:
        return
    shrink: dict[str, Any] = {}
    if args.compiled_depths:
        n = len(args.compiled_depths)
        shrink = dict(depths=args.compiled_depths, num_heads=[3 * 2**i for i in range(n)])
    t0 = time.time()
    step, gs = graph_step(cfg, *build(cfg, shrink), compile=True)
    step()
    print(f"(compiled in {time.time() - t0:.0f} s, fullgraph {gs.fullgraph}, model depths "
          f"{shrink.get('depths', 'as ref003')})")
    show("graph, compiled", counts(step))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
