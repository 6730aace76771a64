"""Run folders: the one place that knows what a ``swinlab train`` folder holds.

A run folder (``runs/NAME``) holds::

    config.json          the resolved training configuration
    last.pt              the latest state (weights, optimizer, schedule, RNG): what resume reads
    best.pt              the state of the best validation epoch: "the model" of the run
    metrics.jsonl/.csv   one row per epoch (validation metrics)
    metrics_steps.csv    train loss and lr every few steps
    tb/                  TensorBoard events
    curves.png           loss / lr / accuracy curves
    export/              save_pretrained copy of the model (``--export``)
    eval/                reports of ``swinlab evaluate`` (metrics.json, per-class, confusion and prediction CSVs,
                         confusion_matrix.png)
    report.html          the run report (``swinlab report``; also written by train and evaluate)
    train.lock           held by the training process that owns the folder

:class:`RunDir` names these files, says which one is the model
(:meth:`RunDir.model_file`: ``best.pt``, else ``last.pt``) and which one
resume reads (``last.pt``), reads them verified (:mod:`.checkpoint`) and
takes the folder's lock (:class:`RunLock`). Training, evaluation, predict,
features, export and the weight loader all go through it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, InputNotFoundError, RunLockedError
from .checkpoint import load_checkpoint
from .files import ensure_dir

__all__ = ["RunDir", "RunLock", "MODEL_KEYS"]

#: keys every training checkpoint holds (what evaluate / predict need).
MODEL_KEYS = ("model", "model_name")


class RunLock:
    """An exclusive lock on a run folder, held while a training writes to it.

    The lock is ``fcntl.flock`` on ``train.lock``; the file records the
    owner's pid and host. The kernel releases the lock when its process
    dies (also on ``kill -9``), so the lock of a dead process is stale by
    construction: the next :meth:`acquire` takes it and reports it in
    :attr:`stale_owner`.

    Raises (``acquire``):
        RunLockedError: a live process holds the lock (names its pid).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self.stale_owner: dict[str, Any] | None = None

    def _owner(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            return None

    def acquire(self) -> "RunLock":
        """Take the lock (non-blocking); returns ``self``."""
        ensure_dir(self.path.parent, "run folder")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = self._owner() or {}
            who = f"process {owner.get('pid', '?')} on {owner.get('host', '?')}"
            raise RunLockedError(
                f"run folder {self.path.parent} is in use: {who} is training into it (lock {self.path}); "
                f"wait for it to finish, stop it, or choose another --out"
            ) from None
        self.stale_owner = self._owner()
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (the file stays; its content no longer matters)."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunDir:
    """A ``swinlab train`` run folder (see the module docstring).

    Args:
        path: the folder (need not exist yet).
    """

    CONFIG = "config.json"
    LAST = "last.pt"
    BEST = "best.pt"
    METRICS = "metrics.jsonl"
    METRICS_CSV = "metrics.csv"
    STEPS = "metrics_steps.csv"
    TENSORBOARD = "tb"
    CURVES = "curves.png"
    EXPORT = "export"
    EVAL = "eval"
    LOCK = "train.lock"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def is_run_dir(cls, path: str | os.PathLike[str]) -> bool:
        """True when ``path`` is a folder holding ``best.pt`` or ``last.pt``."""
        p = Path(path).expanduser()
        return p.is_dir() and ((p / cls.BEST).is_file() or (p / cls.LAST).is_file())

    @property
    def last(self) -> Path:
        """``last.pt``: the latest training state (what resume reads)."""
        return self.path / self.LAST

    @property
    def best(self) -> Path:
        """``best.pt``: the state of the best validation epoch."""
        return self.path / self.BEST

    def model_file(self) -> Path:
        """The checkpoint that is "the model" of the run: ``best.pt``, else ``last.pt``.

        Raises:
            InputNotFoundError: neither exists.
        """
        for p in (self.best, self.last):
            if p.is_file():
                return p
        raise InputNotFoundError(f"{self.path} is not a run folder: it has no {self.BEST} or {self.LAST}")

    def read_model(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Read (and verify) the model checkpoint, or the checkpoint ``path``.

        Returns:
            the checkpoint dict (keys ``model``, ``model_name``, ``model_kwargs``,
            ``class_names``, ``classes``, ``aug_config``, ``config``, ...).

        Raises:
            InputNotFoundError: no checkpoint. CheckpointError: damaged or foreign.
        """
        return load_checkpoint(path or self.model_file(), require=MODEL_KEYS, what="training checkpoint")

    def read_resume(self) -> dict[str, Any]:
        """Read (and verify) ``last.pt`` for resuming.

        Raises:
            CheckpointError: missing, damaged or not a training checkpoint.
        """
        if not self.last.is_file():
            raise CheckpointError(f"--resume {self.path}: the run folder has no {self.LAST} to resume from")
        return load_checkpoint(self.last, require=MODEL_KEYS + ("epoch", "step"), what="training checkpoint")

    def lock(self) -> RunLock:
        """The folder's :class:`RunLock` (not yet acquired)."""
        return RunLock(self.path / self.LOCK)
