"""The training loop: :func:`train` runs a :class:`~swinlab.training.config.TrainConfig`.

Follows the official Swin training code (microsoft/Swin-Transformer
``main.py``: AdamW, per-iteration warmup + cosine schedule, mixup/cutmix soft
targets with ``SoftTargetCrossEntropy``, gradient clipping, gradient
accumulation, AMP with a loss scaler, validation top-1/top-5 every epoch,
``max_accuracy`` checkpointing, rank-0 logging under DDP) and reference 003
(AMP + GradScaler, clip 3.0, JSON logs).

A run is set up (:func:`_setup`: data, model, optimizer, schedule; on
``resume`` the state of ``last.pt``), then trained epoch by epoch
(:func:`_train_epoch`, :func:`_finish_epoch`: evaluate, commit the
checkpoint, log). The run folder belongs to one process at a time (a lock),
rank 0 alone writes it (:class:`~.writer.RunWriter`, crash-safe order).
With ``train_step="graph"`` a step is one call of :class:`~.graph_step.GraphStep`
(augmentation to optimizer update, nothing read back) and its losses are read every
``log_every`` steps and at the end of an epoch (:func:`_read_graph_step`).

Exact resume: an epoch's data order depends on ``(seed, epoch)`` only, and a
checkpoint holds every rank's RNG states and the position inside the epoch,
so a run stopped at any step boundary -- at an epoch end, by Ctrl-C /
SIGTERM inside an epoch, or killed and resumed from its last checkpoint --
continues with the same batches, augmentations and dropout masks as the
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from .. import data
from ..errors import CheckpointError, ConfigError, DivergedError, UsageError
from ..io.progress import bars_shown, progress_bar
from ..io.rundir import RunDir
from ..memory import tune_cpu_allocator
from ..version import __version__
from ..weights.pretrained import save_pretrained
from .checkpoint import TRAINING_KEYS, capture_rng_state, restore_rng_state
from .config import TrainConfig
from .distributed import (DistInfo, all_reduce_sum, barrier, cleanup_distributed, epoch_indices, gather_objects,
                          init_distributed)
from .ema import ModelEma
from .evaluation import evaluate_model
from .graph_step import GraphStep, graph_precision
from .metrics import soft_target_cross_entropy
from .optim import build_optimizer, freeze_for_linear_probe, scaled_lr
from .schedule import WarmupCosineSchedule
from .setup import ResizeSchedule, TrainData, build_data, build_run_model, choose_precision
from .writer import RunWriter

__all__ = ["train", "soft_target_cross_entropy", "seed_everything", "EpochCallback"]

EpochCallback = Callable[[int, dict[str, Any]], None]


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------- state
@dataclass
class Progress:
    """Where the run stands (saved in every checkpoint)."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # micro-batches done in the current epoch
    step: int = 0  # optimizer steps done
    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss_sum, correct, seen (this rank)
    best_top1: float = -1.0
    best_epoch: int = 0
    best_at: list[int] = field(default_factory=lambda: [0, 0])  # (epoch, batch) of the best state
    history: list[dict[str, Any]] = field(default_factory=list)


class Budget:
    """The wall-clock budget of the current schedule segment, in seconds
    (``total_s`` None: no budget); ``used_s`` were spent by earlier invocations."""

    def __init__(self, total_s: float | None, used_s: float = 0.0) -> None:
        self.total_s, self.used_s, self.t0 = total_s, used_s, time.time()

    def elapsed(self) -> float:
        return self.used_s + time.time() - self.t0

    def fraction(self) -> float | None:
        return None if self.total_s is None else min(1.0, self.elapsed() / max(self.total_s, 1e-9))

    def exhausted(self) -> bool:
        return self.total_s is not None and self.elapsed() >= self.total_s

    def state(self) -> dict[str, Any]:
        return {"total_s": self.total_s, "used_s": self.elapsed()}


