"""Throughput of the data pipeline: JPEG decode from the Tiny ImageNet zip and BatchAugment.

Prints images/s for
  * decode from the zip, single-threaded (``dataset[i]``) and with a 2-thread pool
    (``ImageDataset.verify``-style parallel decode, as the cache build uses);
  * indexing the in-memory cache + collate (what later epochs cost with ``cache=True``);
  * BatchAugment with the quick recipe (img 64, random resized crop, flip, Mixup/CutMix,
    label smoothing), with and without RandAugment 2/9, and EvalTransform;
all on CPU with ``torch.set_num_threads(2)``.

Usage: python benchmarks/bench_data_pipeline.py [--zip PATH] [--n 3000] [--batch 128]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from swinlab.data import AugmentConfig, BatchAugment, EvalTransform, build_dataset, collate_images


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10.0f} img/s  ({n} images in {seconds:.2f} s)"


def bench_decode(zip_path: Path, n: int) -> None:
    ds = build_dataset("tiny-imagenet", zip_path, "train")
    step = max(1, len(ds) // n)
    idx = list(range(0, len(ds), step))[:n]
    ds[idx[0]]  # open the zip handle
    t = time.perf_counter()
    for i in idx:
        ds.get_image(i)
    print(f"decode from zip, 1 thread      : {_rate(len(idx), time.perf_counter() - t)}")

    from concurrent.futures import ThreadPoolExecutor

    t = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:  # (map's chunksize has no effect on a thread pool)
        list(pool.map(ds.get_image, idx))
    print(f"decode from zip, 2 threads     : {_rate(len(idx), time.perf_counter() - t)}")

    sub = build_dataset("tiny-imagenet", zip_path, "val", num_classes=40)  # 2,000 images
    t = time.perf_counter()
    sub.build_cache(num_threads=2)
    print(f"cache build (val, 40 cls), 2 thr: {_rate(len(sub), time.perf_counter() - t)}")
    t = time.perf_counter()
    for s in range(0, len(sub), 128):
        collate_images([sub[i] for i in range(s, min(s + 128, len(sub)))])
    print(f"cached index + collate         : {_rate(len(sub), time.perf_counter() - t)}")


def bench_augment(batch: int, iters: int) -> None:
    x = torch.randint(0, 256, (batch, 3, 64, 64), dtype=torch.uint8)
    y = torch.randint(0, 200, (batch,))
    recipes = {
        "quick (RRC+flip+mixup/cutmix+LS)": AugmentConfig(
            img_size=64, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1
        ),
        "quick + RandAugment 2/9": AugmentConfig(
            img_size=64, randaugment_n=2, randaugment_m=9, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1
        ),
        "full Swin-like (+RA, erasing .25)": AugmentConfig(
            img_size=64, randaugment_n=2, randaugment_m=9, random_erasing=0.25, mixup_alpha=0.8, cutmix_alpha=1.0,
            label_smoothing=0.1,
        ),
    }
    for name, cfg in recipes.items():
        aug = BatchAugment(cfg, 200)
        aug(x, y)  # warm-up
        t = time.perf_counter()
        for _ in range(iters):
            aug(x, y)
        print(f"BatchAugment {name:34s}: {_rate(batch * iters, time.perf_counter() - t)}")
    ev = EvalTransform(AugmentConfig(img_size=64))
    ev(x)
    t = time.perf_counter()
    for _ in range(iters):
        ev(x)
    print(f"EvalTransform (64 -> 73 -> crop 64)             : {_rate(batch * iters, time.perf_counter() - t)}")


def main() -> None:
    default_zip = Path(os.environ.get("SWINLAB_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zip", type=Path, default=default_zip / "data" / "tiny-imagenet-200.zip")
    p.add_argument("--n", type=int, default=3000, help="images to decode")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPUs usable {len(os.sched_getaffinity(0))}")
    if args.zip.is_file():
        bench_decode(args.zip, args.n)
    else:
        print(f"(no zip at {args.zip}: decode benchmark skipped)")
    bench_augment(args.batch, args.iters)


if __name__ == "__main__":
    main()
