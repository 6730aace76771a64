"""Reports of ``swinlab evaluate``: per-class accuracy CSV (the confusion
matrix figure is :func:`swinlab.plots.plot_confusion_matrix`)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from ..io.files import atomic_write_text

__all__ = ["save_per_class_csv"]


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
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["index", "class_name", "accuracy", "count"])
    for i, (name, a, n) in enumerate(zip(class_names, per_class_acc, counts)):
        w.writerow([i, name, "" if a is None or math.isnan(a) else f"{a:.4f}", int(n)])
    return atomic_write_text(path, buf.getvalue())
