"""The training run configuration: a typed dataclass, JSON recipes and overrides.

A recipe is a JSON object whose keys are fields of :class:`TrainConfig`; the
built-in recipes ship with the package (``swinlab/configs/*.json``, listed by
:func:`list_recipes`). The command line loads a recipe, then applies its
flags -- one per field, generated from the field list (:data:`FIELD_HELP`
gives each its help) -- and generic ``--set key=value`` overrides (dotted keys
reach into ``aug.*`` and ``model_overrides.*``). Every key is checked when it
is parsed: unknown keys (with the closest valid one), values of the wrong
type, augmentation settings (:class:`swinlab.data.AugmentConfig`) and model
overrides (the model class's constructor arguments) raise
:class:`~swinlab.errors.ConfigError` naming the key, the value and what was
expected.

The optimisation fields follow the official Swin training code
(microsoft/Swin-Transformer ``config.py``: ``BASE_LR``, ``WARMUP_LR``,
``MIN_LR``, ``WEIGHT_DECAY``, ``CLIP_GRAD``, ``ACCUMULATION_STEPS``, the
linear lr scaling by ``global batch / 512``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..data.config import AugmentConfig
from ..errors import ConfigError, InputNotFoundError, UnknownModelError, UsageError
from ..models.registry import check_overrides

__all__ = [
    "ConfigError",
    "TrainConfig",
    "FIELD_HELP",
    "load_config",
    "find_config",
    "list_recipes",
    "apply_overrides",
    "parse_set_items",
]

AmpMode = Literal["none", "bf16", "fp16", "auto"]
StepName = Literal["classic", "graph"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
ScheduleName = Literal["cosine", "constant"]
RECIPES_DIR = Path(__file__).resolve().parent.parent / "configs"


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with its command-line help."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: json.loads(json.dumps(default)) if not dataclasses.is_dataclass(default)
                     else dataclasses.replace(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Every setting of a training run (all JSON-serialisable); each field's
    help is in :data:`FIELD_HELP` (``swinlab train --help`` shows them)."""

    name: str | None = _f(None, "a label for the run (default run folder runs/<name>)")
    description: str = _f("", "free text stored with the run")
    # model
    model: str = _f("swin_micro_patch4_window4_64", "model name (see 'swinlab models')")
    pretrained: str | None = _f(None, "initial weights: file, folder, run folder, URL or Hub id")
    pretrained_required: bool = _f(False, "refuse to run without pretrained weights (fine-tuning recipes)")
    drop_path_rate: float | None = _f(None, "stochastic depth rate (default: the model's)")
    model_overrides: dict[str, Any] = _f({}, "other constructor arguments of the model (--set model_overrides.K=V)")
    grad_checkpointing: bool = _f(False, "recompute each block in the backward pass (torch.utils.checkpoint): less "
                                         "memory, about a third more compute")
    # data
    data: str = _f("tiny-imagenet", "data set: tiny-imagenet, cifar10, cifar100 or folder")
    data_root: str | None = _f(None, "data location (tiny-imagenet: $SWINLAB_DATA, else the download cache)")
    num_classes: int | None = _f(None, "keep the first K classes (also sizes the head)")
    train_split: str = _f("train", "split to train on")
    val_split: str = _f("val", "split to validate on")
    holdout_fraction: float | None = _f(None, "validate on the last fraction of the train split instead of "
                                              "val_split (reference 000: 0.1)")
    cache: bool = _f(False, "decode the data set into memory first")
    skip_corrupt: bool = _f(False, "skip undecodable images (counted and listed) instead of failing")
    num_workers: int = _f(0, "data loader worker processes (a cached train set needs none: its batches are "
                                    "gathered from memory)", flag="--workers")
    load_size: int | None = _f(None, "resize every image to this side on load (folder data: default from img_size)")
    aug: AugmentConfig = _f(AugmentConfig(), "augmentation (--set aug.KEY=VALUE; keys of swinlab.data.AugmentConfig)")
    progressive_resize: list[list[float]] | None = _f(
        None, "training input sizes by fraction of the run, e.g. [[0, 32], [0.4, 48], [0.75, 64]]")
    # optimisation
    epochs: int = _f(10, "epochs (an upper bound when a time budget is set)")
    batch_size: int = _f(128, "batch size per process")
    eval_batch_size: int | None = _f(None, "validation batch size (default: batch_size)")
    accum_steps: int = _f(1, "gradient accumulation steps")
    lr: float = _f(1e-3, "base learning rate")
    lr_scale_batch: int | None = _f(None, "scale lr, warmup_lr_init and min_lr by global_batch / this (official: 512)")
    lr_schedule: ScheduleName = _f("cosine", "cosine (warmup + cosine to min_lr) or constant (warmup then constant)")
    warmup_epochs: float = _f(0.0, "linear warmup length in epochs (fractions allowed)")
    warmup_lr_init: float = _f(1e-6, "lr at the start of the warmup")
    min_lr: float = _f(1e-5, "lr at the end of the cosine")
    weight_decay: float = _f(0.05, "AdamW weight decay")
    decay_all_weights: bool = _f(False, "decay every weight, norms and biases too (Keras AdamW); default: "
                                        "the official Swin groups")
    betas: list[float] = _f([0.9, 0.999], "AdamW betas")
    eps: float = _f(1e-8, "AdamW epsilon (Keras: 1e-7)")
    layer_decay: float | None = _f(None, "layer-wise lr decay factor (fine-tuning)")
    linear_probe: bool = _f(False, "train the classifier head only")
    clip_grad: float | None = _f(None, "max gradient norm (null: no clipping)")
    # execution
    amp: AmpMode = _f("none", "mixed precision: none, bf16, fp16 (CUDA) or auto")
    eval_amp: bool = _f(False, "evaluate under the training autocast (default: full precision)")
    device: str = _f("auto", "auto, cpu, cuda, cuda:N")
    compile: bool = _f(False, "torch.compile the training step's model (Inductor); with train_step=graph the "
                              "whole step, as one graph")
    compile_mode: CompileMode = _f("default", "torch.compile mode (reduce-overhead: CUDA graphs)")
    train_step: StepName = _f("classic", "classic: kornia augmentation, then the model's step, its loss read every "
                                         "step; graph: per-image device augmentation and the whole step as one "
                                         "function with no host synchronisation (training.graph_step)")
    ema_decay: float | None = _f(None, "keep an exponential moving average of the weights (e.g. 0.999)")
    tta_hflip: bool = _f(False, "evaluate on each image and its mirror image (averaged logits)")
    seed: int = _f(0, "random seed")
    threads: int | None = _f(None, "torch CPU threads (default: torch's)")
    # run length
    max_train_batches: int | None = _f(None, "batches per epoch (quick runs)")
    max_val_batches: int | None = _f(None, "validation batches (quick runs)")
    time_budget_min: float | None = _f(None, "stop training after this many minutes (data loading included), then "
                                             "evaluate; on --resume: minutes more")
    time_budget_schedule: bool = _f(True, "with a time budget, the cosine follows the elapsed share of the budget")
    eval_every: int = _f(1, "evaluate every N epochs (and after the last)")
    # output
    out: str | None = _f(None, "run folder (default runs/<name or model>)")
    resume: str | None = _f(None, "run folder (or its last.pt) to continue, in that folder")
    overwrite: bool = _f(False, "start afresh in a run folder that already holds a checkpoint")
    export: bool = _f(False, "export the best weights to RUN/export (save_pretrained)")
    progress: bool = _f(True, "progress bars on a terminal; in a log file (not a terminal) one progress line "
                              "every progress_interval_s seconds instead")
    progress_interval_s: float = _f(30.0, "seconds between the progress lines printed when the output is not a "
                                          "terminal (at most one per log_every steps; 0: every log_every steps)")
    report: bool = _f(True, "at the end of 'swinlab train': evaluate best.pt on the val split into RUN/eval and "
                            "write the run report RUN/report.html (the Python train() does not)")
    tensorboard: bool = _f(True, "TensorBoard events in RUN/tb")
    plots: bool = _f(True, "draw RUN/curves.png")
    log_every: int = _f(20, "log train loss and lr every N optimizer steps (metrics_steps.csv, TensorBoard)")

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of every field (``aug`` as a dict)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["aug"] = self.aug.to_dict()
        return json.loads(json.dumps(out))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a mapping, checking keys, types and values.

        Raises:
            ConfigError: ``data`` is not a mapping, has an unknown key or a value
                of the wrong type (the message names ``source``, the key and
                the expected type), or the values are inconsistent.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object of settings, got {type(data).__name__}")
        cfg = cls()
        for key, value in data.items():
            _set_field(cfg, key, value, source)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        """Check value ranges and consistency.

        Raises:
            ConfigError: naming the offending key and value.
        """
        _validate_ranges(self, source)
        _validate_model(self, source)
        if self.resume and self.out and Path(self.out).expanduser().resolve() != self.run_dir.resolve():
            raise ConfigError(f"{source}: --resume continues in its own folder {self.run_dir}, and --out names "
                              f"another ({self.out}); drop --out, or copy the run folder and resume the copy")
        _validate_progressive(self.progressive_resize, source)

    @property
    def run_dir(self) -> Path:
        """The run folder: the resumed folder, else ``out``, else ``runs/<name or model>``."""
        if self.resume:
            p = Path(self.resume).expanduser()
            return p.parent if p.suffix == ".pt" else p
        return Path(self.out).expanduser() if self.out else Path("runs") / (self.name or self.model)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)