class StopSignals:
    """Turns SIGINT / SIGTERM into a request to stop at the next step
    boundary (the state is saved there); a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> "StopSignals":
        if sys.platform != "win32" and _main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


@dataclass
class Run:
    """Everything the loop works with."""

    cfg: TrainConfig
    info: DistInfo
    run_dir: RunDir
    data: TrainData
    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: WarmupCosineSchedule
    scaler: torch.amp.GradScaler
    ema: ModelEma | None
    amp_dtype: torch.dtype | None
    precision_reason: str
    steps_per_epoch: int
    budget: Budget
    resize: ResizeSchedule
    signals: StopSignals
    t_start: float
    resolved: dict[str, Any]
    progress: Progress = field(default_factory=Progress)
    writer: RunWriter | None = None
    val_loader: Any = None
    train_tensors: tuple[torch.Tensor, torch.Tensor] | None = None  # cached train set on the device
    augmenters: dict[int, data.BatchAugment] = field(default_factory=dict)
    graph_step: GraphStep | None = None  # train_step="graph": the whole step as one function
    step_losses: list[float] = field(default_factory=list)
    train_images: int = 0
    train_time_s: float = 0.0
    resumed_from: dict[str, int] | None = None
    last_log: tuple[float, float] = (0.0, 0.0)  # (time, images seen) at the last step row
    last_line: tuple[float, float] = (0.0, 0.0)  # (time, images seen) at the last progress line (of the epoch)
    epoch_started: float = 0.0

    @property
    def n_micro(self) -> int:
        return self.steps_per_epoch * self.cfg.accum_steps

    @property
    def total_steps(self) -> int:
        return self.scheduler.total_steps

    def run_fraction(self) -> float:
        """Share of the run done: of the time budget, else of the steps."""
        f = self.budget.fraction()
        return f if f is not None else self.progress.step / max(self.total_steps, 1)

    def augment(self, size: int) -> data.BatchAugment:
        if size not in self.augmenters:
            self.augmenters[size] = data.BatchAugment(self.data.aug.with_size(size), self.data.num_classes)
        return self.augmenters[size]


def _print(info: DistInfo, msg: str) -> None:
    if info.is_main:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- setup
def _read_resume(cfg: TrainConfig, run_dir: RunDir, info: DistInfo) -> dict[str, Any]:
    """``last.pt`` of the resumed folder, checked against this run."""
    state = run_dir.read_resume()
    missing = [k for k in TRAINING_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{run_dir.last} cannot be resumed: it lacks {missing} (written by an older swinlab?)")
    if state["model_name"] != cfg.model:
        raise ConfigError(f"--resume {run_dir.path}: the checkpoint trains {state['model_name']!r}, the config "
                          f"says {cfg.model!r}")
    world = int(state.get("world_size", 1))
    if world != info.world_size:
        raise UsageError(
            f"--resume {run_dir.path}: the run was trained by {world} process(es) and this is {info.world_size}; "
            f"resume with the same number (torchrun --nproc_per_node {world}) so the global batch, data order "
            f"and RNG streams stay those of the run, or start a new run with --pretrained {run_dir.path}")
    return state


def _optimization(cfg: TrainConfig, model: nn.Module, info: DistInfo, n_train: int) -> tuple[Any, ...]:
    """Optimizer, schedule, loss scaler and steps per epoch."""
    global_batch = cfg.batch_size * cfg.accum_steps * info.world_size
    lr = scaled_lr(cfg.lr, global_batch, cfg.lr_scale_batch)
    optimizer = build_optimizer(model, lr, cfg.weight_decay, cfg.betas, cfg.eps, cfg.layer_decay,
                                decay_all=cfg.decay_all_weights)
    per_rank = -(-n_train // info.world_size)
    n_batches = per_rank // cfg.batch_size
    if cfg.max_train_batches is not None:
        n_batches = min(n_batches, cfg.max_train_batches)
    steps_per_epoch = n_batches // cfg.accum_steps
    if steps_per_epoch < 1:
        raise ConfigError(f"{cfg.data}: {n_train} training images make no full step of batch_size="
                          f"{cfg.batch_size} x accum_steps={cfg.accum_steps} x {info.world_size} process(es)")
    total = cfg.epochs * steps_per_epoch
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total)
    scheduler = WarmupCosineSchedule(optimizer, lr, total, warmup, scaled_lr(cfg.warmup_lr_init, global_batch,
                                     cfg.lr_scale_batch), scaled_lr(cfg.min_lr, global_batch, cfg.lr_scale_batch),
                                     kind=cfg.lr_schedule)
    return optimizer, scheduler, steps_per_epoch, global_batch


def _wrap(model: nn.Module, cfg: TrainConfig, info: DistInfo) -> nn.Module:
    """The module the training step calls: DDP across processes, then ``torch.compile``
    (one static graph per input size: the training batch never changes size; the graph
    step compiles the whole step instead, :class:`~.graph_step.GraphStep`)."""
    train_model: nn.Module = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda"
                                              else None)
    if cfg.compile and cfg.train_step == "classic":
        mode = None if cfg.compile_mode == "default" else cfg.compile_mode
        train_model = torch.compile(train_model, dynamic=False, mode=mode)  # type: ignore[assignment]
    return train_model


def _train_tensors(train: Any, info: DistInfo) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The decoded training set ``(images uint8 (N, 3, H, W), labels (N,))`` moved to the
    training device once, when it is cached in one tensor (``cache``); every batch is then
    a gather there (:func:`swinlab.data.cached_batches`), with no DataLoader and, on a GPU,
    no per-batch host-to-device copy.  None: batches come from a DataLoader."""
    get = getattr(train, "cached_tensors", None)
    tensors = get() if get is not None else None
    if tensors is None:
        return None
    if info.device.type != "cpu":
        _print(info, f"training images held on {info.device} ({tensors[0].numel() / 2**30:.2f} GiB)")
    return tensors[0].to(info.device), tensors[1].to(info.device)


