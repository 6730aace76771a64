"""What ``swinlab evaluate`` writes and ``swinlab report`` reads, besides
``metrics.json``: the per-class accuracy CSV, the confusion matrix as counts
(CSV), every image's prediction (CSV), and the analyses of the confusion
matrix -- the most-confused class pairs and the best / worst classes (the
figure is :func:`swinlab.plots.plot_confusion_matrix`).

The confusion matrix is ``(C, C)`` counts, row: true class, column:
predicted class (:class:`swinlab.training.metrics.MetricAccumulator`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidInputError
from ..io.files import atomic_write_text

__all__ = [
    "save_per_class_csv", "save_confusion_csv", "read_confusion_csv", "save_predictions_csv",
    "read_predictions_csv", "most_confused_pairs", "ranked_classes", "per_class_by_name", "unique_names",
    "short_name",
]

PREDICTION_COLUMNS = ("index", "image", "label", "predicted", "confidence")


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def save_per_class_csv(
    path: str | Path,
    class_names: Sequence[str],
    per_class_acc: Sequence[float],
    counts: Sequence[int],
) -> Path:
    """Write ``index,class_name,accuracy,count`` rows (accuracy in percent,
    empty for a class without samples).

    Raises:
        ValueError: the three sequences differ in length.
    """
    if not (len(class_names) == len(per_class_acc) == len(counts)):
        raise ValueError(
            f"class_names ({len(class_names)}), per_class_acc ({len(per_class_acc)}) and counts "
            f"({len(counts)}) must have the same length"
        )
    rows = [[i, name, "" if a is None or math.isnan(a) else f"{a:.4f}", int(n)]
            for i, (name, a, n) in enumerate(zip(class_names, per_class_acc, counts))]
    return atomic_write_text(path, _csv_text(["index", "class_name", "accuracy", "count"], rows))


def save_confusion_csv(path: str | Path, confusion: torch.Tensor, class_names: Sequence[str]) -> Path:
    """Write the ``(C, C)`` counts: a header ``true \\ predicted,<name 0>,...``,
    then one row per true class (its name, then C counts)."""
    m = confusion.tolist()
    if len(m) != len(class_names):
        raise ValueError(f"{len(class_names)} class names for a {len(m)}x{len(m)} confusion matrix")
    rows = [[name, *row] for name, row in zip(class_names, m)]
    return atomic_write_text(path, _csv_text(["true \\ predicted", *class_names], rows))


def read_confusion_csv(path: str | Path) -> torch.Tensor:
    """The ``(C, C)`` int64 counts of :func:`save_confusion_csv`'s file.

    Raises:
        InvalidInputError: not such a file (the message names it).
    """
    with Path(path).open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    try:
        m = torch.tensor([[int(v) for v in row[1:]] for row in rows], dtype=torch.int64)
    except (ValueError, TypeError):
        raise InvalidInputError(f"{path}: expected a confusion matrix of counts (save_confusion_csv)") from None
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise InvalidInputError(f"{path}: expected a square confusion matrix, got {tuple(m.shape)}")
    return m


def save_predictions_csv(path: str | Path, image_names: Sequence[str], labels: Sequence[int],
                         predictions: torch.Tensor, confidence: torch.Tensor) -> Path:
    """Write one row per evaluated image: ``index,image,label,predicted,confidence``
    (index into the evaluated split, true and predicted class indices, the
    predicted class's softmax probability).

    Raises:
        ValueError: lengths differ.
    """
    n = len(predictions)
    if not (len(confidence) == n <= len(image_names) and n <= len(labels)):
        raise ValueError(f"{n} predictions, {len(confidence)} confidences for {len(image_names)} images")
    rows = [[i, image_names[i], int(labels[i]), int(p), f"{float(c):.4f}"]
            for i, (p, c) in enumerate(zip(predictions.tolist(), confidence.tolist()))]
    return atomic_write_text(path, _csv_text(PREDICTION_COLUMNS, rows))


def read_predictions_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of :func:`save_predictions_csv`'s file (``index``, ``label``,
    ``predicted`` as int, ``confidence`` as float).

    Raises:
        InvalidInputError: a missing column or a bad value (file and line named).
    """
    out = []
    with Path(path).open(newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), 2):
            try:
                out.append({"index": int(row["index"]), "image": row["image"], "label": int(row["label"]),
                            "predicted": int(row["predicted"]), "confidence": float(row["confidence"])})
            except (KeyError, TypeError, ValueError):
                raise InvalidInputError(f"{path}:{line}: expected the columns {', '.join(PREDICTION_COLUMNS)}") from None
    return out


