"""Why int8 agreement stops near 98%: quantization schemes compared (a script, not a test).

For a swinlab-trained model (``--source RUN_DIR``) on the Tiny ImageNet val
split, the top-1 agreement with eager fp32 PyTorch of

* ``dynamic``: what ``swinlab export --int8`` ships (ONNX Runtime
  ``quantize_dynamic`` of every weight MatMul: int8 weights with one scale
  per tensor, activations quantized per tensor at run time);
* ``dynamic-per-channel``: the same with one weight scale per output channel;
* ``only:GROUP``: dynamic quantization of one group of layers (qkv, proj,
  fc1, fc2, patch-merging reduction), the others fp32 -- each group's share;
* ``blockwise``: ``swinlab export --int8 --int8-scheme blockwise``, 8-bit
  weights in blocks of 32 along K with ONNX Runtime's ``MatMulNBits``
  (``accuracy_level=4``: activations quantized in blocks of 32 along K as
  well);
* ``bf16``: eager PyTorch under bf16 autocast (no int8 at all), a yardstick
  for how many predictions any 8-bit-mantissa arithmetic flips;

and the share of images whose two highest fp32 logits lie within 0.01, 0.03
and 0.1 of each other (near ties that any rounding can flip). Then the speed
of ``dynamic`` and ``blockwise`` against eager fp32 on Swin-T 224 (random
weights), batch 16, timed in turns in this process.

Usage (idle machine, ~3 min)::

    python benchmarks/bench_int8_schemes.py --source runs/main --threads 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from bench_int8 import _data_root, add_source_args
from swinlab.data import build_dataset, build_loader
from swinlab.export.onnx_export import quantize_int8, torch_to_onnx
from swinlab.export.runtime import open_session
from swinlab.inference.loading import eval_transform_for, load_model

GROUPS = ("attn/qkv", "attn/proj", "mlp/fc1", "mlp/fc2", "downsample/reduction")


def quantize(src: Path, dst: Path, scheme: str, only: str | None = None) -> Path:
    """Write ``src`` quantized with ``scheme`` to ``dst``: swinlab's own
    schemes through :func:`swinlab.export.onnx_export.quantize_int8`, the
    variants (per-channel, one layer group only) with ``quantize_dynamic``."""
    if scheme in ("dynamic", "blockwise") and only is None:
        return quantize_int8(src, dst, scheme)
    graph = onnx.load(src).graph
    weights = {i.name for i in graph.initializer}
    matmuls = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    exclude = [n for n in matmuls if only and only not in n]
    quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                     per_channel=scheme == "dynamic-per-channel", nodes_to_exclude=exclude,
                     extra_options={"MatMulConstBOnly": True})
    return dst


def ort_argmax(path: Path, images: torch.Tensor, threads: int, batch: int = 500) -> torch.Tensor:
    session = open_session(path, threads)
    name = session.get_inputs()[0].name
    return torch.cat([torch.from_numpy(session.run(None, {name: images[i:i + batch].numpy()})[0]).argmax(1)
                      for i in range(0, len(images), batch)])


def agreement_part(args: argparse.Namespace, tmp: Path) -> None:
    model, info = load_model(args.source, device="cpu")
    dataset = build_dataset("tiny-imagenet", root=_data_root(args.data), split="val", transform=eval_transform_for(info))
    if args.max_images:
        dataset = torch.utils.data.Subset(dataset, range(min(args.max_images, len(dataset))))
    pairs = list(build_loader(dataset, 500, shuffle=False, num_workers=0))
    images, labels = torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])
    with torch.inference_mode():
        logits = torch.cat([model(images[i:i + 500]) for i in range(0, len(images), 500)])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = torch.cat([model(images[i:i + 500]).float().argmax(1) for i in range(0, len(images), 500)])
    fp32 = logits.argmax(1)
    print(f"{len(images)} val images, {info.model_name}, fp32 top-1 {100 * (fp32 == labels).float().mean():.2f}%")
    top2 = logits.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    print("near ties (top-2 logit gap): " + ", ".join(
        f"< {eps}: {100 * (margin < eps).float().mean():.2f}%" for eps in (0.01, 0.03, 0.1)))
    src = torch_to_onnx(model, tmp / "fp32.onnx", (info.img_size, info.img_size))
    runs = [("dynamic", None), ("dynamic-per-channel", None), ("blockwise", None)]
    runs += [("dynamic", group) for group in GROUPS]
    results = [("bf16 autocast (eager)", bf16)]
    for scheme, only in runs:
        path = quantize(src, tmp / "q.onnx", scheme, only)
        results.append((f"{scheme}" + (f" only:{only}" if only else ""), ort_argmax(path, images, args.threads)))
    for tag, pred in results:
        print(f"  {tag:<36} agreement {100 * (pred == fp32).float().mean():6.2f}%   "
              f"top-1 {100 * (pred == labels).float().mean():.2f}%")


def time_in_turns(runners: dict, repeats: int, iters: int, batch: int = 16) -> dict[str, float]:
    """Median images/s of each runner (a no-argument call running one batch),
    timed in turns (``repeats`` rounds of ``iters`` calls) after one warm-up call each."""
    rates: dict[str, list[float]] = {k: [] for k in runners}
    with torch.inference_mode():
        for fn in runners.values():
            fn()
        for _ in range(repeats):
            for name, fn in runners.items():
                t0 = time.perf_counter()
                for _ in range(iters):
                    fn()
                rates[name].append(batch * iters / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in rates.items()}


def print_rates(rates: dict[str, float], header: str, base: str = "eager fp32") -> None:
    print(header)
    for name, r in rates.items():
        print(f"  {name:<15} {r:7.2f} images/s  ({r / rates[base]:.2f}x {base})")


def speed_part(args: argparse.Namespace, tmp: Path) -> None:
    model, info = load_model(args.speed_model, device="cpu")
    src = torch_to_onnx(model, tmp / "speed.onnx", (info.img_size, info.img_size))
    x = torch.randn(16, 3, info.img_size, info.img_size, generator=torch.Generator().manual_seed(0))
    runners = {"eager fp32": lambda: model(x)}
    for scheme in ("dynamic", "blockwise"):
        session = open_session(quantize(src, tmp / f"speed-{scheme}.onnx", scheme), args.threads)
        runners[scheme] = lambda s=session: s.run(None, {s.get_inputs()[0].name: x.numpy()})
    rates = time_in_turns(runners, args.repeats, args.iters)
    print_rates(rates, f"speed, {info.model_name} {info.img_size} px, batch 16, medians of {args.repeats} rounds:")


def add_speed_args(p: argparse.ArgumentParser, iters: int, repeats: int) -> None:
    """``--threads``, ``--speed-model``, ``--iters``, ``--repeats``, ``--skip-speed``
    (shared with ``bench_int8_finer.py``)."""
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--speed-model", default="swin_tiny_patch4_window7_224")
    p.add_argument("--iters", type=int, default=iters, help="calls per timed round")
    p.add_argument("--repeats", type=int, default=repeats, help="timed rounds per runtime")
    p.add_argument("--skip-speed", action="store_true")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_source_args(p)
    add_speed_args(p, iters=3, repeats=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)  # the quantizers' advice on the root logger
    print(f"CPU ISA: {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {args.threads} thread(s)")
    with tempfile.TemporaryDirectory(prefix="swinlab-int8-") as tmp:
        agreement_part(args, Path(tmp))
        if not args.skip_speed:
            speed_part(args, Path(tmp))


if __name__ == "__main__":
    main()
