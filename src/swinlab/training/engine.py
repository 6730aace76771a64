"""The training loop: :func:`train` runs a :class:`~swinlab.training.config.TrainConfig`.

Follows the official Swin training code (microsoft/Swin-Transformer
``main.py``: AdamW, per-iteration warmup + cosine schedule, mixup/cutmix soft
targets with ``SoftTargetCrossEntropy``, gradient clipping, gradient
accumulation, AMP with a loss scaler, validation top-1/top-5 every epoch,
``max_accuracy`` checkpointing, rank-0 logging under DDP) and reference 003
(AMP + GradScaler, clip 3.0, JSON logs of train_loss/train_acc/val_loss/
val_acc/lr).

Determinism: the loader order depends on ``(seed, epoch)`` only and the RNG
states are checkpointed at every epoch boundary, so a run stopped after
epoch k and resumed reproduces the uninterrupted run exactly (same loss
sequence and metrics) on one process with the same settings.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import data
from ..factory import create_model
from ..models import get_model_spec
from ..plots import plot_curves
from ..version import __version__
from . import checkpoint as ckpt_io
from .config import ConfigError, TrainConfig
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup_distributed, init_distributed, shard_indices
from .ema import ModelEma
from .evaluation import evaluate_model
from .logging import MetricsLogger
from .optim import build_optimizer, freeze_for_linear_probe, scaled_lr
from .schedule import WarmupCosineSchedule
from ..weights import save_pretrained

__all__ = ["train", "soft_target_cross_entropy", "seed_everything", "resolve_amp_dtype", "EpochCallback"]

EpochCallback = Callable[[int, dict[str, Any]], None]


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``sum_c -targets[b, c] * log_softmax(logits)[b, c]``.

    ``logits``, ``targets``: ``(B, C)``; targets are rows of class
    probabilities (mixup / cutmix / label smoothing). timm's
    ``SoftTargetCrossEntropy`` (used by the official Swin code).

    Raises:
        ValueError: shapes differ.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and soft targets {tuple(targets.shape)} differ in shape")
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


def _cpu_has_fast_bf16() -> bool:
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # noqa: BLE001 - a probe that fails means "unknown"
            pass
    return False


def resolve_amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``amp`` on ``device`` (None: full precision).

    ``auto``: float16 on CUDA (with a GradScaler); on CPU bfloat16 when the
    CPU has native bf16 matrix units (AMX or AVX512-BF16, where it is faster),
    else none.

    Raises:
        ValueError: ``fp16`` on a CPU, or an unknown mode.
    """
    if amp == "none":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError(f"amp='fp16' needs a CUDA device (got {device}); use amp='bf16' or 'none' on CPU")
        return torch.float16
    if amp == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if _cpu_has_fast_bf16() else None
    raise ValueError(f"amp={amp!r}: expected 'none', 'bf16', 'fp16' or 'auto'")


# ---------------------------------------------------------------------- setup
def _evaluate(model: nn.Module, loader: Any, eval_tf: Any, device: torch.device, amp_dtype: torch.dtype | None,
              max_batches: int | None, progress: bool, num_classes: int) -> dict[str, Any]:
    res = evaluate_model(model, loader, eval_tf, device=device, amp_dtype=amp_dtype, max_batches=max_batches,
                         progress=progress, num_classes=num_classes)
    return {"loss": float(res["loss"]), "top1": float(res["top1"]), "top5": float(res.get("top5", math.nan)),
            "num_images": int(res["num_images"])}


def _aug_dict(cfg: TrainConfig) -> dict[str, Any]:
    aug = dict(cfg.aug)
    if "img_size" not in aug:
        size = cfg.model_overrides.get("img_size", get_model_spec(cfg.model).kwargs.get("img_size", 224))
        aug["img_size"] = int(size[0] if isinstance(size, (list, tuple)) else size)
    return aug


def _build_model(cfg: TrainConfig, num_classes: int, img_size: int, load_pretrained: bool = True) -> nn.Module:
    spec_kwargs = get_model_spec(cfg.model).kwargs
    spec_size = spec_kwargs.get("img_size")
    overrides = dict(cfg.model_overrides)
    if "img_size" not in overrides and spec_size is not None and spec_size != img_size \
            and "resize_to" not in spec_kwargs:
        overrides["img_size"] = img_size
    if cfg.pretrained_required and not cfg.pretrained:
        raise ConfigError(f"this recipe fine-tunes pretrained weights: set pretrained (--pretrained SOURCE) "
                          f"for model {cfg.model!r}")
    if "num_classes" in overrides or "pretrained" in overrides:
        raise ConfigError("model_overrides may not set num_classes or pretrained; use the top-level keys "
                          "num_classes (keeps the first K classes of the data) and pretrained")
    dpr_override = overrides.pop("drop_path_rate", None)
    dpr = cfg.drop_path_rate if cfg.drop_path_rate is not None else dpr_override
    return create_model(cfg.model, num_classes=num_classes, drop_path_rate=dpr,
                        pretrained=(cfg.pretrained or None) if load_pretrained else None, **overrides)


