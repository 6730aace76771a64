"""Progress output that reads well on a terminal and in a file.

A tqdm bar redraws itself with carriage returns many times a second: right
on a terminal, hundreds of kilobytes of noise in a redirected log
(``bash scripts/main_job.sh > job.log 2>&1``). So a bar is drawn only when
its stream (stderr) is a terminal, or in a notebook (``tqdm.auto`` picked
its widget); otherwise there is no bar and the callers print a plain line
now and then instead (training: one line every few seconds with the step,
loss, lr and images/s; data decoding: one line when it is done).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm.auto import tqdm

__all__ = ["is_terminal", "bars_shown", "progress_bar"]


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default ``sys.stderr``) is a terminal; False for a
    closed or detached stream, or one without ``isatty``."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def bars_shown(enabled: bool = True, stream: TextIO | None = None) -> bool:
    """Whether a progress bar asked for (``enabled``) is drawn: on a terminal
    ``stream`` (default stderr) or in a notebook, not in a pipe or a file."""
    in_notebook = any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__)  # tqdm.auto picked the widget
    return bool(enabled) and (in_notebook or is_terminal(stream))


def progress_bar(enabled: bool = True, **kwargs: Any) -> tqdm:
    """A ``tqdm.auto`` bar (``kwargs`` as tqdm's: ``total``, ``desc``,
    ``unit``, ``leave`` ...) that is disabled unless :func:`bars_shown`; a
    disabled bar accepts ``update`` / ``set_postfix`` / ``close`` and prints
    nothing."""
    return tqdm(disable=not bars_shown(enabled, kwargs.get("file")), **kwargs)
