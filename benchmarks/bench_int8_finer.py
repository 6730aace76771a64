"""Finer-grained int8 than ONNX Runtime's dynamic scheme: would it reach 99%
top-1 agreement, and at what speed? (a script, not a test)

Part 1, agreement, simulated in eager PyTorch ("fake quantization": every
Linear but the head sees its input and weight rounded to an int8 grid and
back, in fp32). For a swinlab-trained model (``--source``) on the Tiny
ImageNet val split, top-1 agreement with fp32 of

* weights only, activations only, and both, for
  - activations per tensor (asymmetric uint8: what ONNX Runtime's
    ``DynamicQuantizeLinear`` does) or per token (one symmetric scale per row);
  - weights per tensor or per output channel, rounded to nearest, or per
    output channel with GPTQ (Frantar et al. 2023: columns rounded one at a
    time, the error spread onto the columns not yet rounded through the
    inverse Hessian of ``--calibration`` training images; each row's
    largest weight kept exact so that it still sets the row's scale).

Part 2, speed: swinlab's ``"per-token"`` int8 graph
(:mod:`swinlab.export.per_token`: activations per token, int8 GEMM through
ONNX Runtime's MatMulIntegerToFloat) against eager fp32 and against the
``"dynamic"`` scheme, Swin-T 224 batch 16 (random weights, so rounded to
nearest: the same graph as with GPTQ), timed in turns in this process.

Usage (idle machine, ~5 min)::

    python benchmarks/bench_int8_finer.py --source runs/main --threads 2
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from bench_int8 import _data_root, add_source_args
from bench_int8_schemes import add_speed_args, print_rates, time_in_turns
from swinlab.data import build_dataset, build_loader
from swinlab.export.onnx_export import quantize_int8, torch_to_onnx
from swinlab.export.per_token import gptq_int8, linear_hessians, nearest_int8
from swinlab.export.runtime import open_session
from swinlab.inference.loading import eval_transform_for, load_model
from swinlab.models import fast as L


def fake_quant_weight(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """``w`` (N, K) rounded to symmetric int8 (scale max|w| / 127) and back."""
    if per_channel:
        q, scale = nearest_int8(w)
        return torch.from_numpy(q).float() * torch.from_numpy(scale)[:, None]
    s = w.abs().max() / 127
    return (w / s).round().clamp(-127, 127) * s


def gptq_weight(w: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """``w`` (N, K) rounded by swinlab's GPTQ (:func:`swinlab.export.per_token.gptq_int8`) and back."""
    q, scale = gptq_int8(w, hessian)
    return torch.from_numpy(q).float() * torch.from_numpy(scale)[:, None]


def fake_quant_act(x: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "tensor":
        lo, hi = x.min().clamp(max=0), x.max().clamp(min=0)
        s = ((hi - lo) / 255).clamp(min=1e-12)
        zp = (-lo / s).round()
        return ((x / s).round() + zp).clamp(0, 255).sub(zp) * s
    s = x.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127
    return (x / s).round().clamp(-127, 127) * s


def agreement_part(args: argparse.Namespace) -> None:
    # whole-map fc1/fc2 calls: the per-tensor fake quantisation in the hooks below needs the whole map
    model, info = load_model(args.source, device="cpu", speed=L.SpeedOptions(blocked_mlp_inference=False))
    root = _data_root(args.data)
    val = build_dataset("tiny-imagenet", root=root, split="val", transform=eval_transform_for(info))
    if args.max_images:
        val = torch.utils.data.Subset(val, range(min(args.max_images, len(val))))
    pairs = list(build_loader(val, 500, shuffle=False, num_workers=0))
    images, labels = torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])
    train = build_dataset("tiny-imagenet", root=root, split="train", transform=eval_transform_for(info))
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: args.calibration]
    calib = torch.stack([train[int(i)][0] for i in pick])

    def predict() -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([model(images[i:i + 500]) for i in range(0, len(images), 500)]).argmax(1)

    fp32 = predict()
    print(f"{len(images)} val images, {info.model_name}, fp32 top-1 {100 * (fp32 == labels).float().mean():.2f}%")
    linears = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.startswith("head")]
    original = {m: m.weight.detach().clone() for m in linears}
    hessians = linear_hessians(model, calib)
    weights = {"fp32": dict(original),
               "per-tensor": {m: fake_quant_weight(w, False) for m, w in original.items()},
               "per-channel": {m: fake_quant_weight(w, True) for m, w in original.items()},
               "per-channel GPTQ": {m: gptq_weight(w, hessians[m]) for m, w in original.items()}}
    runs = [("per-tensor", "fp32"), ("per-channel", "fp32"), ("per-channel GPTQ", "fp32"),
            ("fp32", "tensor"), ("fp32", "token"),
            ("per-tensor", "tensor"), ("per-channel", "tensor"), ("per-channel GPTQ", "tensor"),
            ("per-channel", "token"), ("per-channel GPTQ", "token")]
    print(f"simulated int8 (calibration: {len(calib)} training images for GPTQ)")
    for wkey, act in runs:
        for m in linears:
            m.weight.data.copy_(weights[wkey][m])
        hooks = [] if act == "fp32" else [
            m.register_forward_pre_hook(lambda mod, a, act=act: (fake_quant_act(a[0], act),)) for m in linears]
        pred = predict()
        for h in hooks:
            h.remove()
        print(f"  weights {wkey:<17} activations {act:<7} agreement {100 * (pred == fp32).float().mean():6.2f}%"
              f"   top-1 {100 * (pred == labels).float().mean():.2f}%")
    for m in linears:
        m.weight.data.copy_(original[m])


def speed_part(args: argparse.Namespace, tmp: Path) -> None:
    model, info = load_model(args.speed_model, device="cpu")
    src = torch_to_onnx(model, tmp / "speed.onnx", (info.img_size, info.img_size))
    x = torch.randn(16, 3, info.img_size, info.img_size, generator=torch.Generator().manual_seed(0))
    runners = {"eager fp32": lambda: model(x)}
    for name, path in (("dynamic int8", quantize_int8(src, tmp / "dynamic.onnx", "dynamic")),
                       ("per-token int8", quantize_int8(src, tmp / "per-token.onnx", "per-token", model))):
        session = open_session(path, args.threads)
        runners[name] = lambda s=session: s.run(None, {s.get_inputs()[0].name: x.numpy()})
    with torch.inference_mode():
        diff = np.abs(runners["per-token int8"]()[0] - model(x).numpy()).max()
    rates = time_in_turns(runners, args.repeats, args.iters)
    print_rates(rates, f"speed, {info.model_name} {info.img_size} px, batch 16, medians of {args.repeats} rounds "
                       f"(per-token graph: max abs logit difference to eager {diff:.3g}):")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_source_args(p)
    add_speed_args(p, iters=2, repeats=3)
    p.add_argument("--calibration", type=int, default=512, help="training images for GPTQ's Hessians")
    args = p.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(args.threads)
    print(f"CPU ISA {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {args.threads} threads")
    agreement_part(args)
    if not args.skip_speed:
        with tempfile.TemporaryDirectory() as tmp:
            speed_part(args, Path(tmp))


if __name__ == "__main__":
    main()