def _setup(cfg: TrainConfig, info: DistInfo, t_start: float, signals: StopSignals,
           extend: dict[str, Any]) -> Run:
    """Build the run (and restore it from ``last.pt`` when resuming)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if info.device.type == "cpu":
        tune_cpu_allocator()
    seed_everything(cfg.seed + info.rank)
    run_dir = RunDir(cfg.run_dir)
    resumed = _read_resume(cfg, run_dir, info) if cfg.resume else None
    if resumed is None and run_dir.last.exists() and not cfg.overwrite:
        raise ConfigError(f"run folder {run_dir.path} already holds a checkpoint; pass --resume {run_dir.path} to "
                          f"continue it, --overwrite to start over, or choose another --out")
    amp_dtype, reason = choose_precision(cfg.amp, info.device)
    if cfg.train_step == "graph":
        amp_dtype, reason = graph_precision(cfg.amp, amp_dtype, reason)
    dat = build_data(cfg, cfg.progress and info.is_main)
    model = build_run_model(cfg, dat.num_classes, dat.aug.img_size, load_pretrained=resumed is None).to(info.device)
    if resumed is None and getattr(model, "pretrained_report", None) is not None:
        _print(info, f"pretrained weights: {model.pretrained_report}")
    if cfg.linear_probe:
        freeze_for_linear_probe(model)
    optimizer, scheduler, spe, global_batch = _optimization(cfg, model, info, len(dat.train))
    budget_s = cfg.time_budget_min * 60.0 - (time.time() - t_start) if cfg.time_budget_min else None
    run = Run(cfg=cfg, info=info, run_dir=run_dir, data=dat, model=model, train_model=_wrap(model, cfg, info),
              optimizer=optimizer, scheduler=scheduler,
              scaler=torch.amp.GradScaler(info.device.type, enabled=amp_dtype == torch.float16),
              ema=ModelEma(model, cfg.ema_decay) if cfg.ema_decay else None, amp_dtype=amp_dtype,
              precision_reason=reason, steps_per_epoch=spe, budget=Budget(budget_s),
              resize=ResizeSchedule(cfg.progressive_resize, dat.aug.img_size), signals=signals, t_start=t_start,
              resolved=_resolved(cfg, dat, model, info, global_batch, spe, amp_dtype, reason))
    run.train_tensors = _train_tensors(dat.train, info)
    if cfg.train_step == "graph":
        run.graph_step = GraphStep(run.train_model, optimizer, dat.aug, dat.num_classes, info.device, amp_dtype,
                                   cfg.clip_grad, compile=cfg.compile, mode=cfg.compile_mode, ddp=info.enabled)
    run.val_loader = data.build_loader(dat.val, cfg.eval_batch_size or cfg.batch_size, shuffle=False,
                                       num_workers=cfg.num_workers, seed=cfg.seed)
    if resumed is not None:
        _restore(run, resumed, extend, t_start)
    if info.is_main:
        run.writer = RunWriter(run_dir, cfg.tensorboard)
        run.writer.open(run.resolved, resumed)
    return run


def _resolved(cfg: TrainConfig, dat: TrainData, model: nn.Module, info: DistInfo, global_batch: int,
              spe: int, amp_dtype: torch.dtype | None, reason: str) -> dict[str, Any]:
    """``config.json``: the config plus what the run derived from it."""
    out = cfg.to_dict()
    out["aug"] = dat.aug.to_dict()
    out["_resolved"] = {"global_batch": global_batch, "world_size": info.world_size, "steps_per_epoch": spe,
                        "amp_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else "float32",
                        "precision_reason": reason, "cpu_isa": torch.backends.cpu.get_cpu_capability(),
                        "num_classes": dat.num_classes, "device": str(info.device), "swinlab_version": __version__,
                        "num_params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
                        "train_images": len(dat.train), "val_images": len(dat.val)}
    return out


def _restore(run: Run, state: dict[str, Any], extend: dict[str, Any], t_start: float) -> None:
    """Load a resumed state; extend the run when asked (``extend``: ``epochs``
    and/or ``time_budget_min``), re-fitting the schedule from the current step."""
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            run.scaler.load_state_dict(state["scaler"])
        if run.ema is not None and state.get("ema"):
            run.ema.load_state_dict(state["ema"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"--resume {run.run_dir.path}: the checkpoint does not fit this run: "
                              f"{str(e).splitlines()[0]}") from None
    p = run.progress
    p.epoch, p.batch, p.step = int(state["epoch"]), int(state["batch"]), int(state["step"])
    p.sums = [float(v) for v in state["epoch_sums"][run.info.rank]]
    p.best_top1, p.best_epoch = float(state["best_top1"]), int(state["best_epoch"])
    p.best_at, p.history = list(state["best_at"]), list(state["history"])
    run.resumed_from = {"epoch": p.epoch, "batch": p.batch, "step": p.step}
    budget = state.get("budget") or {}
    run.budget = Budget(budget.get("total_s"), float(budget.get("used_s", 0.0)))
    _extend(run, extend, t_start)
    restore_rng_state(state["rng"][run.info.rank])  # last: building the run consumed random numbers


def _extend(run: Run, extend: dict[str, Any], t_start: float) -> None:
    """Apply ``--epochs N`` / ``--time-budget-min M`` given on resume."""
    p, cfg = run.progress, run.cfg
    if not extend:
        return
    if "epochs" in extend:
        if extend["epochs"] <= p.epoch:
            raise UsageError(f"--epochs {extend['epochs']}: the run has already completed {p.epoch} epoch(s); "
                             f"give a larger number to extend it")
        cfg.epochs = int(extend["epochs"])
    minutes = extend.get("time_budget_min")
    run.budget = Budget(minutes * 60.0 - (time.time() - t_start) if minutes else None)
    run.scheduler.refit(max(cfg.epochs * run.steps_per_epoch, p.step + 1))
    run.resolved["epochs"], run.resolved["time_budget_min"] = cfg.epochs, minutes


# ---------------------------------------------------------------------- the loop
def _announce(run: Run) -> None:
    """The start of a run: where, what, on which device and precision, how long."""
    cfg, info, p = run.cfg, run.info, run.progress
    where = (f"resumed at epoch {p.epoch + 1}, step {p.step}" + (f" (batch {p.batch} of the epoch)" if p.batch else "")
             if run.resumed_from else "new run")
    r = run.resolved["_resolved"]
    isa = torch.backends.cpu.get_cpu_capability() if info.device.type == "cpu" else torch.cuda.get_device_name()
    precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[run.amp_dtype]
    budget = (f"time budget {run.budget.total_s / 60 + (time.time() - run.t_start) / 60:.1f} min "
              f"(epochs expected: printed after {_ESTIMATE_AFTER} steps)" if run.budget.total_s else "no time budget")
    _print(info, f"run folder {run.run_dir.path} ({where})")
    _print(info, f"model {cfg.model}: {r['num_params'] / 1e6:.2f}M parameters; data {cfg.data}: "
                 f"{len(run.data.train)} train / {len(run.data.val)} val images, {run.data.num_classes} classes")
    _print(info, f"device {info.device} ({isa}){f' x{info.world_size} processes' if info.enabled else ''}, "
                 f"{torch.get_num_threads()} threads; precision {precision} ({run.precision_reason})")
    _print(info, f"lr {run.scheduler.base_lr:.3g}, global batch {r['global_batch']}, {run.steps_per_epoch} steps/epoch, "
                 f"up to {cfg.epochs} epochs; {budget}")
    if run.writer is not None and run.writer.removed_temporaries:
        _print(info, f"removed {len(run.writer.removed_temporaries)} temporary file(s) of an interrupted write")


_ESTIMATE_AFTER = 20


def train(config: TrainConfig | dict[str, Any], *, extend: dict[str, Any] | None = None,
          on_epoch_end: EpochCallback | None = None) -> dict[str, Any]:
    """Train (and evaluate) a model as ``config`` says; see the module docstring.

    Writes to the run folder (rank 0; see :class:`swinlab.io.rundir.RunDir`):
    ``config.json``, ``last.pt``, ``best.pt``, ``metrics.jsonl``,
    ``metrics.csv``, ``metrics_steps.csv``, ``tb/``, ``curves.png`` and,
    with ``export``, ``export/``.

    Args:
        config: a :class:`TrainConfig` or a dict of its fields. With
            ``resume``, the run continues in that folder (only there).
        extend: on resume, ``{"epochs": N}`` extends the run to N epochs and
            ``{"time_budget_min": M}`` grants M more minutes; the schedule is
            re-fitted from the current step (no lr jump). Without it a resumed
            run continues to its original end.
        on_epoch_end: called on rank 0 as ``on_epoch_end(epoch, record)`` after
            each epoch's checkpoint is written (epoch counted from 1).

    Returns:
        a summary dict: ``run_dir``, ``epochs_completed``, ``steps``,
        ``val_top1``, ``val_top5``, ``val_loss`` (last evaluation),
        ``ema_val_top1``, ``best_top1``, ``best_epoch``, ``images_per_s``,
        ``train_time_s``, ``total_time_s``, ``stopped_by_time_budget``,
        ``interrupted`` (the signal's name or None), ``step_losses`` (this
        invocation's), ``history`` (the epoch records), ``export_dir``.

    Raises:
        ConfigError / UsageError: bad configuration or a bad extension.
        RunLockedError: another live process trains into the folder.
        CheckpointError: a missing, damaged or foreign ``last.pt`` on resume.
        DivergedError: the loss became NaN or infinite.
        InputError / DataError: data that cannot be found or read.
        DiskFullError: a write ran out of space (the last checkpoint stays).
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))
    cfg.validate()
    t_start = time.time()
    info = init_distributed(cfg.device)
    try:
        lock = RunDir(cfg.run_dir).lock() if info.is_main else contextlib.nullcontext()
        with StopSignals() as signals, lock:
            run = _setup(cfg, info, t_start, signals, dict(extend or {}))
            try:
                return _loop(run, on_epoch_end)
            finally:
                if run.writer is not None:
                    run.writer.close()
    finally:
        cleanup_distributed()


