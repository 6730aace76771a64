"""The report's description of a run: model, data, recipe and hardware, from
``config.json`` (the resolved training config with its ``_resolved`` part),
the epoch history and the evaluation's ``metrics.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io.rundir import RunDir

__all__ = ["run_tables", "read_config"]

_RECIPE_KEYS = ("name", "epochs", "time_budget_min", "batch_size", "accum_steps", "lr", "lr_schedule", "warmup_epochs",
                "min_lr", "weight_decay", "clip_grad", "ema_decay", "progressive_resize", "amp", "tta_hflip", "seed",
                "pretrained")
_AUG_KEYS = ("img_size", "random_resized_crop", "pad_crop", "hflip", "randaugment_n", "randaugment_m", "color_jitter",
             "mixup_alpha", "cutmix_alpha", "label_smoothing", "random_erasing", "eval_crop_ratio")


def read_config(run_dir: Path | None) -> dict[str, Any]:
    """``config.json`` of a run folder (empty when absent or unreadable)."""
    if run_dir is None or not (run_dir / RunDir.CONFIG).is_file():
        return {}
    try:
        return json.loads((run_dir / RunDir.CONFIG).read_text(encoding="utf-8"))
    except ValueError:
        return {}


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _model_rows(cfg: dict[str, Any], metrics: dict[str, Any]) -> list[tuple[str, str]]:
    r = cfg.get("_resolved", {})
    rows = [("model", metrics.get("model_name") or cfg.get("model", "?"))]
    if r.get("num_params"):
        rows.append(("parameters", f"{r['num_params'] / 1e6:.2f}M"))
    if cfg.get("model_overrides"):
        rows.append(("model overrides", _value(cfg["model_overrides"])))
    rows.append(("checkpoint", f"{Path(str(metrics.get('checkpoint', '?'))).name}"
                               + (f" (epoch {metrics['epoch']})" if metrics.get("epoch") is not None else "")
                               + (" EMA weights" if metrics.get("ema") else "")))
    pre = metrics.get("preprocessing") or {}
    if pre:
        rows.append(("input", f"{pre.get('img_size')} px, centre crop {pre.get('crop_ratio')}, "
                              f"{pre.get('interpolation')}"))
    return rows


def _data_rows(cfg: dict[str, Any], metrics: dict[str, Any]) -> list[tuple[str, str]]:
    r = cfg.get("_resolved", {})
    rows = [("data set", f"{metrics.get('data')} ({metrics.get('data_root') or 'default location'})"),
            ("classes", str(metrics.get("num_classes"))),
            ("evaluated split", f"{metrics.get('split')}: {metrics.get('num_images')} images"
                                + (f", {metrics['skipped']} unreadable skipped" if metrics.get("skipped") else "")
                                + (f" (first {metrics['max_batches']} batches)" if metrics.get("max_batches") else ""))]
    if r.get("train_images"):
        rows.append(("training images", str(r["train_images"])))
    return rows


def _recipe_rows(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [(k, _value(cfg[k])) for k in _RECIPE_KEYS if cfg.get(k) not in (None, "", [], {})]
    aug = cfg.get("aug") or {}
    keys = [k for k in _AUG_KEYS if aug.get(k) is not None and (isinstance(aug[k], bool) or aug[k] != 0)
            and (k != "randaugment_m" or aug.get("randaugment_n"))]  # (zero: off)
    rows += [(f"aug.{k}", _value(aug[k])) for k in keys]
    return rows


def _hardware_rows(cfg: dict[str, Any], metrics: dict[str, Any], history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    r = cfg.get("_resolved", {})
    rows = []
    if r:
        rows += [("training device", f"{r.get('device', '?')} (ISA {r.get('cpu_isa', '?')})"),
                 ("training precision", f"{r.get('amp_dtype', '?')} ({r.get('precision_reason', '')})"),
                 ("training threads", str(r.get("threads", "not recorded")))]
    speeds = [h["images_per_s"] for h in history if h.get("images_per_s")]
    if speeds:
        rows.append(("training speed", f"{speeds[-1]:.0f} images/s (last epoch)"))
    if history:
        last = history[-1]
        rows.append(("training wall time", f"{last.get('time_s', 0):.0f} s for {last.get('epoch_frac', 0):.2f} "
                                           f"epochs ({len(history)} epoch record(s))"))
    ev = metrics.get("runtime") or {}
    if ev:
        rows.append(("evaluation", f"{ev.get('device')} (ISA {ev.get('cpu_isa')}), {ev.get('precision')}, "
                                   f"{ev.get('threads')} threads: {ev.get('images_per_s', 0):.0f} images/s, "
                                   f"{ev.get('wall_s', 0):.1f} s"))
    return rows


def run_tables(run_dir: Path | None, metrics: dict[str, Any],
               history: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"sections": [(title, [(key, value), ...]), ...], "config": JSON text or None}``."""
    cfg = read_config(run_dir)
    sections = [("Model", _model_rows(cfg, metrics)), ("Data", _data_rows(cfg, metrics))]
    if cfg:
        sections.append(("Recipe", _recipe_rows(cfg)))
    sections.append(("Hardware", _hardware_rows(cfg, metrics, history)))
    return {"sections": sections, "config": json.dumps(cfg, indent=2) if cfg else None}
