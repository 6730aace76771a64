"""Gathering what ``report.html`` shows (:func:`write_report`).

Everything comes from files already written -- the run folder (``config.json``,
``metrics.jsonl``, ``curves.png``) and the evaluation folder (``metrics.json``,
``predictions.csv``, ``confusion_matrix.csv`` / ``.png`` of ``swinlab
evaluate``) -- plus the few val images shown: decoded from the data set,
and, for the example grid, run through the model once more for the last
stage's attention (:func:`swinlab.inference.attention.last_stage_map`).
Nothing is evaluated again, so a report of a 10,000-image evaluation takes
seconds.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputNotFoundError, InvalidInputError
from ..inference.attention import denormalize, last_stage_map
from ..inference.loading import ModelInfo
from ..inference.reports import (most_confused_pairs, ranked_classes, read_confusion_csv, read_predictions_csv,
                                 short_name)
from ..io.files import atomic_write_text
from ..io.rundir import RunDir
from ..plots import attention_overlay
from ..training.logging import read_metrics
from ..version import __version__
from .images import file_data_uri, pixels_data_uri, thumbnail
from .page import render_page
from .run_info import read_config, run_tables

__all__ = ["write_report", "EVAL_FILES"]

#: files of ``swinlab evaluate`` that the report reads from the evaluation folder.
EVAL_FILES = ("metrics.json", "predictions.csv")
_THUMBS_PER_CLASS = 3
_THUMBS_PER_PAIR = 4
_GRID = 16


def _read_eval(eval_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], torch.Tensor]:
    """``metrics.json``, the prediction rows and the confusion matrix of an evaluation folder.

    Raises:
        InputNotFoundError: a file of :data:`EVAL_FILES` is missing.
        InvalidInputError: an unreadable file (named).
    """
    for name in EVAL_FILES:
        if not (eval_dir / name).is_file():
            raise InputNotFoundError(f"{eval_dir / name} is missing: run 'swinlab evaluate' first")
    try:
        metrics = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    except ValueError as e:
        raise InvalidInputError(f"{eval_dir / 'metrics.json'}: not JSON ({e})") from None
    rows = read_predictions_csv(eval_dir / "predictions.csv")
    names = metrics.get("class_names") or []
    if (eval_dir / "confusion_matrix.csv").is_file():
        confusion = read_confusion_csv(eval_dir / "confusion_matrix.csv")
    else:
        confusion = torch.zeros(len(names), len(names), dtype=torch.int64)
        for r in rows:
            confusion[r["label"], r["predicted"]] += 1
    if confusion.shape[0] != len(names):
        raise InvalidInputError(f"{eval_dir}: {len(names)} class names in metrics.json for a "
                                f"{confusion.shape[0]}-class confusion matrix")
    return metrics, rows, confusion


class _Images:
    """The val images the page shows, decoded once each, as data URIs."""

    def __init__(self, dataset: Any, rows: list[dict[str, Any]]) -> None:
        self.dataset, self.rows = dataset, rows
        self._uris: dict[int, str] = {}
        names = list(getattr(dataset, "image_names", None) or [])
        if len(rows) > len(dataset) or any(not 0 <= r["index"] < len(dataset) for r in rows) or (
                names and any(names[r["index"]] != r["image"] for r in rows[:50])):
            raise InvalidInputError("predictions.csv does not match the data set (other images or order): run "
                                    "'swinlab evaluate' again")

    def uri(self, index: int) -> str:
        if index not in self._uris:
            self._uris[index] = pixels_data_uri(thumbnail(self.dataset.get_image(index)))
        return self._uris[index]

    def thumb(self, row: dict[str, Any], names: list[str]) -> dict[str, Any]:
        ok = row["label"] == row["predicted"]
        caption = "right" if ok else f"as {short_name(names[row['predicted']])}"
        return {"uri": self.uri(row["index"]), "caption": caption, "ok": ok,
                "title": Path(row["image"]).name + f" ({row['confidence']:.0%})"}


def _class_entries(classes: list[int], acc: list[Any], counts: list[int], names: list[str], images: _Images,
                   wrong_first: bool) -> list[dict[str, Any]]:
    """Rows of the best / worst table: the class and a few of its images
    (misclassified ones first for the worst classes, right ones first for the best)."""
    by_class: dict[int, list[dict[str, Any]]] = {c: [] for c in classes}
    for r in images.rows:
        if r["label"] in by_class:
            by_class[r["label"]].append(r)
    out = []
    for c in classes:
        rows = sorted(by_class[c], key=lambda r: (r["label"] == r["predicted"]) == wrong_first)
        out.append({"name": short_name(names[c]), "full": names[c], "accuracy": acc[c], "count": counts[c],
                    "thumbs": [images.thumb(r, names) for r in rows[:_THUMBS_PER_CLASS]]})
    return out


def _pair_entries(confusion: torch.Tensor, names: list[str], images: _Images) -> list[dict[str, Any]]:
    """The 10 most-confused pairs with a few images of each confusion."""
    pairs = most_confused_pairs(confusion, names, 10)
    for p in pairs:
        rows = [r for r in images.rows if r["label"] == p["true"] and r["predicted"] == p["predicted"]]
        p["thumbs"] = [images.thumb(r, names) for r in rows[:_THUMBS_PER_PAIR]]
        p["true_short"], p["predicted_short"] = short_name(p["true_name"]), short_name(p["predicted_name"])
    return pairs


def _examples(model: nn.Module | None, info: ModelInfo | None, images: _Images,
              names: list[str]) -> tuple[list[dict[str, Any]], str | None]:
    """The grid: the first images of the split with their labels and, when
    the PyTorch model is at hand, the last stage's attention over the model input."""
    out, note = [], None
    for r in images.rows[:_GRID]:
        item = {"uri": images.uri(r["index"]), "true": short_name(names[r["label"]]),
                "predicted": short_name(names[r["predicted"]]), "confidence": r["confidence"],
                "ok": r["label"] == r["predicted"], "image": Path(r["image"]).name, "overlay": None}
        if model is not None and note is None:
            try:
                x = images.dataset[r["index"]][0]
                pixels = attention_overlay(denormalize(x, info.mean, info.std), last_stage_map(model, x))
                item["overlay"] = pixels_data_uri(pixels)
            except (TypeError, ValueError) as e:
                note = f"no attention overlay: {e}"
        out.append(item)
    if model is None:
        note = "no attention overlay: the PyTorch model was not available (ONNX runtime)"
    return out, note