#: field name -> help text (the command line's flags are generated from it).
FIELD_HELP = {name: f.metadata["help"] for name, f in _FIELDS.items()}


def _validate_ranges(cfg: TrainConfig, source: str) -> None:
    def bad(key: str, expected: str) -> ConfigError:
        return ConfigError(f"{source}: {key}={getattr(cfg, key)!r} is invalid; expected {expected}")

    for key in ("epochs", "batch_size", "accum_steps", "eval_every", "log_every"):
        if getattr(cfg, key) < 1:
            raise bad(key, "an integer >= 1")
    for key in ("eval_batch_size", "max_train_batches", "max_val_batches", "num_classes", "load_size", "threads"):
        if getattr(cfg, key) is not None and getattr(cfg, key) < 1:
            raise bad(key, "null or an integer >= 1")
    checks = [
        ("num_workers", cfg.num_workers >= 0, "an integer >= 0"),
        ("lr", cfg.lr > 0, "a positive learning rate"),
        ("min_lr", cfg.min_lr >= 0, "a number >= 0"),
        ("warmup_lr_init", cfg.warmup_lr_init >= 0, "a number >= 0"),
        ("weight_decay", cfg.weight_decay >= 0, "a number >= 0"),
        ("warmup_epochs", cfg.warmup_epochs >= 0, "a number >= 0"),
        ("eps", cfg.eps > 0, "a positive number"),
        ("lr_scale_batch", cfg.lr_scale_batch is None or cfg.lr_scale_batch >= 1, "null or a positive batch size"),
        ("betas", len(cfg.betas) == 2 and all(0.0 <= b < 1.0 for b in cfg.betas), "two numbers in [0, 1)"),
        ("layer_decay", cfg.layer_decay is None or 0.0 < cfg.layer_decay <= 1.0, "null or a factor in (0, 1]"),
        ("clip_grad", cfg.clip_grad is None or cfg.clip_grad > 0, "null or a positive max norm"),
        ("ema_decay", cfg.ema_decay is None or 0.0 < cfg.ema_decay < 1.0, "null or a decay in (0, 1)"),
        ("time_budget_min", cfg.time_budget_min is None or cfg.time_budget_min > 0, "null or positive minutes"),
        ("progress_interval_s", cfg.progress_interval_s >= 0, "a number of seconds >= 0"),
        ("drop_path_rate", cfg.drop_path_rate is None or 0.0 <= cfg.drop_path_rate < 1.0, "null or a rate in [0, 1)"),
        ("holdout_fraction", cfg.holdout_fraction is None or 0.0 < cfg.holdout_fraction < 1.0,
         "null or a fraction in (0, 1)"),
    ]
    checks.append(("accum_steps", cfg.train_step == "classic" or cfg.accum_steps == 1,
                   "1 with train_step='graph' (one optimizer step per batch)"))
    checks.append(("amp", cfg.train_step == "classic" or cfg.amp != "fp16",
                   "none, bf16 or auto with train_step='graph' (it has no fp16 loss scaler)"))
    for key, ok, expected in checks:
        if not ok:
            raise bad(key, expected)