def most_confused_pairs(confusion: torch.Tensor, class_names: Sequence[str], k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal entries of a confusion matrix.

    Args:
        confusion: ``(C, C)`` counts (row: true, column: predicted).
        class_names: C names.
        k: pairs to return (fewer when fewer entries are non-zero).

    Returns:
        per pair, largest count first (ties: lower true, then predicted
        index): ``true``, ``predicted`` (indices), ``true_name``,
        ``predicted_name``, ``count`` (the matrix entry) and ``rate`` (percent
        of the true class's images predicted as the other class).

    Raises:
        ValueError: a non-square matrix or a wrong number of names.
    """
    m = torch.as_tensor(confusion).to(torch.int64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or len(class_names) != m.shape[0]:
        raise ValueError(f"expected a (C, C) confusion matrix and C names, got {tuple(m.shape)} and "
                         f"{len(class_names)} names")
    off = m.clone()
    off.fill_diagonal_(0)
    C = m.shape[0]
    flat = off.flatten().tolist()
    order = sorted((i for i, v in enumerate(flat) if v > 0), key=lambda i: (-flat[i], i))[:k]
    rows = m.sum(dim=1).tolist()
    return [{"true": i // C, "predicted": i % C, "true_name": class_names[i // C],
             "predicted_name": class_names[i % C], "count": flat[i], "rate": 100.0 * flat[i] / rows[i // C]}
            for i in order]


def ranked_classes(per_class_acc: Sequence[float], k: int = 10) -> tuple[list[int], list[int]]:
    """The ``k`` best and the ``k`` worst classes by top-1 accuracy (classes
    without samples left out; ties: lower index first); when there are fewer
    than ``2 k`` classes each list gets half of them (at least one).

    Returns:
        ``(best, worst)`` class indices, best first / worst first.
    """
    seen = [i for i, a in enumerate(per_class_acc) if a is not None and not math.isnan(a)]
    k = max(1, min(k, len(seen) // 2)) if seen else 0
    best = sorted(seen, key=lambda i: (-per_class_acc[i], i))[:k]
    worst = sorted(seen, key=lambda i: (per_class_acc[i], i))[:k]
    return best, worst


def unique_names(class_names: Sequence[str], classes: Sequence[str] | None = None) -> list[str]:
    """Class names that can key a JSON object: a name used by several classes
    gets its class id (else its index) appended, ``"crane (n02012849)"``."""
    counts: dict[str, int] = {}
    for name in class_names:
        counts[name] = counts.get(name, 0) + 1
    ids = list(classes) if classes and len(classes) == len(class_names) else [str(i) for i in range(len(class_names))]
    return [f"{n} ({ids[i]})" if counts[n] > 1 else n for i, n in enumerate(class_names)]


def per_class_by_name(class_names: Sequence[str], per_class_acc: Sequence[float],
                      counts: Sequence[int]) -> dict[str, dict[str, Any]]:
    """``{name: {"accuracy": percent or None, "count": images}}`` in class order
    (names as given: make them unique first, :func:`unique_names`)."""
    return {name: {"accuracy": None if a is None or math.isnan(a) else a, "count": int(n)}
            for name, a, n in zip(class_names, per_class_acc, counts)}


def short_name(name: str) -> str:
    """The first synonym of a WordNet-style class name (``"goldfish, Carassius auratus"`` -> ``"goldfish"``)."""
    return name.split(",")[0].strip() or name