def _accuracy_rows(metrics: dict[str, Any], history: list[dict[str, Any]], train_tta: bool) -> list[dict[str, Any]]:
    """val top-1 / top-5: the evaluation (with and without flip averaging when
    both were measured) and the training's last validation (``train_tta``: flip-averaged)."""
    n = metrics.get("num_images")
    rows = []
    if metrics.get("tta_hflip") and metrics.get("no_flip"):
        rows.append({"what": "evaluation, flip averaging", "top1": metrics["top1"], "top5": metrics["top5"], "n": n})
        rows.append({"what": "evaluation, no flip averaging", "top1": metrics["no_flip"]["top1"],
                     "top5": metrics["no_flip"]["top5"], "n": n})
    else:
        rows.append({"what": "evaluation" + (", flip averaging" if metrics.get("tta_hflip") else ""),
                     "top1": metrics["top1"], "top5": metrics["top5"], "n": n})
    last = next((r for r in reversed(history) if r.get("val_top1") is not None), None)
    if last is not None:
        flip = ", flip averaging" if train_tta else ""
        rows.append({"what": f"training's last validation (epoch {last.get('epoch_frac', last['epoch']):.2f}{flip})",
                     "top1": last["val_top1"], "top5": last.get("val_top5"), "n": None})
    return rows


def _files(run_dir: Path | None, eval_dir: Path, out_dir: Path) -> list[dict[str, Any]]:
    """Links (relative to the page) to the files of the run and of the evaluation."""
    found, skip = [], {eval_dir.resolve(), (out_dir / "report.html").resolve()}
    for folder in [p for p in (run_dir, eval_dir) if p is not None]:
        for p in sorted(folder.iterdir()):
            if p.name.startswith(".") or p.name == RunDir.LOCK or p.resolve() in skip:
                continue
            size = p.stat().st_size if p.is_file() else None
            found.append({"href": os.path.relpath(p, out_dir) + ("/" if p.is_dir() else ""), "size": size})
    return found


def write_report(path: str | Path, *, eval_dir: str | Path, dataset: Any, model: nn.Module | None = None,
                 info: ModelInfo | None = None, run_dir: str | Path | None = None) -> Path:
    """Write the self-contained ``report.html`` of an evaluated model.

    Args:
        path: the page to write (atomically).
        eval_dir: the evaluation folder of ``swinlab evaluate`` (its
            :data:`EVAL_FILES`, and ``confusion_matrix.csv`` / ``.png``).
        dataset: the evaluated data set (same images and order; items
            preprocessed for the model, ``get_image`` raw).
        model, info: the eager PyTorch model and its ``ModelInfo`` for the
            attention overlays (None: no overlays).
        run_dir: the run folder (config, curves, history), if any.

    Returns:
        ``path``.

    Raises:
        InputNotFoundError: evaluation files missing.
        InvalidInputError: unreadable evaluation files, or predictions that
            do not match ``dataset``.
    """
    t0 = time.time()
    path, eval_dir = Path(path), Path(eval_dir)
    run_dir = Path(run_dir) if run_dir is not None else None
    metrics, rows, confusion = _read_eval(eval_dir)
    names = [str(n) for n in metrics["class_names"]]
    history = read_metrics(run_dir / RunDir.METRICS) if run_dir is not None else []
    images = _Images(dataset, rows)
    acc, counts = metrics["per_class_acc"], confusion.sum(dim=1).tolist()
    best, worst = ranked_classes([float("nan") if a is None else a for a in acc])
    examples, note = _examples(model, info, images, names)
    ctx = {
        "title": f"swinlab report: {run_dir.name if run_dir else metrics.get('model_name')}",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "version": __version__,
        "tables": run_tables(run_dir, metrics, history), "accuracy": _accuracy_rows(metrics, history, bool(read_config(run_dir).get("tta_hflip"))),
        "curves": file_data_uri(run_dir / RunDir.CURVES) if run_dir else None,
        "best": _class_entries(best, acc, counts, names, images, wrong_first=False),
        "worst": _class_entries(worst, acc, counts, names, images, wrong_first=True),
        "pairs": _pair_entries(confusion, names, images),
        "confusion": file_data_uri(eval_dir / "confusion_matrix.png"),
        "examples": examples, "examples_note": note, "num_classes": len(names),
        "files": _files(run_dir, eval_dir, path.parent),
    }
    ctx["build_s"] = time.time() - t0
    return atomic_write_text(path, render_page(ctx))
