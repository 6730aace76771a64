"""Per-epoch metric logs: ``metrics.jsonl``, ``metrics.csv`` and TensorBoard.

One record per epoch with the columns of :data:`COLUMNS` (reference 003
logs train_loss, train_acc, val_loss, val_acc, lr as JSON; we add top-5,
throughput and timing). Accuracies are percentages, times seconds, lr the
value after the epoch's last step.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "MetricsLogger", "read_metrics"]

COLUMNS = (
    "epoch",
    "step",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_top1",
    "val_top5",
    "ema_val_loss",
    "ema_val_top1",
    "ema_val_top5",
    "lr",
    "images_per_s",
    "epoch_time_s",
    "train_images",
)


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
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not a JSON record ({e.msg})") from None
    return out


class MetricsLogger:
    """Append epoch records to ``run_dir/metrics.jsonl``, ``metrics.csv`` and
    TensorBoard event files (``run_dir/tb``).

    Args:
        run_dir: the run directory (created).
        tensorboard: write TensorBoard events (torch.utils.tensorboard).
        keep_until_epoch: when resuming, drop earlier records with a larger
            epoch (written after the checkpoint being resumed) and purge
            TensorBoard events after that point.
        purge_step: the TensorBoard global step to purge from on resume.
    """

    def __init__(
        self,
        run_dir: str | Path,
        tensorboard: bool = True,
        keep_until_epoch: int | None = None,
        purge_step: int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.run_dir / "metrics.jsonl"
        self.csv = self.run_dir / "metrics.csv"
        records = read_metrics(self.jsonl) if keep_until_epoch is not None else []
        self.records = [r for r in records if r.get("epoch", 0) <= (keep_until_epoch or 0)]
        self._rewrite()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)

    def _rewrite(self) -> None:
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in self.records), encoding="utf-8")
        with self.csv.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            w.writeheader()
            for r in self.records:
                w.writerow({k: _fmt(r.get(k)) for k in COLUMNS})

    def log(self, record: dict[str, Any]) -> None:
        """Append one epoch record (keys of :data:`COLUMNS`; missing ones left empty)."""
        rec = {k: record.get(k) for k in COLUMNS}
        rec.update({k: v for k, v in record.items() if k not in rec})
        self.records.append(rec)
        with self.jsonl.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        with self.csv.open("a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore").writerow(
                {k: _fmt(rec.get(k)) for k in COLUMNS}
            )
        if self.writer is not None:
            step = int(rec.get("epoch") or len(self.records))
            for k in COLUMNS[2:]:
                v = rec.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.writer.add_scalar(_tb_tag(k), v, step)
            self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _tb_tag(key: str) -> str:
    if key.startswith("ema_val_"):
        return "ema_val/" + key[len("ema_val_"):]
    for prefix in ("train_", "val_"):
        if key.startswith(prefix):
            return prefix[:-1] + "/" + key[len(prefix):]
    return "misc/" + key