def _loop(run: Run, on_epoch_end: EpochCallback | None) -> dict[str, Any]:
    _announce(run)
    stop = None
    if run.resumed_from is not None and _finished(run):  # (a new run makes at least one step)
        _print(run.info, f"the run has finished ({run.progress.epoch} epochs, step {run.progress.step}): pass "
                         f"--epochs N or --time-budget-min M with --resume to extend it")
        stop = "finished"
    while stop is None and run.progress.epoch < run.cfg.epochs:
        stop = _train_epoch(run)
        if stop == "signal":
            _save_interrupted(run)
            break
        record = _finish_epoch(run, partial=stop == "budget")
        if on_epoch_end is not None and run.info.is_main:
            on_epoch_end(run.progress.epoch, record)
        barrier(run.info)
    export_dir = _finish_run(run)
    return _summary(run, stop, export_dir)


def _finished(run: Run) -> bool:
    return run.progress.epoch >= run.cfg.epochs or run.budget.exhausted()


def _train_epoch(run: Run) -> str | None:
    """Train the (rest of the) current epoch; returns None when it is complete,
    ``"budget"`` or ``"signal"`` when the run must stop at this step."""
    cfg, p, info = run.cfg, run.progress, run.info
    order = epoch_indices(len(run.data.train), info, cfg.seed, p.epoch)[: run.n_micro * cfg.batch_size]
    todo = order[p.batch * cfg.batch_size:]
    if run.train_tensors is not None:
        loader: Any = data.cached_batches(*run.train_tensors, todo, cfg.batch_size)
    else:
        loader = data.build_loader(Subset(run.data.train, todo), cfg.batch_size, shuffle=False,
                                   num_workers=cfg.num_workers, seed=cfg.seed, drop_last=True)
    run.train_model.train()
    bar = progress_bar(cfg.progress and info.is_main, total=run.n_micro, initial=p.batch, unit="batch",
                       desc=f"epoch {p.epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True)
    t0, seen0 = time.time(), p.sums[2]
    run.last_log, run.last_line, run.epoch_started = (t0, seen0), (t0, seen0), t0
    run.optimizer.zero_grad(set_to_none=True)
    try:
        for images, targets in loader:
            boundary = _graph_step(run, images, targets) if run.graph_step else _micro_step(run, images, targets)
            bar.update(1)
            if boundary:
                if run.step_losses:  # (the graph step's losses arrive every log_every steps)
                    bar.set_postfix(loss=f"{run.step_losses[-1]:.3f}", lr=f"{run.scheduler.last_lr:.2e}")
                stop = _stop_reason(run)
                if stop:
                    return stop
        return None
    finally:
        _read_graph_step(run)
        bar.close()
        run.train_time_s += time.time() - t0
        run.train_images += int(p.sums[2] - seen0) * info.world_size


def _stop_reason(run: Run) -> str | None:
    """``"signal"`` / ``"budget"`` when any rank wants to stop (all ranks agree)."""
    votes = all_reduce_sum([float(run.signals.received is not None), float(run.budget.exhausted())], run.info)
    return "signal" if votes[0] > 0 else "budget" if votes[1] > 0 else None


def _micro_step(run: Run, images: torch.Tensor, targets: torch.Tensor) -> bool:
    """Forward and backward one micro-batch; an optimizer step at the
    accumulation boundary (returned True)."""
    cfg, p, device = run.cfg, run.progress, run.info.device
    size = run.resize.size_at(run.run_fraction())
    inputs, soft = run.augment(size)(images.to(device, non_blocking=True), targets.to(device, non_blocking=True))
    boundary = (p.batch + 1) % cfg.accum_steps == 0
    no_sync = run.info.enabled and not boundary
    with run.train_model.no_sync() if no_sync else contextlib.nullcontext():  # type: ignore[operator]
        with torch.autocast(device.type, dtype=run.amp_dtype) if run.amp_dtype else contextlib.nullcontext():
            logits = run.train_model(inputs)
        loss = soft_target_cross_entropy(logits.float(), soft.float())
        run.scaler.scale(loss / cfg.accum_steps).backward()
    loss_v = float(loss.detach())
    if not math.isfinite(loss_v):
        raise _diverged(run, loss_v, p.step + 1)
    p.sums[0] += loss_v * images.shape[0]
    p.sums[1] += float((logits.detach().argmax(dim=1) == targets.to(device)).sum())
    p.sums[2] += float(images.shape[0])
    p.batch += 1
    if boundary:
        _optimizer_step(run, loss_v, size)
    return boundary


def _graph_step(run: Run, images: torch.Tensor, targets: torch.Tensor) -> bool:
    """One step of :class:`~.graph_step.GraphStep` (nothing read back); its losses and
    counts are read every ``log_every`` steps (:func:`_read_graph_step`). Always a boundary."""
    cfg, p, device = run.cfg, run.progress, run.info.device
    size = run.resize.size_at(run.run_fraction())
    run.graph_step(images.to(device, non_blocking=True), targets.to(device, non_blocking=True), size)
    p.batch += 1
    p.step += 1
    run.scheduler.step(run.budget.fraction() if cfg.time_budget_schedule else None)
    if run.ema is not None:
        run.ema.update(run.model)
    if p.step % cfg.log_every == 0 or p.step == _ESTIMATE_AFTER:
        _read_graph_step(run)
        if run.writer is not None:
            _log_step(run, run.step_losses[-1], size)
    return True


def _read_graph_step(run: Run) -> None:
    """Fold the graph step's pending losses and counts into the progress (one host read).

    Raises:
        DivergedError: a loss among them is NaN or infinite.
    """
    if run.graph_step is None:
        return
    losses, sums = run.graph_step.read()
    p = run.progress
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is not None:
        raise _diverged(run, losses[bad], p.step - len(losses) + bad + 1)
    p.sums = [a + b for a, b in zip(p.sums, sums)]
    run.step_losses.extend(losses)


def _diverged(run: Run, loss_v: float, step: int) -> DivergedError:
    return DivergedError(
        f"the training loss became {loss_v} at epoch {run.progress.epoch + 1}, step {step} (lr "
        f"{run.scheduler.last_lr:.3g}): the run diverged. Lower --lr, clip gradients (--set clip_grad=1.0) or "
        f"warm up longer (--warmup-epochs); resume from the last checkpoint with --resume {run.run_dir.path}")


def _optimizer_step(run: Run, loss_v: float, size: int) -> None:
    cfg, p = run.cfg, run.progress
    if cfg.clip_grad is not None:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_([q for q in run.model.parameters() if q.requires_grad], cfg.clip_grad)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    p.step += 1
    run.scheduler.step(run.budget.fraction() if cfg.time_budget_schedule else None)
    if run.ema is not None:
        run.ema.update(run.model)
    run.step_losses.append(loss_v)
    if run.writer is not None and (p.step % cfg.log_every == 0 or p.step == _ESTIMATE_AFTER):
        _log_step(run, loss_v, size)
    if p.step % cfg.log_every == 0 and cfg.progress and run.info.is_main and not bars_shown():
        _progress_line(run, loss_v)


def _progress_line(run: Run, loss_v: float) -> None:
    """Instead of the bar when the output is not a terminal: one line (step,
    loss, lr, images/s since the last line and, with a time budget, the epochs
    it allows at that speed) every ``progress_interval_s`` seconds of an epoch
    (the clock restarts with each epoch, after its evaluation)."""
    p, now = run.progress, time.time()
    t_prev, seen_prev = run.last_line
    if now - t_prev < run.cfg.progress_interval_s:
        return
    speed = (p.sums[2] - seen_prev) * run.info.world_size / max(now - t_prev, 1e-9)
    run.last_line = (now, p.sums[2])
    budget = f" | budget: about {_budget_epochs(run, speed):.1f} epochs" if run.budget.total_s and speed else ""
    _print(run.info, f"epoch {p.epoch + 1}/{run.cfg.epochs} step {p.step} ({p.batch}/{run.n_micro} batches): loss "
                     f"{loss_v:.4f} lr {run.scheduler.last_lr:.3g} | {speed:.0f} img/s | {now - run.t_start:.0f}s{budget}")


def _log_step(run: Run, loss_v: float, size: int) -> None:
    """A ``metrics_steps.csv`` row; after the first steps of a budgeted run,
    how many epochs its budget should allow."""
    p, now = run.progress, time.time()
    t_prev, seen_prev = run.last_log
    speed = (p.sums[2] - seen_prev) * run.info.world_size / max(now - t_prev, 1e-9) if p.sums[2] > seen_prev else None
    run.last_log = (now, p.sums[2])
    run.writer.log_step({"step": p.step, "epoch_frac": p.epoch + p.batch / run.n_micro, "train_loss": loss_v,
                         "lr": run.scheduler.last_lr, "img_size": size, "images_per_s": speed})
    if p.step == _ESTIMATE_AFTER and run.budget.total_s and speed:
        _print(run.info, f"speed {speed:.0f} images/s: the time budget allows about {_budget_epochs(run, speed):.1f} "
                         f"epochs")


def _budget_epochs(run: Run, speed: float) -> float:
    """Epochs the time budget allows at ``speed`` images/s: done so far plus what the time left holds."""
    p = run.progress
    left = run.budget.total_s - run.budget.elapsed()
    n_train = run.n_micro * run.cfg.batch_size * run.info.world_size
    return p.epoch + p.batch / run.n_micro + left * speed / n_train


# ---------------------------------------------------------------------- epoch end
def _evaluate(run: Run, model: nn.Module) -> dict[str, float]:
    cfg = run.cfg
    res = evaluate_model(model, run.val_loader, data.EvalTransform(run.data.aug), device=run.info.device,
                         amp_dtype=run.amp_dtype if cfg.eval_amp else None, max_batches=cfg.max_val_batches,
                         progress=cfg.progress, num_classes=run.data.num_classes, tta_hflip=cfg.tta_hflip)
    return {"loss": float(res["loss"]), "top1": float(res["top1"]), "top5": float(res.get("top5", math.nan))}


def _epoch_record(run: Run, partial: bool) -> dict[str, Any]:
    p = run.progress
    loss_sum, correct, seen = all_reduce_sum(p.sums, run.info)
    return {
        "epoch": p.epoch + 1, "epoch_frac": p.epoch + p.batch / run.n_micro, "step": p.step,
        "train_loss": loss_sum / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1),
        "lr": run.scheduler.last_lr, "img_size": run.resize.size_at(run.run_fraction()),
        "images_per_s": run.train_images / run.train_time_s if run.train_time_s > 0 else None,
        "train_images": int(seen), "partial_epoch": partial, "time_s": time.time() - run.t_start,
    }