def _validate_model(cfg: TrainConfig, source: str) -> None:
    overrides = dict(cfg.model_overrides)
    for key in ("num_classes", "pretrained"):
        if key in overrides:
            raise ConfigError(f"{source}: model_overrides may not set {key}; use the top-level key {key}")
    try:
        check_overrides(cfg.model, overrides)
    except UnknownModelError as err:
        raise ConfigError(f"{source}: model: {err}") from None
    except UsageError as err:
        raise ConfigError(f"{source}: model_overrides: {err}") from None


def _validate_progressive(phases: list[list[float]] | None, source: str) -> None:
    if phases is None:
        return
    ok = isinstance(phases, list) and phases and all(
        isinstance(p, list) and len(p) == 2 and 0.0 <= p[0] < 1.0 and float(p[1]).is_integer() and p[1] >= 8
        for p in phases)
    starts = [p[0] for p in phases] if ok else []
    if not ok or starts[0] != 0.0 or starts != sorted(set(starts)):
        raise ConfigError(
            f"{source}: progressive_resize={phases!r} is invalid; expected [[0, size], [fraction, size], ...] "
            f"with increasing fractions in [0, 1) starting at 0 and sizes in pixels (>= 8)"
        )


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (list, tuple):
        return "a list"
    if origin is dict or tp is AugmentConfig:
        return "an object"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(ok, value converted to ``tp``) without lossy conversions."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _coerce(value, arg)
            if ok:
                return True, v
        return False, value
    if origin is Literal:
        return value in typing.get_args(tp), value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
        items = [_coerce(v, item_tp) if item_tp is not Any else (True, v) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if origin is dict:
        return isinstance(value, dict), dict(value) if isinstance(value, dict) else value
    return True, value


def _unknown_key(key: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(_FIELDS), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else f"; known keys: {', '.join(_FIELDS)}"
    return ConfigError(f"{source}: unknown key {key!r}{hint}")


def _set_field(cfg: TrainConfig, key: str, value: Any, source: str) -> None:
    head, dot, rest = key.partition(".")
    if head not in _FIELDS:
        raise _unknown_key(key, source)
    tp = _HINTS[head]
    if head == "aug":
        aug = cfg.aug.to_dict() if dot else {}
        if dot:
            aug[rest] = value
        elif not isinstance(value, dict):
            raise ConfigError(f"{source}: key 'aug' has value {value!r}; expected an object")
        else:
            aug = value
        try:
            cfg.aug = AugmentConfig.from_dict(aug)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        return
    if dot:
        if typing.get_origin(tp) is not dict:
            raise ConfigError(f"{source}: key {key!r}: {head!r} is not an object, it has no sub-keys")
        if not rest:
            raise ConfigError(f"{source}: key {key!r} has an empty sub-key")
        getattr(cfg, head)[rest] = value
        return
    ok, converted = _coerce(value, tp)
    if not ok:
        raise ConfigError(f"{source}: key {key!r} has value {value!r}; expected {_type_name(tp)}")
    setattr(cfg, head, converted)


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], source: str = "overrides") -> TrainConfig:
    """A copy of ``cfg`` with ``overrides`` applied (dotted keys for ``aug`` and
    ``model_overrides``), validated.

    Raises:
        ConfigError: unknown key, wrong type or an invalid resulting config.
    """
    new = TrainConfig.from_dict(cfg.to_dict(), source="config")
    for key, value in overrides.items():
        _set_field(new, key, value, source)
    new.validate(source)
    return new


