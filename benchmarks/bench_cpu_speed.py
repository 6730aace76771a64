"""CPU speed of Swin-T: swinlab vs Hugging Face transformers (a script, not a test).

Measures, in one process with interleaved repeats (so that load from other
processes hits both implementations alike):

* inference images/s (``eval()``, ``torch.inference_mode``), fp32;
* training-step images/s (forward + cross-entropy + backward + step of
  ``torch.optim.AdamW`` with its defaults, the same for both);
* inference first, then training (each phase with its own warm-up rounds;
  within a phase the models take turns every repeat);
* for each, the median (and best) over repeats, the ratio swinlab /
  transformers (median of the per-repeat ratios, and best / best) and the
  fraction of the machine's measured fp32 GEMM throughput (one large
  ``torch.mm``) that the run reaches, counting 4.49 GMACs = 8.98 GFLOP per
  image forward (``swinlab.models.flops.count_macs``) and 3x that per
  training step (forward + backward).

Both models: Swin-T (embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7),
224x224, 1000 classes, drop_path_rate 0.2 (the official Swin-T recipe;
``--drop-path`` changes it for both), no dropout. With stochastic depth,
swinlab's training step skips the branch work of the dropped samples
(``swinlab.models.fast.drop_path_residual``) while transformers computes
and then zeroes it; ``--drop-path 0`` measures the step without that effect.
"% GEMM" always counts the full work of the step. transformers runs
``SwinForImageClassification`` with ``attn_implementation="eager"`` (and,
with ``--hf-sdpa``, also with ``"sdpa"``).

Usage::

    python benchmarks/bench_cpu_speed.py                # full run (~5 min on 2 cores)
    python benchmarks/bench_cpu_speed.py --quick        # short run (~1.5 min)
    python benchmarks/bench_cpu_speed.py --compile      # also a torch.compile figure
    python benchmarks/bench_cpu_speed.py --counts       # parameters and MACs of the zoo
    python benchmarks/bench_cpu_speed.py --drop-path 0  # training without stochastic depth
    python benchmarks/bench_cpu_speed.py --masked-drop-path  # also swinlab training with
                                        # stochastic depth as a mask (no sample skipping)
    python benchmarks/bench_cpu_speed.py --baseline 056c22d --no-hf --repeats 7   # today's swinlab
                                        # against another commit's, same process (benchmarks/baseline.py)
    python benchmarks/bench_cpu_speed.py --tune-malloc ...  # with the allocator settings of swinlab train
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from swinlab import create_model
from swinlab.models.flops import count_macs
from swinlab.memory import tune_cpu_allocator


def gemm_gflops(n: int = 2048, iters: int = 10) -> float:
    """Measured fp32 GEMM throughput in GFLOP/s (median of ``iters`` runs of an n^3 mm)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        torch.mm(a, b)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def build_hf(attn: str, drop_path: float) -> torch.nn.Module:
    from transformers import SwinConfig, SwinForImageClassification

    cfg = SwinConfig(
        image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
        window_size=7, drop_path_rate=drop_path, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, num_labels=1000, attn_implementation=attn,
    )
    model = SwinForImageClassification(cfg)
    if model.config._attn_implementation != attn:
        raise RuntimeError(f"transformers picked attention {model.config._attn_implementation!r}, not {attn!r}")
    return model