def _finish_epoch(run: Run, partial: bool) -> dict[str, Any]:
    """End of an epoch (or of a budget inside one): evaluate, commit the
    checkpoint (rank 0 writes), print the epoch line."""
    cfg, p, info = run.cfg, run.progress, run.info
    record = _epoch_record(run, partial)
    if info.is_main and (record["epoch"] % cfg.eval_every == 0 or record["epoch"] == cfg.epochs or partial):
        ev = _evaluate(run, run.model)
        record.update(val_loss=ev["loss"], val_top1=ev["top1"], val_top5=ev["top5"])
        if run.ema is not None:
            ev = _evaluate(run, run.ema.module)
            record.update(ema_val_loss=ev["loss"], ema_val_top1=ev["top1"], ema_val_top5=ev["top5"])
    record["epoch_time_s"] = time.time() - run.epoch_started
    if not partial:
        p.epoch, p.batch, p.sums = p.epoch + 1, 0, [0.0, 0.0, 0.0]
    is_best = "val_top1" in record and record["val_top1"] > p.best_top1
    if is_best:
        p.best_top1, p.best_epoch, p.best_at = record["val_top1"], record["epoch"], [p.epoch, p.batch]
    p.history.append(record)
    state = _state(run)  # collective: every rank takes part
    if run.writer is not None:
        run.writer.commit(state, is_best)
        _print(info, _epoch_line(run, record))
    return record