def parse_set_items(items: list[str]) -> dict[str, Any]:
    """Parse ``["key=value", ...]``; values are JSON when they parse, else strings.

    Raises:
        ConfigError: an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"--set {item!r}: expected key=value (value as JSON when possible)")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def list_recipes() -> list[str]:
    """Names of the built-in recipes (``swinlab/configs/*.json``)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.json"))


def find_config(name_or_path: str | os.PathLike[str]) -> Path:
    """Resolve a recipe: a JSON file path, or the name of a built-in recipe
    (``quick_cpu_tiny_imagenet``, ``.json`` optional).

    Raises:
        InputNotFoundError: neither (the message lists the built-in recipes).
    """
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    stem = p.stem if p.suffix == ".json" else p.name
    builtin = RECIPES_DIR / f"{stem}.json"
    if p.parent == Path(".") and builtin.is_file():
        return builtin
    raise InputNotFoundError(
        f"config {str(name_or_path)!r} not found: not a JSON file, nor a built-in recipe; "
        f"available recipes: {', '.join(list_recipes()) or 'none'}"
    )


def load_config(name_or_path: str | os.PathLike[str]) -> TrainConfig:
    """Load a JSON recipe (see :func:`find_config`) into a :class:`TrainConfig`.

    Keys starting with ``_`` (``"_comment"``) are ignored.

    Raises:
        InputNotFoundError: no such recipe.
        ConfigError: invalid JSON, unknown keys or bad values (naming the file).
    """
    path = find_config(name_or_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if not k.startswith("_")}
    return TrainConfig.from_dict(data, source=str(path))
