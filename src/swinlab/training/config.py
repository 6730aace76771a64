"""The training run configuration: a typed dataclass, JSON recipes and overrides.

A recipe is a JSON object whose keys are fields of :class:`TrainConfig`
(``configs/*.json``). The CLI loads a recipe, then applies explicit flags
and generic ``--set key=value`` overrides (dotted keys reach into the dict
fields: ``aug.hflip=0``, ``model_overrides.window_size=8``). Unknown keys and
values of the wrong type raise :class:`ConfigError` naming the key, the value
and what was expected.

The optimisation fields follow the official Swin training code
(microsoft/Swin-Transformer ``config.py``: ``BASE_LR``, ``WARMUP_LR``,
``MIN_LR``, ``WEIGHT_DECAY``, ``CLIP_GRAD``, ``ACCUMULATION_STEPS``, the
linear lr scaling by ``global batch / 512``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ConfigError",
    "TrainConfig",
    "load_config",
    "find_config",
    "apply_overrides",
    "parse_set_items",
]

AmpMode = Literal["none", "bf16", "fp16", "auto"]
ScheduleName = Literal["cosine", "constant"]


class ConfigError(ValueError):
    """A bad configuration: unknown key, wrong type or inconsistent values."""


@dataclass
class TrainConfig:
    """Every setting of a training run (all JSON-serialisable).

    Model:
        model: a registered model name (``swinlab models``).
        pretrained: weights to start from (file, folder, URL or Hub id).
        pretrained_required: refuse to run without ``pretrained`` (fine-tuning recipes).
        drop_path_rate: stochastic depth override (None: the model's).
        model_overrides: other constructor arguments of the model.
    Data (see :func:`swinlab.data.build_dataset`):
        data: ``tiny-imagenet``, ``cifar10``, ``cifar100`` or ``folder``.
        data_root: the data location (None: the data set's default).
        num_classes: keep the first K classes (also sizes the head).
        train_split, val_split, cache, skip_corrupt, num_workers.
        load_size: resize every image (shorter side, then centre crop) to this
            side on load so batches stack (default for ``folder``: img_size /
            eval_crop_ratio rounded up; none for the fixed-size data sets).
        aug: :class:`swinlab.data.AugmentConfig` fields (``img_size``
            defaults to the model's input size).
    Optimisation:
        epochs, batch_size (per process), eval_batch_size, accum_steps.
        lr: base learning rate; lr_scale_batch: when set (official: 512) the
            lr, warmup_lr_init and min_lr are multiplied by
            ``global_batch / lr_scale_batch``.
        lr_schedule: ``cosine`` (linear warmup + cosine to min_lr) or
            ``constant`` (warmup then constant).
        warmup_epochs (may be fractional), warmup_lr_init, min_lr.
        weight_decay, betas, eps: AdamW. layer_decay: layer-wise lr decay
            factor (fine-tuning). linear_probe: train the head only.
        clip_grad: max gradient norm (None: no clipping). label smoothing,
            mixup and cutmix live in ``aug``.
    Execution:
        amp: ``none``, ``bf16``, ``fp16`` (CUDA, with a GradScaler) or
            ``auto`` (fp16 on CUDA; bf16 on CPUs with AMX / AVX512-BF16, else
            none). eval_amp: evaluate under the same autocast (default: full
            precision, so the numbers match ``swinlab evaluate``). device: ``auto``, ``cpu``,
            ``cuda``, ``cuda:1``... compile: torch.compile the model.
        ema_decay: keep an exponential moving average of the weights (None: off).
        seed, threads (torch intra-op threads; None: torch's default).
    Run length (quick runs and benchmarks):
        max_train_batches, max_val_batches: per-epoch batch limits.
        time_budget_min: stop training when this many minutes of wall clock
            (from the start of the run, data loading included) are spent,
            then evaluate. time_budget_schedule: with a budget, the cosine
            schedule follows the elapsed fraction of the budget when that is
            ahead of the step count, so the lr reaches min_lr when time is up.
        eval_every: evaluate every N epochs (and always after the last).
    Output:
        out: the run directory (None: ``runs/<name or model>``). name: a label.
        resume: a checkpoint file or run directory to continue from.
        overwrite: start afresh in a run directory that already holds a checkpoint.
        export: export the best weights with :func:`swinlab.weights.save_pretrained`.
        progress, tensorboard, plots: tqdm bars, TensorBoard events, curves.png.
    """

    name: str | None = None
    description: str = ""
    # model
    model: str = "swin_micro_patch4_window4_64"
    pretrained: str | None = None
    pretrained_required: bool = False
    drop_path_rate: float | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # data
    data: str = "tiny-imagenet"
    data_root: str | None = None
    num_classes: int | None = None
    train_split: str = "train"
    val_split: str = "val"
    cache: bool = False
    skip_corrupt: bool = False
    num_workers: int = 0
    load_size: int | None = None
    aug: dict[str, Any] = field(default_factory=dict)
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int | None = None
    accum_steps: int = 1
    lr: float = 1e-3
    lr_scale_batch: int | None = None
    lr_schedule: ScheduleName = "cosine"
    warmup_epochs: float = 0.0
    warmup_lr_init: float = 1e-6
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    layer_decay: float | None = None
    linear_probe: bool = False
    clip_grad: float | None = None
    # execution
    amp: AmpMode = "none"
    eval_amp: bool = False
    device: str = "auto"
    compile: bool = False
    ema_decay: float | None = None
    seed: int = 0
    threads: int | None = None
    # run length
    max_train_batches: int | None = None
    max_val_batches: int | None = None
    time_budget_min: float | None = None
    time_budget_schedule: bool = True
    eval_every: int = 1
    # output
    out: str | None = None
    resume: str | None = None
    overwrite: bool = False
    export: bool = False
    progress: bool = True
    tensorboard: bool = True
    plots: bool = True

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of every field."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a mapping, checking keys and types.

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

        def bad(key: str, expected: str) -> ConfigError:
            return ConfigError(f"{source}: {key}={getattr(self, key)!r} is invalid; expected {expected}")

        for key in ("epochs", "batch_size", "accum_steps", "eval_every"):
            if getattr(self, key) < 1:
                raise bad(key, "an integer >= 1")
        for key in ("eval_batch_size", "max_train_batches", "max_val_batches", "num_classes", "load_size"):
            v = getattr(self, key)
            if v is not None and v < 1:
                raise bad(key, "null or an integer >= 1")
        if self.num_workers < 0:
            raise bad("num_workers", "an integer >= 0")
        if self.lr <= 0:
            raise bad("lr", "a positive learning rate")
        if self.min_lr < 0 or self.warmup_lr_init < 0 or self.weight_decay < 0:
            raise ConfigError(f"{source}: min_lr, warmup_lr_init and weight_decay must be >= 0")
        if self.warmup_epochs < 0:
            raise bad("warmup_epochs", "a number >= 0")
        if self.lr_scale_batch is not None and self.lr_scale_batch < 1:
            raise bad("lr_scale_batch", "null or a positive batch size (official: 512)")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise bad("betas", "two numbers in [0, 1)")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise bad("layer_decay", "null or a factor in (0, 1]")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise bad("clip_grad", "null or a positive max norm")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise bad("ema_decay", "null or a decay in (0, 1)")
        if self.time_budget_min is not None and self.time_budget_min <= 0:
            raise bad("time_budget_min", "null or a positive number of minutes")
        if self.drop_path_rate is not None and not 0.0 <= self.drop_path_rate < 1.0:
            raise bad("drop_path_rate", "null or a rate in [0, 1)")
        if self.threads is not None and self.threads < 1:
            raise bad("threads", "null or an integer >= 1")

    @property
    def run_dir(self) -> Path:
        """``out`` or ``runs/<name or model>``."""
        return Path(self.out) if self.out else Path("runs") / (self.name or self.model)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


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
    if origin is dict:
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
        out = []
        for item in value:
            ok, v = _coerce(item, item_tp) if item_tp is not Any else (True, item)
            if not ok:
                return False, value
            out.append(v)
        return True, out
    if origin is dict:
        return isinstance(value, dict), dict(value) if isinstance(value, dict) else value
    return True, value


def _set_field(cfg: TrainConfig, key: str, value: Any, source: str) -> None:
    head, dot, rest = key.partition(".")
    if head not in _FIELDS:
        import difflib

        close = difflib.get_close_matches(head, list(_FIELDS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else f"; known keys: {', '.join(_FIELDS)}"
        raise ConfigError(f"{source}: unknown key {key!r}{hint}")
    tp = _HINTS[head]
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
    """A copy of ``cfg`` with ``overrides`` applied (dotted keys for dict fields).

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


def find_config(name_or_path: str | os.PathLike[str]) -> Path:
    """Resolve a recipe: a JSON path, or a recipe name looked up in
    ``./configs/`` and the repository's ``configs/`` (``.json`` optional).

    Raises:
        FileNotFoundError: nothing found (the message lists the places tried
            and the recipes available).
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    stem = p.name if p.suffix == ".json" else p.name + ".json"
    dirs = [Path.cwd() / "configs", Path(__file__).resolve().parents[3] / "configs",
            Path(__file__).resolve().parents[1] / "configs"]
    tried = [p]
    for d in dirs:
        cand = d / stem
        tried.append(cand)
        if cand.is_file():
            return cand
    available = sorted({c.stem for d in dirs if d.is_dir() for c in d.glob("*.json")})
    raise FileNotFoundError(
        f"config {str(name_or_path)!r} not found (tried: {', '.join(map(str, tried))}); "
        f"available recipes: {', '.join(available) or 'none'}"
    )


def load_config(name_or_path: str | os.PathLike[str]) -> TrainConfig:
    """Load a JSON recipe (see :func:`find_config`) into a :class:`TrainConfig`.

    Raises:
        FileNotFoundError: no such recipe.
        ConfigError: invalid JSON, unknown keys or bad values (naming the file).
    """
    path = find_config(name_or_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if not k.startswith("_")}  # "_comment" keys
    return TrainConfig.from_dict(data, source=str(path))
