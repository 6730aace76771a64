"""int8 (ONNX Runtime dynamic quantization of the Linear layers) against fp32.

Part 1, accuracy: a swinlab-trained model (``--source RUN_DIR``) on the
Tiny ImageNet val split (all 10,000 images unless ``--max-images``): top-1 of
eager fp32 PyTorch and of the int8 ONNX model (``swinlab.export``), the
fraction of images where both predict the same class (top-1 agreement) and
the accuracy delta. Both see exactly the same preprocessed batches.

Part 2, speed: Swin-T (``swin_tiny_patch4_window7_224``, random weights) at
224 px, batch 16: images/s of eager fp32 PyTorch, ONNX Runtime fp32 and ONNX
Runtime int8, timed in turns in this one process (medians of ``--repeats``
rounds of ``--iters`` calls); the ratios to eager are the figures to quote.
The CPU ISA (``torch.backends.cpu.get_cpu_capability``) and the fp32 GEMM
speed of this process are printed with them.

Run on an idle machine:

    python benchmarks/bench_int8.py --source runs/main --threads 2 --json-out runs/bench_int8.json

Quick check that it works (seconds):

    python benchmarks/bench_int8.py --source RUN --max-images 200 --speed-model swin_micro_patch4_window4_64 --iters 2 --repeats 1
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from swinlab.data import build_dataset, build_loader
from swinlab.export import OnnxRuntimeModel
from swinlab.export.benchmark import gemm_gflops
from swinlab.inference.loading import eval_transform_for, load_model
from swinlab.models.flops import count_macs


def _data_root(arg: str | None) -> str | None:
    if arg:
        return arg
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-imagenet-200.zip"
    return str(shared) if shared.is_file() else None


def calibration_set(args: argparse.Namespace, info) -> torch.Tensor | None:
    """For ``--int8-scheme per-token``: ``--calibration-images`` images drawn
    at random (seed 0) from the Tiny ImageNet *train* split, preprocessed as
    for evaluation (the agreement is measured on the val split)."""
    if args.int8_scheme != "per-token":
        return None
    train = build_dataset("tiny-imagenet", root=_data_root(args.data), split="train", transform=eval_transform_for(info))
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: args.calibration_images]
    return torch.stack([train[int(i)][0] for i in pick])


def accuracy_part(args: argparse.Namespace) -> dict:
    model, info = load_model(args.source, device="cpu")
    int8 = OnnxRuntimeModel.from_model(model, info, int8=True, threads=args.threads, int8_scheme=args.int8_scheme,
                                       calibration=calibration_set(args, info))
    dataset = build_dataset("tiny-imagenet", root=_data_root(args.data), split="val", transform=eval_transform_for(info))
    if info.classes and list(dataset.classes) != list(info.classes):
        sys.exit("the model's class order differs from the data set's: not a Tiny ImageNet model?")
    if args.max_images:
        dataset = torch.utils.data.Subset(dataset, range(min(args.max_images, len(dataset))))
    loader = build_loader(dataset, args.batch_size, shuffle=False, num_workers=args.num_workers)
    n = fp32_hits = int8_hits = agree = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x, y in loader:
            p32 = model(x).argmax(1)
            p8 = int8(x).argmax(1)
            n += len(y)
            fp32_hits += int((p32 == y).sum())
            int8_hits += int((p8 == y).sum())
            agree += int((p32 == p8).sum())
    return {
        "source": str(args.source), "model": info.model_name, "images": n,
        "top1_fp32": 100 * fp32_hits / n, "top1_int8": 100 * int8_hits / n,
        "top1_delta_points": 100 * (int8_hits - fp32_hits) / n, "top1_agreement": 100 * agree / n,
        "seconds": time.perf_counter() - t0,
    }


def speed_part(args: argparse.Namespace) -> dict:
    gc.collect()  # the accuracy part's sessions and tensors go before timing
    model, info = load_model(args.speed_model, device="cpu")
    s = info.img_size
    runners = {
        "eager_fp32": model,
        "onnxruntime_fp32": OnnxRuntimeModel.from_model(model, info, threads=args.threads),
        "onnxruntime_int8": OnnxRuntimeModel.from_model(model, info, int8=True, threads=args.threads,
                                                        int8_scheme=args.int8_scheme),
    }
    x = torch.randn(args.speed_batch, 3, s, s, generator=torch.Generator().manual_seed(0))
    per_round: dict[str, list[float]] = {k: [] for k in runners}
    with torch.inference_mode():
        for fn in runners.values():  # warm-up
            fn(x)
        for _ in range(args.repeats):
            for name, fn in runners.items():  # in turns, so drift hits all alike
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    fn(x)
                per_round[name].append(args.iters * args.speed_batch / (time.perf_counter() - t0))
    ips = {k: statistics.median(v) for k, v in per_round.items()}
    gemm = gemm_gflops()
    gflop = 2 * count_macs(model, (3, s, s)) / 1e9
    return {
        "model": info.model_name, "img_size": s, "batch": args.speed_batch, "iters": args.iters,
        "repeats": args.repeats, "images_per_s": ips, "images_per_s_per_round": per_round,
        "ratio_int8_vs_eager": ips["onnxruntime_int8"] / ips["eager_fp32"],
        "ratio_ort_fp32_vs_eager": ips["onnxruntime_fp32"] / ips["eager_fp32"],
        "gemm_gflops": gemm, "gflop_per_image": gflop,
        "eager_fraction_of_gemm_peak": ips["eager_fp32"] * gflop / gemm,
    }


def write_json(path: str | None, out: dict) -> None:
    """Write ``out`` as JSON to ``path`` (``--json-out``; nothing when None); shared with ``bench_runtimes.py``."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {path}")


