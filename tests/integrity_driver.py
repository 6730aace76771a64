"""Runs ``swinlab`` (``python tests/integrity_driver.py train ...``) with faults
injected by environment variables, for the run-integrity and DDP tests:

* ``SWINLAB_TEST_KILL_WRITE=NAME:N``: on the N-th write of a file named NAME
  (through :func:`swinlab.io.files.atomic_write`), write half of its bytes
  into the temporary file, then ``kill -9`` this process.
* ``SWINLAB_TEST_SIGNAL_STEP=N[:SIG]``: send SIG (default SIGINT) to this
  process right after optimizer step N.
* ``SWINLAB_TEST_NO_WRITE_RANK=R``: on the process of rank R, any write
  through ``atomic_write`` fails the run (checks that only rank 0 writes).
* ``SWINLAB_TEST_PID_DIR=DIR``: write this process's pid to ``DIR/rank<R>.pid``.

Nothing here is imported by swinlab; the patches are applied before swinlab's
training modules are imported, so they see the patched functions.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import swinlab.io.files as files

RANK = int(os.environ.get("RANK", "0"))


def _patch_writes() -> None:
    kill = os.environ.get("SWINLAB_TEST_KILL_WRITE")
    no_write = os.environ.get("SWINLAB_TEST_NO_WRITE_RANK")
    name, nth = (kill.rsplit(":", 1)[0], int(kill.rsplit(":", 1)[1])) if kill else (None, 0)
    seen = [0]
    real = files.atomic_write

    def atomic_write(path, write, size_hint=None):
        if no_write is not None and RANK == int(no_write):
            raise AssertionError(f"rank {RANK} tried to write {path}")
        if Path(path).name == name:
            seen[0] += 1
            if seen[0] == nth:
                def half_then_die(f):
                    buf = io.BytesIO()
                    write(buf)
                    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(path, half_then_die, size_hint)
        return real(path, write, size_hint)

    files.atomic_write = atomic_write


def _patch_steps() -> None:
    spec = os.environ.get("SWINLAB_TEST_SIGNAL_STEP")
    if not spec:
        return
    step, _, sig = spec.partition(":")
    signum = getattr(signal, sig or "SIGINT")
    import swinlab.training.engine as engine

    real = engine._optimizer_step

    def optimizer_step(run, *args, **kwargs):
        real(run, *args, **kwargs)
        if run.progress.step == int(step):
            os.kill(os.getpid(), signum)

    engine._optimizer_step = optimizer_step


if __name__ == "__main__":
    if os.environ.get("SWINLAB_TEST_PID_DIR"):
        Path(os.environ["SWINLAB_TEST_PID_DIR"], f"rank{RANK}.pid").write_text(str(os.getpid()))
    _patch_writes()
    _patch_steps()
    from swinlab.cli.main import main

    sys.exit(main(sys.argv[1:]))