def _epoch_line(run: Run, r: dict[str, Any]) -> str:
    msg = f"epoch {r['epoch']}/{run.cfg.epochs}: train loss {r['train_loss']:.4f} acc {r['train_acc']:.2f}%"
    if "val_top1" in r:
        msg += f" | val loss {r['val_loss']:.4f} top-1 {r['val_top1']:.2f}% top-5 {r['val_top5']:.2f}%"
    if "ema_val_top1" in r:
        msg += f" | EMA top-1 {r['ema_val_top1']:.2f}%"
    speed = f"{r['images_per_s']:.0f} img/s" if r["images_per_s"] else "- img/s"
    partial = f" (time budget reached at epoch {r['epoch_frac']:.2f})" if r["partial_epoch"] else ""
    return msg + f" | lr {r['lr']:.3g} | {speed} | {r['time_s']:.0f}s{partial}"


def _state(run: Run) -> dict[str, Any] | None:
    """The checkpoint dict on rank 0 (None elsewhere); gathers every rank's RNG state."""
    p, cfg = run.progress, run.cfg
    rngs = gather_objects(capture_rng_state(), run.info)
    sums = gather_objects(list(p.sums), run.info)
    if not run.info.is_main:
        return None
    return {
        "model": run.model.state_dict(), "model_name": cfg.model,
        "model_kwargs": dict(getattr(run.model, "model_kwargs", {})),
        "class_names": run.data.class_names, "classes": run.data.classes, "aug_config": run.data.aug.to_dict(),
        "config": run.resolved, "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "rng": rngs, "world_size": run.info.world_size, "epoch": p.epoch, "batch": p.batch, "step": p.step,
        "epoch_sums": sums, "best_top1": p.best_top1, "best_epoch": p.best_epoch, "best_at": p.best_at,
        "history": p.history, "budget": run.budget.state(), "swinlab_version": __version__,
    }