def add_source_args(p: argparse.ArgumentParser) -> None:
    """``--source``, ``--data``, ``--max-images`` (shared with ``bench_int8_schemes.py``)."""
    p.add_argument("--source", required=True, help="swinlab run folder / checkpoint trained on Tiny ImageNet")
    p.add_argument("--data", help="Tiny ImageNet zip or folder (default: ../shared/data/tiny-imagenet-200.zip)")
    p.add_argument("--max-images", type=int, help="first N val images only (default: all 10,000)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_source_args(p)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--speed-model", default="swin_tiny_patch4_window7_224")
    p.add_argument("--speed-batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=5, help="calls per timed round (default: 5)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per runtime (default: 5)")
    p.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: torch's)")
    p.add_argument("--int8-scheme", choices=("dynamic", "blockwise", "per-token"), default="dynamic",
                   help="int8 scheme of swinlab.export (default: dynamic, what --int8 ships)")
    p.add_argument("--calibration-images", type=int, default=512,
                   help="per-token: training images for GPTQ (default: 512; the speed part's random-weight "
                        "Swin-T rounds to nearest: the same graph)")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--json-out", help="also write the figures as JSON")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
           "threads": torch.get_num_threads()}
    print(f"CPU ISA: {out['cpu_capability']}, torch {out['torch']}, {out['threads']} thread(s)")
    acc = out["accuracy"] = accuracy_part(args)
    print(f"accuracy ({acc['images']} Tiny ImageNet val images, {acc['model']} from {acc['source']}, "
          f"int8 scheme {args.int8_scheme}):")
    print(f"  top-1 fp32 {acc['top1_fp32']:.2f}%  int8 {acc['top1_int8']:.2f}%  delta {acc['top1_delta_points']:+.2f} "
          f"points  top-1 agreement {acc['top1_agreement']:.2f}%  ({acc['seconds']:.0f} s)")
    if not args.skip_speed:
        sp = out["speed"] = speed_part(args)
        print(f"speed ({sp['model']} {sp['img_size']} px, batch {sp['batch']}, medians of {sp['repeats']} rounds; "
              f"CPU ISA {out['cpu_capability']}):")
        for name, v in sp["images_per_s"].items():
            print(f"  {name:<18} {v:8.2f} images/s  ({v / sp['images_per_s']['eager_fp32']:.2f}x eager)")
        print(f"  fp32 GEMM peak {sp['gemm_gflops']:.0f} GFLOP/s; eager reaches {100 * sp['eager_fraction_of_gemm_peak']:.0f}%")
    write_json(args.json_out, out)


if __name__ == "__main__":
    main()
