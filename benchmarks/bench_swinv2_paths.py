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

Usage::

    python benchmarks/bench_swinv2_paths.py                 # batch 8, 5 repeats of 2 batches
    python benchmarks/bench_swinv2_paths.py --batch 16 --repeats 3
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="swinv2_tiny_window8_256")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--iters", type=int, default=2, help="batches timed per repeat")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
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
