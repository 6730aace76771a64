"""Is the data pipeline the bottleneck of the quick recipe? Pipeline vs. training-step images/s.

In one process, with the recipe's settings (``configs/quick_cpu_tiny_imagenet.json`` by
default: batch 128, 64 px, RandomResizedCrop + flip + label smoothing, ``amp`` auto,
``num_workers`` 0, torch's default threads), on a subset of the Tiny ImageNet training set
(``--num-images``, the first classes):

1. decode from the zip:
   * the cache build (``cache=True``: every image decoded once into memory on a thread
     pool, what the first moments of a run cost), and
   * an uncached first epoch through the loader (``cache=False``: decode in
     ``__getitem__``, collate), on ``--uncached-images`` images;
2. the data pipeline: cached uint8 data set -> ``build_loader`` batch (shuffled) ->
   ``BatchAugment`` on the training device (everything the engine does before the model);
3. the training step: forward + soft-target cross-entropy + backward + gradient clipping +
   AdamW step (the engine's inner loop with the library's model, optimizer and loss) on
   already-augmented batches of the same shape, same autocast setting;

and prints images/s for each and the ratio pipeline / step (the pipeline must not be the
bottleneck: ratio > 1). With ``num_workers`` 0 the two run one after the other in a training
iteration, so the share of the iteration spent in the pipeline is also printed.

Usage:
    python benchmarks/bench_pipeline_vs_step.py --num-images 5000 --json-out runs/bench_pipeline_vs_step.json
    python benchmarks/bench_pipeline_vs_step.py --amp none --step-iters 10
    # smoke check (not a benchmark):
    python benchmarks/bench_pipeline_vs_step.py --num-images 1000 --step-iters 2 --uncached-images 256
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
IMAGES_PER_CLASS = 500  # Tiny ImageNet train


def rate(n: int, seconds: float) -> float:
    """Images per second (inf for a zero duration)."""
    return n / seconds if seconds > 0 else math.inf


def aug_config(cfg: Any) -> Any:
    """The run's :class:`swinlab.data.AugmentConfig` (``img_size`` defaults to the model's, as the engine)."""
    from swinlab.data import AugmentConfig
    from swinlab.models import get_model_spec

    aug = dict(cfg.aug)
    if "img_size" not in aug:
        size = cfg.model_overrides.get("img_size", get_model_spec(cfg.model).kwargs.get("img_size", 224))
        aug["img_size"] = int(size[0] if isinstance(size, (list, tuple)) else size)
    return AugmentConfig.from_dict(aug)


def build_model(cfg: Any, num_classes: int, img_size: int) -> torch.nn.Module:
    """The recipe's model (random init), sized as the engine sizes it."""
    from swinlab import create_model
    from swinlab.models import get_model_spec

    kwargs = get_model_spec(cfg.model).kwargs
    overrides = dict(cfg.model_overrides)
    if "img_size" not in overrides and kwargs.get("img_size") not in (None, img_size) and "resize_to" not in kwargs:
        overrides["img_size"] = img_size
    dpr = cfg.drop_path_rate if cfg.drop_path_rate is not None else overrides.pop("drop_path_rate", None)
    overrides.pop("drop_path_rate", None)
    return create_model(cfg.model, num_classes=num_classes, drop_path_rate=dpr, **overrides)