class MaskedDropPath(torch.nn.Module):
    """Wraps a :class:`swinlab.models.layers.DropPath` so that
    ``drop_path_residual`` computes the whole branch and multiplies it by the
    mask (the official / timm / transformers way) instead of skipping the
    dropped samples: the A/B baseline of ``--masked-drop-path``."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def mask_drop_path(model: torch.nn.Module) -> torch.nn.Module:
    """Replace every ``DropPath`` child of ``model`` by a :class:`MaskedDropPath`."""
    from swinlab.models.layers import DropPath

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, DropPath):
                setattr(module, name, MaskedDropPath(child))
    return model


class Runner:
    """One model with its optimiser; ``infer(n)`` / ``train(n)`` return seconds per batch."""

    def __init__(self, name: str, model: torch.nn.Module, hf: bool, x: torch.Tensor, y: torch.Tensor) -> None:
        self.name, self.model, self.hf, self.x, self.y = name, model, hf, x, y
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out.logits if self.hf else out

    def infer(self, n: int) -> float:
        self.model.eval()
        with torch.inference_mode():
            self._logits(self.x)
            t = time.perf_counter()
            for _ in range(n):
                self._logits(self.x)
        return (time.perf_counter() - t) / n

    def train(self, n: int) -> float:
        self.model.train()

        def step() -> None:
            loss = F.cross_entropy(self._logits(self.x), self.y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

        step()
        t = time.perf_counter()
        for _ in range(n):
            step()
        return (time.perf_counter() - t) / n


def print_counts() -> None:
    """Parameters and MACs/image of the official Swin / Swin V2 / Swin-S3 / ViT sizes (meta device, instant)."""
    from swinlab.models import list_models
    from swinlab.models.flops import count_params

    print(f"{'model':<36}{'params':>14}{'GMACs':>10}")
    for name in list_models("swin_*") + list_models("swinv2_*") + list_models("vit_*"):
        if name.endswith("_in22k"):
            continue
        with torch.device("meta"):
            model = create_model(name)
        h, w = model.img_size
        print(f"{name:<36}{count_params(model):>14,}{count_macs(model, (3, h, w)) / 1e9:>10.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median reported)")
    p.add_argument("--iters", type=int, default=3, help="batches timed per repeat")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds of every runner before the repeats")
    p.add_argument("--quick", action="store_true", help="short run: 2 repeats of 1 batch, 1 warm-up round")
    p.add_argument("--drop-path", type=float, default=0.2, help="drop_path_rate of both models (default 0.2)")
    p.add_argument("--masked-drop-path", action="store_true",
                   help="also time swinlab training with stochastic depth as a mask (no sample skipping)")
    p.add_argument("--hf-sdpa", action="store_true", help="also time transformers with attn 'sdpa'")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile(swinlab) inference (compiling takes minutes on a CPU)")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--baseline", metavar="REF", help="also time the swinlab of commit REF (same process)")
    p.add_argument("--no-hf", action="store_true", help="leave transformers out")
    p.add_argument("--counts", action="store_true", help="only print parameter and MAC counts of the zoo")
    p.add_argument("--tune-malloc", action="store_true",
                   help="apply swinlab.memory.tune_cpu_allocator first, as swinlab train does on the CPU "
                        "(process-wide: every model in the run gets it)")
    args = p.parse_args(argv)
    if args.counts:
        print_counts()
        return 0
    if args.quick:
        args.repeats, args.iters, args.warmup = 2, 1, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    malloc = "glibc tuned (swinlab.memory)" if args.tune_malloc and tune_cpu_allocator() else "default allocator"

    macs = count_macs(create_model("swin_tiny_patch4_window7_224"))
    gflop_fwd = 2 * macs / 1e9
    x = torch.randn(args.batch, 3, 224, 224)
    y = torch.randint(0, 1000, (args.batch,))
    dp = args.drop_path
    runners = [Runner("swinlab", create_model("swin_tiny_patch4_window7_224", drop_path_rate=dp), False, x, y)]
    if not args.no_hf:
        runners.append(Runner("hf-eager", build_hf("eager", dp), True, x, y))
    if args.baseline:
        from baseline import load_baseline

        base = load_baseline(args.baseline)
        base_factory = importlib.import_module(f"{base.__name__}.factory")  # not swinlab's lazy export: today's
        torch.manual_seed(0)
        runners.append(Runner(f"swinlab-{args.baseline}", base_factory.create_model(
            "swin_tiny_patch4_window7_224", drop_path_rate=dp), False, x, y))
    if args.hf_sdpa:
        runners.append(Runner("hf-sdpa", build_hf("sdpa", dp), True, x, y))
    if args.masked_drop_path:  # training only: inference is the same model
        masked = mask_drop_path(create_model("swin_tiny_patch4_window7_224", drop_path_rate=dp))
        runners.append(Runner("swinlab-masked", masked, False, x, y))
    if args.compile:
        compiled = torch.compile(runners[0].model)
        runners.append(Runner("swinlab-compiled", compiled, False, x, y))

    print(f"CPU ISA {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, batch {args.batch}, "
          f"Swin-T 224 fp32, drop_path_rate {dp}, {macs / 1e9:.3f} GMACs/image forward, {malloc}")
    peak = []
    inf: dict[str, list[float]] = {r.name: [] for r in runners}
    trn: dict[str, list[float]] = {r.name: [] for r in runners}
    # Two phases, inference then training (as in use: a model trains for many
    # steps in a row); within a phase the runners take turns every repeat.
    phases = [("inf", inf, [r for r in runners if r.name != "swinlab-masked"])]
    if not args.skip_train:
        phases.append(("train", trn, [r for r in runners if r.name != "swinlab-compiled"]))
    for label, results, active in phases:
        timed = Runner.infer if label == "inf" else Runner.train
        for _ in range(args.warmup):  # let allocators and caches settle before timing
            for r in active:
                timed(r, 1)
        for rep in range(args.repeats):
            peak.append(gemm_gflops())
            for r in active:
                results[r.name].append(args.batch / timed(r, args.iters))
            print(f"  {label} repeat {rep + 1}/{args.repeats}: gemm {peak[-1]:.0f} GFLOP/s; "
                  + "; ".join(f"{r.name} {results[r.name][-1]:.2f} img/s" for r in active), flush=True)

    gemm = statistics.median(peak)
    print(f"\nmeasured fp32 GEMM (2048^3 mm): {gemm:.0f} GFLOP/s (median of {len(peak)}), best {max(peak):.0f}")
    print("images/s: median over repeats [best]; % GEMM: median as a share of the median GEMM rate")
    print(f"{'model':<18}{'infer img/s':>20}{'% GEMM':>8}{'train img/s':>20}{'% GEMM':>8}")
    for k in inf:
        if inf[k]:
            i = statistics.median(inf[k])
            line = f"{k:<18}{i:>12.2f} [{max(inf[k]):5.2f}]{100 * i * gflop_fwd / gemm:>7.1f}%"
        else:
            line = f"{k:<18}{'-':>20}{'':>8}"
        if trn[k]:
            t = statistics.median(trn[k])
            line += f"{t:>12.2f} [{max(trn[k]):5.2f}]{100 * t * 3 * gflop_fwd / gemm:>7.1f}%"
        print(line)
    for label, data in (("inference", inf), ("training ", trn)):
        if not data["swinlab"]:
            continue
        for other in [k for k in data if k != "swinlab" and k != "swinlab-compiled" and data[k]]:
            ratios = [a / b for a, b in zip(data["swinlab"], data[other])]
            print(f"{label} swinlab / {other}: median of per-repeat ratios {statistics.median(ratios):.2f}x, "
                  f"best / best {max(data['swinlab']) / max(data[other]):.2f}x "
                  f"(per repeat: {', '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
