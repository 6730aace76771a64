"""swinlab's error family: what a user did wrong, said in one line.

Every error that swinlab raises about its input -- a flag, a config key, a
model name, a file, an image, a checkpoint -- is a :class:`SwinlabError`.
The command line (``swinlab.cli.main``) prints such an error as
``swinlab <command>: error: <message>`` and exits with the class's
``exit_code``: 2 for usage and input errors, 1 for run-time failures (a full
disk, a diverging loss). Any other exception is a bug and keeps its
traceback.

The classes also derive from the built-in exception a caller would expect
(``ValueError``, ``FileNotFoundError``, ``RuntimeError``, ``OSError``), so
``except ValueError`` keeps working in library code.

This module is the foundation of the package: it imports nothing.
"""

from __future__ import annotations

__all__ = [
    "SwinlabError",
    "UsageError",
    "ConfigError",
    "UnknownModelError",
    "InputError",
    "InputNotFoundError",
    "InvalidInputError",
    "CorruptImageError",
    "DataError",
    "CheckpointError",
    "RunLockedError",
    "RunError",
    "DiskFullError",
    "DivergedError",
    "DownloadError",
]


class SwinlabError(Exception):
    """Base of every error swinlab reports to a user as one line.

    Attributes:
        exit_code: the command-line exit status (1: a run-time failure).
    """

    exit_code = 1


# ---------------------------------------------------------------- exit 2: usage
class UsageError(SwinlabError, ValueError):
    """A bad flag, option value or name given by the user (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A bad configuration: unknown key, wrong type or inconsistent values."""


class UnknownModelError(UsageError, KeyError):
    """A model name that is not registered (the message ranks close names)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------- exit 2: input
class InputError(SwinlabError):
    """A file or data the user pointed at that cannot be used (exit 2)."""

    exit_code = 2


class InputNotFoundError(InputError, FileNotFoundError):
    """A file, folder, archive member, URL or Hub id that does not exist."""


class InvalidInputError(InputError, ValueError):
    """Input that exists but is unreadable or not what was expected."""


class CorruptImageError(InvalidInputError):
    """An image file that cannot be decoded (or exceeds a size limit); the
    message names the file and gives the reason in words."""


class DataError(InvalidInputError):
    """A data set whose files are malformed (annotations, class lists, paths)."""


class CheckpointError(InvalidInputError):
    """A checkpoint that cannot be found, read, verified or used."""


class RunLockedError(UsageError):
    """A run folder that another live training process owns."""


# ---------------------------------------------------------------- exit 1: run time
class RunError(SwinlabError, RuntimeError):
    """A failure while running (not the user's input): exit 1."""


class DiskFullError(RunError, OSError):
    """A write that failed for lack of space; names the file and the size."""


class DivergedError(RunError, FloatingPointError):
    """The training loss became NaN or infinite (names the step and the lr)."""


class DownloadError(RunError, ConnectionError):
    """A download that failed for a network or server reason (names the URL)."""
