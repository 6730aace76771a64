"""Entry point of the ``swinlab`` command (``swinlab.cli.main:main``).

Each sub-command lives in its own module ``swinlab.cli.<name>`` exposing
``register(subparsers)``, which adds its parser with
``set_defaults(func=run)``, and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

__all__ = ["build_parser", "main", "COMMANDS"]

COMMANDS = ("train", "evaluate", "predict", "features", "models", "export", "benchmark", "serve")

# Errors that are the user's input, printed as one line instead of a traceback.
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError, RuntimeError)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every available sub-command registered.

    A command module that is not installed is left out; any other import
    error propagates.
    """
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="swinlab",
        description="Swin Transformer / Swin-S3 / ViT image classification: train, evaluate, predict, "
        "extract features and list the model zoo.",
        epilog="Run 'swinlab COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"swinlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        modname = f"{__package__}.{name}"
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the command.

    Returns:
        the exit status: the command's, 2 for usage errors, 1 for a bad
        input reported as ``swinlab: error: ...``, 130 on Ctrl-C.
    """
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("swinlab: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as e:
        if getattr(args, "debug", False):
            raise
        msg = str(e) if not isinstance(e, KeyError) else f"missing key {e}"
        print(f"swinlab {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