def _train_loader(data: Any, ds: Any, cfg: TrainConfig, info: DistInfo, epoch: int) -> Any:
    if info.enabled:
        idx = shard_indices(len(ds), info, cfg.seed, epoch, shuffle=True)
        return data.build_loader(torch.utils.data.Subset(ds, idx), cfg.batch_size, shuffle=False,
                                 num_workers=cfg.num_workers, seed=cfg.seed, epoch=epoch, drop_last=True)
    return data.build_loader(ds, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, seed=cfg.seed,
                             epoch=epoch, drop_last=True)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _print(info: DistInfo, msg: str) -> None:
    if info.is_main:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- train
def train(config: TrainConfig | dict[str, Any], *, on_epoch_end: EpochCallback | None = None) -> dict[str, Any]:
    """Train (and evaluate) a model as ``config`` says; see the module docstring.

    Writes to the run directory (rank 0): ``config.json`` (resolved config),
    ``last.pt`` / ``best.pt`` (see :mod:`.checkpoint`), ``metrics.jsonl``,
    ``metrics.csv``, ``tb/`` (TensorBoard), ``curves.png`` and, with
    ``export``, ``export/`` (:func:`swinlab.weights.save_pretrained` of the
    best weights).

    Args:
        config: a :class:`TrainConfig` or a dict of its fields.
        on_epoch_end: called on rank 0 as ``on_epoch_end(epoch, record)`` after
            each epoch's checkpoint is written (epoch counted from 1).

    Returns:
        a summary dict: ``run_dir``, ``epochs_completed``, ``steps``,
        ``val_top1``, ``val_top5``, ``val_loss`` (last evaluation),
        ``ema_val_top1`` (when EMA), ``best_top1``, ``best_epoch``,
        ``images_per_s`` (training throughput over the run),
        ``train_time_s``, ``total_time_s``, ``stopped_by_time_budget``,
        ``step_losses`` (this invocation's per-step training losses),
        ``history`` (the epoch records), ``lr`` (the effective base lr),
        ``export_dir`` (or None).

    Raises:
        ConfigError: bad configuration. CheckpointError: a bad ``resume``.
        FloatingPointError: the loss became NaN/inf.
        ValueError / FileNotFoundError: from the data or model builders.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))
    cfg.validate()
    t_start = time.time()
    info = init_distributed(cfg.device)
    try:
        return _train(cfg, info, t_start, on_epoch_end)
    finally:
        cleanup_distributed()


def _train(cfg: TrainConfig, info: DistInfo, t_start: float, on_epoch_end: EpochCallback | None) -> dict[str, Any]:
    device = info.device
    amp_dtype = resolve_amp_dtype(cfg.amp, device)
    eval_dtype = amp_dtype if cfg.eval_amp else None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + info.rank)
    run_dir = cfg.run_dir

    resume_ckpt: dict[str, Any] | None = None
    if cfg.resume:
        resume_path = ckpt_io.resolve_resume_path(cfg.resume)
        resume_ckpt = ckpt_io.load_checkpoint(resume_path)
        if resume_ckpt.get("model_name") != cfg.model:
            raise ConfigError(f"--resume {resume_path}: checkpoint model {resume_ckpt.get('model_name')!r} "
                              f"differs from config model {cfg.model!r}")
        _print(info, f"resuming from {resume_path} (epoch {resume_ckpt['epoch']}, step {resume_ckpt['step']})")
    elif info.is_main and (run_dir / ckpt_io.LAST).exists() and not cfg.overwrite:
        raise ConfigError(f"run directory {run_dir} already holds a checkpoint; pass --resume {run_dir} to "
                          f"continue it, --overwrite to start over, or choose another --out")

    # ---- data
    try:
        aug_cfg = data.AugmentConfig.from_dict(_aug_dict(cfg))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"aug: {e}") from None
    load_size = cfg.load_size
    if load_size is None and cfg.data.lower() == "folder":
        load_size = math.ceil(aug_cfg.img_size / aug_cfg.eval_crop_ratio)
    resize = data.ResizeUint8(load_size, interpolation=aug_cfg.interpolation) if load_size else None
    ds_kwargs = dict(num_classes=cfg.num_classes, cache=cfg.cache, skip_corrupt=cfg.skip_corrupt, transform=resize)
    train_ds = data.build_dataset(cfg.data, cfg.data_root, split=cfg.train_split, **ds_kwargs)
    val_ds = data.build_dataset(cfg.data, cfg.data_root, split=cfg.val_split, **ds_kwargs)
    num_classes = int(train_ds.num_classes)
    class_names = [str(c) for c in getattr(train_ds, "class_names", None) or train_ds.classes]
    classes = [str(c) for c in train_ds.classes]
    batch_aug = data.BatchAugment(aug_cfg, num_classes)
    eval_tf = data.EvalTransform(aug_cfg)
    val_loader = data.build_loader(val_ds, cfg.eval_batch_size or cfg.batch_size, shuffle=False,
                                   num_workers=cfg.num_workers, seed=cfg.seed)
    _print(info, f"data {cfg.data}: {len(train_ds)} train / {len(val_ds)} val images, {num_classes} classes "
                 f"(ready in {time.time() - t_start:.1f}s)")

    # ---- model, optimizer, schedule
    model = _build_model(cfg, num_classes, aug_cfg.img_size, load_pretrained=resume_ckpt is None).to(device)
    report = getattr(model, "pretrained_report", None)
    if report is not None:
        _print(info, f"pretrained weights: {report}")
    if cfg.linear_probe:
        freeze_for_linear_probe(model)
    world = info.world_size
    global_batch = cfg.batch_size * cfg.accum_steps * world
    lr = scaled_lr(cfg.lr, global_batch, cfg.lr_scale_batch)
    min_lr = scaled_lr(cfg.min_lr, global_batch, cfg.lr_scale_batch)
    warmup_lr = scaled_lr(cfg.warmup_lr_init, global_batch, cfg.lr_scale_batch)
    optimizer = build_optimizer(model, lr, cfg.weight_decay, cfg.betas, cfg.eps, cfg.layer_decay)
    per_rank = len(train_ds) if not info.enabled else -(-len(train_ds) // world)
    n_batches = per_rank // cfg.batch_size
    if cfg.max_train_batches is not None:
        n_batches = min(n_batches, cfg.max_train_batches)
    steps_per_epoch = n_batches // cfg.accum_steps
    if steps_per_epoch < 1:
        raise ConfigError(f"{cfg.data}: {len(train_ds)} training images make no full step of batch_size="
                          f"{cfg.batch_size} x accum_steps={cfg.accum_steps} x world={world}")
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total_steps)
    scheduler = WarmupCosineSchedule(optimizer, lr, total_steps, warmup_steps, warmup_lr, min_lr,
                                     kind=cfg.lr_schedule)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay else None

    train_model: nn.Module = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]

    # ---- resume
    start_epoch, step, best_top1, best_epoch, elapsed_before = 0, 0, -1.0, 0, 0.0
    if resume_ckpt is not None:
        try:
            model.load_state_dict(resume_ckpt["model"])
            optimizer.load_state_dict(resume_ckpt["optimizer"])
            scheduler.load_state_dict(resume_ckpt["scheduler"])
            if resume_ckpt.get("scaler"):
                scaler.load_state_dict(resume_ckpt["scaler"])
            if ema is not None and resume_ckpt.get("ema"):
                ema.load_state_dict(resume_ckpt["ema"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise ckpt_io.CheckpointError(f"--resume {cfg.resume}: checkpoint does not fit this run: {e}") from e
        start_epoch = int(resume_ckpt["epoch"])
        step = int(resume_ckpt["step"])
        best_top1 = float(resume_ckpt.get("best_top1", -1.0))
        best_epoch = int(resume_ckpt.get("best_epoch", 0))
        elapsed_before = float(resume_ckpt.get("elapsed_s", 0.0))
        if scheduler.total_steps != total_steps:  # epochs changed on resume: extend the schedule
            scheduler.total_steps = total_steps

    resolved = cfg.to_dict()
    resolved["_resolved"] = {
        "lr": lr, "min_lr": min_lr, "warmup_lr_init": warmup_lr, "global_batch": global_batch,
        "world_size": world, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
        "warmup_steps": warmup_steps, "num_classes": num_classes, "device": str(device),
        "amp_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else None,
        "aug": aug_cfg.to_dict(), "swinlab_version": __version__,
        "num_params": sum(p.numel() for p in model.parameters()),
    }
    logger = None
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_ckpt is None:  # a fresh run: nothing of an earlier one may linger (--overwrite)
            for stale in (ckpt_io.LAST, ckpt_io.BEST, "curves.png"):
                (run_dir / stale).unlink(missing_ok=True)
            for stale_dir in ("tb", "export"):
                shutil.rmtree(run_dir / stale_dir, ignore_errors=True)
        _write_json(run_dir / "config.json", resolved)
        logger = MetricsLogger(run_dir, tensorboard=cfg.tensorboard,
                               keep_until_epoch=start_epoch if resume_ckpt is not None else None,
                               purge_step=start_epoch + 1 if resume_ckpt is not None else None)
    _print(info, f"model {cfg.model}: {resolved['_resolved']['num_params'] / 1e6:.2f}M params; lr {lr:.3g}, "
                 f"global batch {global_batch}, {steps_per_epoch} steps/epoch x {cfg.epochs} epochs on {device}"
                 f"{' x' + str(world) if world > 1 else ''}; run dir {run_dir}")
    if resume_ckpt is not None:
        ckpt_io.restore_rng_state(resume_ckpt["rng"])
        resume_ckpt = None  # free memory

    budget_s = cfg.time_budget_min * 60.0 if cfg.time_budget_min else None
    t_loop = time.time()
    t_origin = t_start - elapsed_before  # the budget counts time spent before a resume too
    train_budget_span = (t_origin + budget_s - t_loop) if budget_s else None
    step_losses: list[float] = []
    history = logger.records if logger is not None else []  # grows with logger.log
    train_images_total, train_time_total = 0, 0.0
    stopped = False
    last_eval: dict[str, Any] = {}
    last_ema_eval: dict[str, Any] = {}
    params = [p for p in model.parameters() if p.requires_grad]
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext

    def time_up() -> bool:
        if budget_s is None:
            return False
        flag = float(time.time() - t_origin >= budget_s)
        return all_reduce_sum([flag], info)[0] > 0  # every rank stops together

    def budget_progress() -> float | None:
        if budget_s is None or not cfg.time_budget_schedule or not train_budget_span or train_budget_span <= 0:
            return None
        return (time.time() - t_loop) / train_budget_span

    from tqdm.auto import tqdm

    n_micro = steps_per_epoch * cfg.accum_steps
    for epoch in range(start_epoch, cfg.epochs):
        if epoch > start_epoch and time_up():  # (at least one step runs, then the budget is checked)
            stopped = True
            break
        loader = _train_loader(data, train_ds, cfg, info, epoch)
        train_model.train()
        bar = tqdm(total=n_micro, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                   disable=not (cfg.progress and info.is_main), dynamic_ncols=True)
        loss_sum, correct, seen = 0.0, 0, 0
        t_epoch = time.time()
        optimizer.zero_grad(set_to_none=True)
        for i, (images, targets) in enumerate(loader):
            if i >= n_micro:
                break
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            inputs, soft = batch_aug(images, targets)
            boundary = (i + 1) % cfg.accum_steps == 0
            sync_ctx = train_model.no_sync() if (info.enabled and not boundary) else contextlib.nullcontext()
            with sync_ctx:
                with autocast():
                    logits = train_model(inputs)
                loss = soft_target_cross_entropy(logits.float(), soft.float())
                scaler.scale(loss / cfg.accum_steps).backward()
            loss_v = float(loss.detach())
            if not math.isfinite(loss_v):
                raise FloatingPointError(f"training loss is {loss_v} at epoch {epoch + 1}, batch {i + 1} "
                                         f"(lr {scheduler.last_lr:.3g}); lower lr or enable clip_grad")
            loss_sum += loss_v * images.shape[0]
            correct += int((logits.detach().argmax(dim=1) == targets).sum())
            seen += images.shape[0]
            if boundary:
                if cfg.clip_grad is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                scheduler.step(budget_progress())
                if ema is not None:
                    ema.update(model)
                step_losses.append(loss_v)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.4f}", lr=f"{scheduler.last_lr:.2e}")
            if boundary and budget_s is not None and time_up():
                stopped = True
                break
        bar.close()
        train_time = time.time() - t_epoch
        sums = all_reduce_sum([loss_sum, float(correct), float(seen)], info)
        seen_all = int(sums[2])
        train_images_total += seen_all
        train_time_total += train_time

        last_epoch = epoch + 1 == cfg.epochs or stopped
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": sums[0] / max(seen_all, 1),
            "train_acc": 100.0 * sums[1] / max(seen_all, 1),
            "lr": scheduler.last_lr,
            "images_per_s": seen_all / train_time if train_time > 0 else None,
            "train_images": seen_all,
            "partial_epoch": stopped,
        }
        if info.is_main and ((epoch + 1) % cfg.eval_every == 0 or last_epoch):
            last_eval = _evaluate(model, val_loader, eval_tf, device, eval_dtype, cfg.max_val_batches,
                                  cfg.progress, num_classes)
            record.update(val_loss=last_eval["loss"], val_top1=last_eval["top1"], val_top5=last_eval["top5"])
            if ema is not None:
                last_ema_eval = _evaluate(ema.module, val_loader, eval_tf, device, eval_dtype,
                                          cfg.max_val_batches, cfg.progress, num_classes)
                record.update(ema_val_loss=last_ema_eval["loss"], ema_val_top1=last_ema_eval["top1"],
                              ema_val_top5=last_ema_eval["top5"])
        record["epoch_time_s"] = time.time() - t_epoch

        if info.is_main:
            is_best = "val_top1" in record and record["val_top1"] > best_top1
            if is_best:
                best_top1, best_epoch = record["val_top1"], epoch + 1
            state = {
                "model": model.state_dict(),
                "model_name": cfg.model,
                "model_kwargs": dict(getattr(model, "model_kwargs", {})),
                "class_names": class_names,
                "classes": classes,
                "aug_config": aug_cfg.to_dict(),
                "config": resolved,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "ema": ema.state_dict() if ema is not None else None,
                "rng": ckpt_io.capture_rng_state(),
                "epoch": epoch + 1,
                "step": step,
                "best_top1": best_top1,
                "best_epoch": best_epoch,
                "metrics": {k: v for k, v in record.items() if isinstance(v, (int, float, bool))},
                "elapsed_s": time.time() - t_origin,
                "swinlab_version": __version__,
            }
            ckpt_io.atomic_torch_save(state, run_dir / ckpt_io.LAST)
            if is_best:
                ckpt_io.atomic_torch_save(state, run_dir / ckpt_io.BEST)
            del state
            if logger is not None:
                logger.log(record)
            msg = (f"epoch {epoch + 1}/{cfg.epochs}: train loss {record['train_loss']:.4f} "
                   f"acc {record['train_acc']:.2f}%")
            if "val_top1" in record:
                msg += (f" | val loss {record['val_loss']:.4f} top-1 {record['val_top1']:.2f}% "
                        f"top-5 {record['val_top5']:.2f}%")
            if "ema_val_top1" in record:
                msg += f" | EMA top-1 {record['ema_val_top1']:.2f}%"
            msg += (f" | lr {record['lr']:.3g} | {record['images_per_s'] or 0:.0f} img/s | "
                    f"{record['epoch_time_s']:.1f}s{' (time budget reached)' if stopped else ''}")
            _print(info, msg)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, record)
        barrier(info)
        if stopped:
            break

    export_dir = None
    if info.is_main and logger is not None:
        logger.close()
        if cfg.plots and history:
            plot_curves(history, run_dir / "curves.png", title=f"{cfg.model} on {cfg.data}")
        if cfg.export:
            export_dir = _export(run_dir, model, class_names, aug_cfg, device)
    epochs_completed = history[-1]["epoch"] if history else start_epoch
    return {
        "run_dir": str(run_dir),
        "epochs_completed": epochs_completed,
        "steps": step,
        "val_top1": last_eval.get("top1"),
        "val_top5": last_eval.get("top5"),
        "val_loss": last_eval.get("loss"),
        "ema_val_top1": last_ema_eval.get("top1"),
        "best_top1": best_top1 if best_top1 >= 0 else None,
        "best_epoch": best_epoch or None,
        "images_per_s": train_images_total / train_time_total if train_time_total > 0 else None,
        "train_time_s": train_time_total,
        "total_time_s": time.time() - t_start,
        "stopped_by_time_budget": stopped,
        "step_losses": step_losses,
        "history": history,
        "lr": lr,
        "export_dir": str(export_dir) if export_dir else None,
    }


def _export(run_dir: Path, model: nn.Module, class_names: list[str], aug_cfg: Any, device: torch.device) -> Path:
    """Save the best checkpoint's weights with ``swinlab.weights.save_pretrained``."""
    best = run_dir / ckpt_io.BEST
    source = best if best.is_file() else run_dir / ckpt_io.LAST
    state = ckpt_io.load_checkpoint(source)
    model.load_state_dict(state["model"])
    a = aug_cfg.to_dict()
    pre = {"mean": list(a["mean"]), "std": list(a["std"]), "input_size": [a["img_size"], a["img_size"]],
           "crop_ratio": a["eval_crop_ratio"], "interpolation": a["interpolation"]}
    out = Path(save_pretrained(model, run_dir / "export", class_names=class_names, preprocessing=pre))
    print(f"exported {source.name} to {out}", file=sys.stderr)
    return out
