"""Metric logs of a run: per epoch (``metrics.jsonl``, ``metrics.csv``), per
step (``metrics_steps.csv``) and TensorBoard (``tb/``).

Epoch records follow reference 003's JSON log (train_loss, train_acc,
val_loss, val_acc, lr) with top-5, EMA, throughput and timing added;
accuracies are percentages, times seconds, the lr the value after the
epoch's last step, ``epoch_frac`` the (fractional) epoch the record was
taken at -- a run stopped by its time budget inside epoch 4 after 45% of it
has ``epoch_frac`` 3.45.

The epoch files are views of the history that ``last.pt`` carries: they are
rewritten whole (atomically) from it, so a crash never leaves them ahead of
or behind the checkpoint. The step log is appended; on resume it is cut back
to the checkpoint's step (:meth:`StepLog.truncate`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

from ..errors import InvalidInputError
from ..io.files import atomic_write_text

__all__ = ["COLUMNS", "STEP_COLUMNS", "write_epoch_logs", "read_metrics", "read_steps", "StepLog"]

COLUMNS = (
    "epoch", "epoch_frac", "step", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "ema_val_loss",
    "ema_val_top1", "ema_val_top5", "lr", "img_size", "images_per_s", "epoch_time_s", "train_images",
    "partial_epoch",
)
STEP_COLUMNS = ("step", "epoch_frac", "train_loss", "lr", "img_size", "images_per_s")


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def write_epoch_logs(run_dir: Path, records: Sequence[dict[str, Any]]) -> None:
    """(Re)write ``metrics.jsonl`` and ``metrics.csv`` from the epoch records."""
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in records:
        w.writerow({k: _fmt(r.get(k)) for k in COLUMNS})
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` (empty list when absent).

    Raises:
        ValueError: a line that is not JSON (naming the file and line).
    """
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"{path}:{i}: not a JSON record ({e.msg})") from None
    return out


def read_steps(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``metrics_steps.csv`` as floats (incomplete lines skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                rows.append({k: float(row[k]) for k in STEP_COLUMNS if row.get(k) not in (None, "")})
            except ValueError:
                continue  # a line cut by a crash
    return [r for r in rows if "step" in r and "train_loss" in r]


class StepLog:
    """Per-step scalars: rows of ``metrics_steps.csv`` and TensorBoard events.

    Args:
        run_dir: the run folder.
        tensorboard: also write TensorBoard events to ``run_dir/tb``.
        resume_step: when resuming, the checkpoint's step: later rows (and
            TensorBoard events) are dropped first.
    """

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int | None = None) -> None:
        self.path = Path(run_dir) / "metrics_steps.csv"
        self.truncate(resume_step or 0)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(run_dir) / "tb"),
                                        purge_step=resume_step + 1 if resume_step else None)

    def truncate(self, step: int) -> None:
        """Keep the rows up to ``step`` (a fresh file when ``step`` is 0)."""
        rows = [r for r in read_steps(self.path) if r["step"] <= step] if step else []
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=STEP_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(int(v) if k in ("step", "img_size") else v) for k, v in r.items()})
        atomic_write_text(self.path, buf.getvalue())

    def log_step(self, row: dict[str, Any]) -> None:
        """Append one step row (keys of :data:`STEP_COLUMNS`)."""
        with self.path.open("a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=STEP_COLUMNS, extrasaction="ignore").writerow(
                {k: _fmt(row.get(k)) for k in STEP_COLUMNS})
        if self.writer is not None:
            for key in ("train_loss", "lr", "images_per_s", "img_size"):
                if isinstance(row.get(key), (int, float)):
                    self.writer.add_scalar(f"train/{key}", row[key], int(row["step"]))

    def log_epoch(self, record: dict[str, Any]) -> None:
        """TensorBoard scalars of an epoch record, at its last step."""
        if self.writer is None:
            return
        for key in COLUMNS[3:]:
            v = record.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                group, _, name = key.partition("_") if key.startswith(("train_", "val_")) else ("misc", "", key)
                if key.startswith("ema_val_"):
                    group, name = "ema_val", key[len("ema_val_"):]
                self.writer.add_scalar(f"{group}/{name}", v, int(record["step"]))
        self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
