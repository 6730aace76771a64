"""Options and reports shared by the commands that read images: ``predict``,
``features`` and ``evaluate``.

* ``--skip-corrupt``: unreadable images (damaged, empty, not an image, over
  ``--max-pixels`` or the 256 MiB file limit) are skipped -- never replaced
  by another image -- counted and listed at the end on stderr
  (:func:`report_skipped`) and in the command's JSON output. Without it the
  first such image stops the command with a one-line error that names the
  file, gives the reason and names the option (:func:`skip_hint`).
* ``--max-pixels N``: the decoded-pixel limit per image (width x height),
  default 64,000,000; an image over it is unreadable like a damaged one.
* ``--no-progress``: no tqdm progress bar.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from ..data.decode import DEFAULT_MAX_PIXELS
from ..data.images import SkippedInput
from ..errors import CorruptImageError

__all__ = [
    "SKIP_HINT",
    "add_input_args",
    "positive_pixels",
    "skip_hint",
    "report_skipped",
    "one_line",
    "check_some_read",
]

#: the sentence appended to an unreadable-image error when ``--skip-corrupt`` was not given.
SKIP_HINT = "use --skip-corrupt to skip unreadable images"


def positive_pixels(text: str) -> int:
    """argparse type of ``--max-pixels``: a positive integer (``_`` / ``,`` separators allowed)."""
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of pixels, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of pixels, got {text!r}")
    return value


def add_input_args(p: argparse.ArgumentParser, *, skip: bool = True, progress: bool = True) -> None:
    """Add ``--max-pixels``, and ``--skip-corrupt`` / ``--no-progress`` unless told not to
    (for a parser that already has them)."""
    if skip:
        p.add_argument(
            "--skip-corrupt", action="store_true",
            help="skip unreadable images (listed at the end) instead of stopping at the first one",
        )
    p.add_argument(
        "--max-pixels", type=positive_pixels, default=DEFAULT_MAX_PIXELS, metavar="N",
        help=f"refuse images over N decoded pixels (width x height) as unreadable (default: {DEFAULT_MAX_PIXELS:,})",
    )
    if progress:
        p.add_argument("--no-progress", action="store_true", help="no progress bar")


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line; for an error re-raised by a DataLoader
    worker (``Caught X in DataLoader worker ...`` + a traceback), the original message."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        last = lines[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return lines[0] if lines else type(exc).__name__


@contextmanager
def skip_hint() -> Iterator[None]:
    """Re-raise a :class:`CorruptImageError` as one line that ends with :data:`SKIP_HINT`."""
    try:
        yield
    except CorruptImageError as exc:
        raise CorruptImageError(f"{one_line(exc)}; {SKIP_HINT}") from exc


def report_skipped(skipped: Sequence[SkippedInput], total: int, file: TextIO | None = None) -> None:
    """Print ``skipped K of N image(s) that could not be read:`` and one line per
    skipped image (its reason, which names it) on ``file`` (default stderr);
    nothing when none was skipped."""
    if not skipped:
        return
    out = file if file is not None else sys.stderr
    print(f"skipped {len(skipped)} of {total} image(s) that could not be read:", file=out)
    for item in skipped:
        print(f"  {item.input}: {item.error}", file=out)


def check_some_read(skipped: Sequence[SkippedInput], total: int) -> None:
    """Fail when every one of the ``total`` images was skipped (after listing them
    with :func:`report_skipped`): there is nothing to output.

    Raises:
        CorruptImageError: none of the images could be read.
    """
    if total and len(skipped) >= total:
        report_skipped(skipped, total)
        raise CorruptImageError(f"none of the {total} image(s) could be read (reasons above)")