def _save_interrupted(run: Run) -> None:
    """Ctrl-C / SIGTERM: save the state at this step and say how to resume."""
    state = _state(run)
    if run.writer is not None:
        run.writer.save_partial(state)
        name = signal.Signals(run.signals.received or signal.SIGINT).name
        p = run.progress
        _print(run.info, f"{name}: stopped at epoch {p.epoch + 1}, step {p.step} (batch {p.batch} of the epoch); "
                         f"the state is saved in {run.run_dir.last}. Resume with: swinlab train --resume "
                         f"{run.run_dir.path}")


def _finish_run(run: Run) -> str | None:
    """Curves and the export (rank 0)."""
    if run.writer is None:
        return None
    if run.cfg.plots:
        run.writer.draw_curves(run.progress.history, title=f"{run.cfg.model} on {run.cfg.data}")
    if run.cfg.export and run.progress.history:
        state = run.run_dir.read_model()
        run.model.load_state_dict(state["model"])
        out = save_pretrained(run.model, run.run_dir / RunDir.EXPORT, class_names=run.data.class_names,
                              preprocessing=run.data.aug.eval_preprocessing())
        _print(run.info, f"exported {run.run_dir.model_file().name} to {out}")
        return str(out)
    return None


def _summary(run: Run, stop: str | None, export_dir: str | None) -> dict[str, Any]:
    p = run.progress
    last = next((r for r in reversed(p.history) if "val_top1" in r), {})
    return {
        "run_dir": str(run.run_dir.path), "epochs_completed": p.epoch, "steps": p.step,
        "val_top1": last.get("val_top1"), "val_top5": last.get("val_top5"), "val_loss": last.get("val_loss"),
        "ema_val_top1": last.get("ema_val_top1"),
        "best_top1": p.best_top1 if p.best_top1 >= 0 else None, "best_epoch": p.best_epoch or None,
        "images_per_s": run.train_images / run.train_time_s if run.train_time_s > 0 else None,
        "train_time_s": run.train_time_s, "total_time_s": time.time() - run.t_start,
        "stopped_by_time_budget": stop == "budget",
        "interrupted": signal.Signals(run.signals.received).name if stop == "signal" else None,
        "step_losses": run.step_losses, "history": p.history, "export_dir": export_dir,
        "lr": run.scheduler.base_lr,
    }
