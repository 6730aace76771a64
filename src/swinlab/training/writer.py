"""Everything a training writes into its run folder, in a crash-safe order.

Only the process of rank 0 has a :class:`RunWriter`; the other ranks write
nothing. The order makes ``last.pt`` the commit point of an epoch:

1. ``last.pt``: the whole state, with the epoch history and the best epoch
   (atomic, with a content digest);
2. ``best.pt``: a byte copy of ``last.pt`` when the epoch is the best so far;
3. ``metrics.jsonl`` / ``metrics.csv``: rewritten from the history in ``last.pt``;
4. the step log, TensorBoard and ``curves.png`` (views, redrawn later).

A crash at any instant leaves ``last.pt`` at the end of an epoch (or at a
saved point inside one); :meth:`RunWriter.open` repairs what can trail it --
a ``best.pt`` not yet copied, metrics files behind the history, step rows
after the checkpoint's step -- and removes the temporary files of
interrupted writes. Resuming then redoes the lost step exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..io.checkpoint import load_checkpoint, save_checkpoint
from ..io.files import atomic_write, atomic_write_text, ensure_dir, remove_stale_temporaries
from ..io.rundir import RunDir
from ..plots import plot_curves
from .logging import StepLog, read_steps, write_epoch_logs

__all__ = ["RunWriter"]

_OUTPUTS = (RunDir.LAST, RunDir.BEST, RunDir.METRICS, RunDir.METRICS_CSV, RunDir.STEPS, RunDir.CURVES)


def _copy_file(src: Path, dst: Path) -> None:
    with src.open("rb") as f:
        atomic_write(dst, lambda out: shutil.copyfileobj(f, out, 1 << 20), size_hint=src.stat().st_size)


class RunWriter:
    """The run folder's writer (rank 0).

    Args:
        run_dir: the folder; its lock must be held by this process.
        tensorboard: write TensorBoard events.
    """

    def __init__(self, run_dir: RunDir, tensorboard: bool) -> None:
        self.run_dir = run_dir
        self.tensorboard = tensorboard
        self.steps: StepLog | None = None
        self.removed_temporaries: list[Path] = []

    def open(self, config: dict[str, Any], resumed: dict[str, Any] | None) -> None:
        """Prepare the folder: clean temporaries; for a fresh run remove the
        outputs of an earlier one (``--overwrite``); for a resumed run repair
        what trails ``last.pt``; write ``config.json``; open the step log.

        Raises:
            InvalidInputError: the folder is a file. DiskFullError: no space.
        """
        path = ensure_dir(self.run_dir.path, "run folder")
        self.removed_temporaries = remove_stale_temporaries(path)
        if resumed is None:
            for name in _OUTPUTS:
                (path / name).unlink(missing_ok=True)
            for name in (RunDir.TENSORBOARD, RunDir.EXPORT):
                shutil.rmtree(path / name, ignore_errors=True)
        else:
            self._repair(resumed)
        atomic_write_text(path / RunDir.CONFIG, json.dumps(config, indent=2) + "\n")
        self.steps = StepLog(path, self.tensorboard, resume_step=resumed["step"] if resumed else None)

    def _repair(self, state: dict[str, Any]) -> None:
        """Bring the views of a resumed run in line with its ``last.pt``."""
        write_epoch_logs(self.run_dir.path, state.get("history", []))
        at_epoch_end = state["batch"] == 0 and state.get("best_epoch") == state["epoch"] and state["epoch"] > 0
        if at_epoch_end and self._best_epoch() != state["epoch"]:
            _copy_file(self.run_dir.last, self.run_dir.best)  # the crash came between last.pt and best.pt

    def _best_epoch(self) -> int | None:
        if not self.run_dir.best.is_file():
            return None
        try:
            return int(load_checkpoint(self.run_dir.best, what="training checkpoint").get("epoch", -1))
        except (OSError, ValueError):
            return None  # damaged: rewritten from last.pt

    def commit(self, state: dict[str, Any], is_best: bool) -> None:
        """Write an epoch's state: ``last.pt``, then ``best.pt``, then the metrics files."""
        save_checkpoint(state, self.run_dir.last)
        if is_best:
            _copy_file(self.run_dir.last, self.run_dir.best)
        write_epoch_logs(self.run_dir.path, state["history"])
        if self.steps is not None and state["history"]:
            self.steps.log_epoch(state["history"][-1])

    def save_partial(self, state: dict[str, Any]) -> None:
        """Write a state saved inside an epoch (``last.pt`` only)."""
        save_checkpoint(state, self.run_dir.last)

    def log_step(self, row: dict[str, Any]) -> None:
        """Append a step row (``metrics_steps.csv``, TensorBoard)."""
        if self.steps is not None:
            self.steps.log_step(row)

    def draw_curves(self, history: list[dict[str, Any]], title: str) -> Path | None:
        """(Re)draw ``curves.png`` from the epoch records and the step log."""
        steps = read_steps(self.run_dir / RunDir.STEPS)
        if not history and not steps:
            return None
        return plot_curves(history, self.run_dir / RunDir.CURVES, title=title, steps=steps)

    def close(self) -> None:
        """Close the step log."""
        if self.steps is not None:
            self.steps.close()