def bench_decode(cfg: Any, root: str | None, num_classes: int, uncached: int) -> tuple[Any, dict[str, Any]]:
    """Cache build (thread pool) and an uncached loader pass; returns the cached data set."""
    from swinlab.data import build_dataset, build_loader
    from swinlab.data.base import default_num_threads

    out: dict[str, Any] = {}
    if uncached > 0:
        ds = build_dataset(cfg.data, root, split="train", num_classes=num_classes)
        step = max(1, len(ds) // uncached)
        idx = list(range(0, len(ds), step))[:uncached]
        loader = build_loader(torch.utils.data.Subset(ds, idx), cfg.batch_size, shuffle=False,
                              num_workers=cfg.num_workers, seed=cfg.seed)
        ds.get_image(0)  # open the archive
        t = time.perf_counter()
        n = sum(int(images.shape[0]) for images, _ in loader)
        out["uncached_loader"] = {"images": n, "seconds": time.perf_counter() - t, "num_workers": cfg.num_workers}
        out["uncached_loader"]["images_per_s"] = rate(n, out["uncached_loader"]["seconds"])
        del ds, loader
    t = time.perf_counter()
    ds = build_dataset(cfg.data, root, split="train", num_classes=num_classes)
    t_index = time.perf_counter() - t
    t = time.perf_counter()
    ds.build_cache()
    secs = time.perf_counter() - t
    out["cache_build"] = {"images": len(ds), "seconds": secs, "images_per_s": rate(len(ds), secs),
                          "threads": default_num_threads(), "index_seconds": t_index}
    return ds, out


def bench_pipeline(ds: Any, cfg: Any, batch_aug: Any, device: torch.device, epochs: int,
                   keep: int) -> tuple[dict[str, Any], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Cached data set -> loader -> BatchAugment, full passes; also returns ``keep`` augmented batches."""
    from swinlab.data import build_loader

    kept: list[tuple[torch.Tensor, torch.Tensor]] = []
    warm = build_loader(ds, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, seed=cfg.seed, epoch=99,
                        drop_last=True)
    for i, (images, targets) in enumerate(warm):  # warm-up (kornia / allocator) and the kept batches
        x, soft = batch_aug(images.to(device), targets.to(device))
        kept.append((x, soft))
        if len(kept) >= max(keep, 2):
            break
    n, t0 = 0, time.perf_counter()
    t_load = t_aug = 0.0
    for epoch in range(epochs):
        loader = build_loader(ds, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, seed=cfg.seed,
                              epoch=epoch, drop_last=True)
        t = time.perf_counter()
        for images, targets in loader:
            t1 = time.perf_counter()
            t_load += t1 - t
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            x, soft = batch_aug(images, targets)
            n += int(x.shape[0])
            t = time.perf_counter()
            t_aug += t - t1
    secs = time.perf_counter() - t0
    res = {"images": n, "seconds": secs, "images_per_s": rate(n, secs), "epochs": epochs,
           "loader_images_per_s": rate(n, t_load), "augment_images_per_s": rate(n, t_aug)}
    return res, kept[:keep]


def bench_step(cfg: Any, model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
               amp_dtype: torch.dtype | None, device: torch.device, iters: int, warmup: int) -> dict[str, Any]:
    """Forward + loss + backward + clip + AdamW step on pre-augmented batches (the engine's inner loop)."""
    from swinlab.training.engine import soft_target_cross_entropy
    from swinlab.training.optim import build_optimizer

    model.train()
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps, cfg.layer_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    def step(x: torch.Tensor, soft: torch.Tensor) -> float:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            logits = model(x)
        loss = soft_target_cross_entropy(logits.float(), soft.float())
        scaler.scale(loss).backward()
        if cfg.clip_grad is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())  # the engine syncs on the loss every step too

    for i in range(warmup):
        step(*batches[i % len(batches)])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    n, t0 = 0, time.perf_counter()
    for i in range(iters):
        x, soft = batches[i % len(batches)]
        step(x, soft)
        n += int(x.shape[0])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    secs = time.perf_counter() - t0
    return {"images": n, "seconds": secs, "images_per_s": rate(n, secs), "iters": iters, "warmup": warmup}


def main(argv: list[str] | None = None) -> int:
    """Decode, pipeline and training-step throughput of the recipe; print / save the figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "quick_cpu_tiny_imagenet.json"),
                   help="recipe (default: the quick recipe)")
    p.add_argument("--num-images", type=int, default=5000,
                   help="training images to cache (the first ceil(N/500) classes; default 5000)")
    p.add_argument("--uncached-images", type=int, default=2000,
                   help="images for the uncached first-epoch decode (0: skip; default 2000)")
    p.add_argument("--pipeline-epochs", type=int, default=2, help="passes over the subset (default 2)")
    p.add_argument("--step-iters", type=int, default=20, help="timed training steps (default 20)")
    p.add_argument("--warmup-iters", type=int, default=3, help="untimed training steps first (default 3)")
    p.add_argument("--amp", choices=("none", "bf16", "fp16", "auto"), help="default: the recipe's")
    p.add_argument("--device", default="cpu", help="default: cpu")
    p.add_argument("--threads", type=int, help="torch threads (default: the recipe's, else torch's)")
    p.add_argument("--batch-size", type=int, help="default: the recipe's")
    p.add_argument("--data-root", help="Tiny ImageNet zip/folder (default: swinlab's search)")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)

    from swinlab.data import BatchAugment, build_dataset
    from swinlab.training.config import apply_overrides, load_config
    from swinlab.training.engine import resolve_amp_dtype, seed_everything

    cfg = load_config(args.config)
    over: dict[str, Any] = {}
    for key, value in (("amp", args.amp), ("threads", args.threads), ("batch_size", args.batch_size)):
        if value is not None:
            over[key] = value
    cfg = apply_overrides(cfg, over)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = torch.device(args.device)
    amp_dtype = resolve_amp_dtype(cfg.amp, device)
    aug = aug_config(cfg)
    head = cfg.num_classes or build_dataset(cfg.data, args.data_root, split="train").num_classes
    k = max(1, min(head, math.ceil(args.num_images / IMAGES_PER_CLASS)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"amp {cfg.amp} -> {str(amp_dtype).replace('torch.', '') if amp_dtype else 'fp32'}; "
          f"recipe {Path(args.config).name}: model {cfg.model}, batch {cfg.batch_size}, img {aug.img_size}, "
          f"workers {cfg.num_workers}; subset: first {k} classes", flush=True)

    ds, decode = bench_decode(cfg, args.data_root, k, args.uncached_images)
    if len(ds) < 2 * cfg.batch_size:
        p.error(f"--num-images: {len(ds)} images make fewer than two batches of {cfg.batch_size}")
    batch_aug = BatchAugment(aug, head).to(device)
    pipe, batches = bench_pipeline(ds, cfg, batch_aug, device, args.pipeline_epochs, keep=4)
    model = build_model(cfg, head, aug.img_size).to(device)
    step = bench_step(cfg, model, batches, amp_dtype, device, args.step_iters, args.warmup_iters)

    ratio = pipe["images_per_s"] / step["images_per_s"]
    share = (1 / pipe["images_per_s"]) / (1 / pipe["images_per_s"] + 1 / step["images_per_s"])
    cache = decode["cache_build"]
    full = 100_000 + 10_000  # Tiny ImageNet train + val, decoded by a cache=True run
    print(f"\n{'stage':58s} {'images/s':>10s} {'images':>7s} {'s':>7s}")
    print("-" * 85)
    if "uncached_loader" in decode:
        u = decode["uncached_loader"]
        print(f"{'decode from zip, uncached loader (1st epoch, cache=False)':58s} {u['images_per_s']:10.0f} "
              f"{u['images']:7d} {u['seconds']:7.2f}")
    label = f"decode from zip, cache build ({cache['threads']} threads, cache=True)"
    print(f"{label:58s} "
          f"{cache['images_per_s']:10.0f} {cache['images']:7d} {cache['seconds']:7.2f}")
    print(f"{'pipeline: cached -> loader batch -> BatchAugment':58s} {pipe['images_per_s']:10.0f} "
          f"{pipe['images']:7d} {pipe['seconds']:7.2f}")
    print(f"{'  of which loader (index + collate)':58s} {pipe['loader_images_per_s']:10.0f}")
    print(f"{'  of which BatchAugment':58s} {pipe['augment_images_per_s']:10.0f}")
    print(f"{'train step: fwd + bwd + clip + AdamW (augmented batches)':58s} {step['images_per_s']:10.0f} "
          f"{step['images']:7d} {step['seconds']:7.2f}")
    verdict = "OK: the pipeline is not the bottleneck" if ratio > 1 else "the PIPELINE IS THE BOTTLENECK"
    print(f"\nratio pipeline / step: {ratio:.1f}  ({verdict})")
    print(f"pipeline share of a training iteration (workers=0, sequential): {100 * share:.1f}%")
    print(f"cache build of the full data set ({full} images) at this rate: ~{full / cache['images_per_s']:.0f} s "
          f"(counted in the time budget)")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        out = {"benchmark": "pipeline_vs_step", "config": args.config, "model": cfg.model,
               "batch_size": cfg.batch_size, "img_size": aug.img_size, "amp": cfg.amp,
               "amp_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else None,
               "threads": torch.get_num_threads(), "device": str(device), "num_workers": cfg.num_workers,
               "subset_classes": k, "torch": torch.__version__,
               "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "decode": decode, "pipeline": pipe, "step": step, "ratio_pipeline_over_step": ratio,
               "pipeline_share_of_iteration": share,
               "full_cache_build_s_estimate": full / cache["images_per_s"]}
        args.json_out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"\nJSON: {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
