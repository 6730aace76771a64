"""CPU inference speed of SwinV2-T's speed paths (a script, not a test).

SwinV2-T (``swinv2_tiny_window8_256``, random weights, eval mode,
``torch.inference_mode``) at 256 px, in one process, the variants taking
turns every repeat (median images/s over repeats, and the ratio to the plain
formulation):

* ``plain``: ``SpeedOptions.plain()`` -- explicit cosine attention, the
  position-bias MLP on every forward, ``torch.roll`` + reshape;
* ``fused``: plain + ``fused_attn`` (cosine attention through
  ``scaled_dot_product_attention``: q, k normalised, ``exp(logit_scale)``
  folded into q, bias + shift mask as one additive mask);
* ``cached``: plain + ``cached_position_bias`` (the 2 -> 512 -> heads MLP's
  ``16 * sigmoid`` table kept between calls);
* ``default``: ``SpeedOptions()``, every path on.

The four models hold the same weights; the script first checks that their
logits agree (max |difference| printed). The CPU ISA is printed with the figures.

``--train``: the training step instead (train mode, forward, cross-entropy,
backward, ``torch.optim.AdamW``; ``--bf16``: under bf16 autocast) of
``default`` against ``default`` without ``cosine_logits_function`` (the
logits' written-out backward), taking turns one step at a time; printed:
the median step time of each and the median of the per-pair ratios.

Usage::

    python benchmarks/bench_swinv2_paths.py                 # batch 8, 5 repeats of 2 batches
    python benchmarks/bench_swinv2_paths.py --batch 16 --repeats 3
    python benchmarks/bench_swinv2_paths.py --train --batch 16 --repeats 12 [--bf16]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from swinlab import create_model
from swinlab.models.fast import SpeedOptions

VARIANTS = {
    "plain": SpeedOptions.plain(),
    "fused": dataclasses.replace(SpeedOptions.plain(), fused_attn=True),
    "cached": dataclasses.replace(SpeedOptions.plain(), cached_position_bias=True),
    "default": SpeedOptions(),
}


def build(name: str, speed: SpeedOptions, state: dict | None) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, drop_path_rate=0.0, speed=speed).eval()
    if state is not None:
        model.load_state_dict(state)
        return model
    with torch.no_grad():  # V2 starts its res-post-norms at zero (every block the identity): switch them on
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.1)
    return model


def train_steps(args: argparse.Namespace) -> int:
    """``--train``: per-pair step times of ``default`` and ``default`` without ``cosine_logits_function``."""
    variants = {"default": SpeedOptions(), "no_cosine_fn": SpeedOptions(cosine_logits_function=False)}
    models = {k: create_model(args.model, drop_path_rate=0.1, speed=v) for k, v in variants.items()}
    models["no_cosine_fn"].load_state_dict(models["default"].state_dict())
    size = models["default"].img_size
    x, y = torch.randn(args.batch, 3, *size), torch.randint(0, 1000, (args.batch,))
    dtype = torch.bfloat16 if args.bf16 else None
    print(f"{args.model} {size[0]}x{size[1]} batch {args.batch}, training step, "
          f"{'bf16 autocast' if dtype else 'fp32'}, {args.threads} threads, torch {torch.__version__}, "
          f"ISA {torch.backends.cpu.get_cpu_capability()}")
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}

    def step(k: str) -> float:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(models[k].train()(x).float(), y)
        opts[k].zero_grad(set_to_none=True)
        loss.backward()
        opts[k].step()
        return time.perf_counter() - t

    for k in models:
        step(k)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.repeats):
        for k in models:
            times[k].append(step(k))
    for k, ts in times.items():
        print(f"  {k:<13} median {statistics.median(ts):.3f} s per step")
    ratios = [b / a for a, b in zip(times["default"], times["no_cosine_fn"])]
    print(f"  default is {statistics.median(ratios):.3f}x as fast as without cosine_logits_function "
          f"(median of {len(ratios)} pairs)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="swinv2_tiny_window8_256")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--iters", type=int, default=2, help="batches timed per repeat")
    p.add_argument("--train", action="store_true", help="time the training step (see the docstring)")
    p.add_argument("--bf16", action="store_true", help="with --train: under bf16 autocast")
    args = p.parse_args(argv)
    if args.bf16 and not args.train:
        p.error("--bf16 times the training step: give --train too")
    torch.set_num_threads(args.threads)
    if args.train:
        return train_steps(args)
    models: dict[str, torch.nn.Module] = {}
    for label, speed in VARIANTS.items():
        models[label] = build(args.model, speed, models["plain"].state_dict() if models else None)
    size = models["plain"].img_size
    x = torch.randn(args.batch, 3, *size)
    print(f"{args.model} {size[0]}x{size[1]} batch {args.batch}, {args.threads} threads, "
          f"torch {torch.__version__}, ISA {torch.backends.cpu.get_cpu_capability()}")
    with torch.inference_mode():
        ref = models["plain"](x)
        for label, model in models.items():
            print(f"  {label:<8} max |logits - plain| = {(model(x) - ref).abs().max().item():.2e}")
        times: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(args.repeats):
            for label, model in models.items():
                t = time.perf_counter()
                for _ in range(args.iters):
                    model(x)
                times[label].append(args.batch * args.iters / (time.perf_counter() - t))
    base = statistics.median(times["plain"])
    for label, ips in times.items():
        med = statistics.median(ips)
        print(f"  {label:<8} {med:8.2f} images/s (best {max(ips):.2f})   x plain {med / base:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
