"""Entry point of the ``swinlab`` command (``swinlab.cli.main:main``).

Each sub-command lives in its own module ``swinlab.cli.<name>`` exposing
``register(subparsers, help, parents)``, which adds its parser with
``set_defaults(func=run)``, and ``run(args) -> int``. Only the module of the
command being run is imported (so ``swinlab --help`` does not load torch);
the others appear in the help as one line each.

One error policy for every command: a :class:`~swinlab.errors.SwinlabError`
prints ``swinlab <command>: error: <message>`` and exits with its
``exit_code`` (2: usage or input, 1: a run-time failure); argparse reports a
bad flag the same way with exit 2; Ctrl-C exits 130; anything else is a bug
and keeps its traceback. ``--debug`` shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import SwinlabError
from ..version import __version__

__all__ = ["build_parser", "main", "COMMANDS"]

#: command -> one line of help (the module is imported only when the command runs).
COMMANDS = {
    "train": "train a model from a recipe (or resume / extend a run)",
    "evaluate": "top-1/top-5/loss, per-class accuracy and confusion matrix on a data split",
    "report": "a run's report page (report.html): curves, accuracy, best/worst and confused classes, examples",
    "predict": "top-k classes of images (table or JSON), optional attention maps",
    "features": "pooled image embeddings (N, C) to .npy or .safetensors",
    "models": "list the model zoo",
    "export": "export a model to ONNX / TorchScript / ExportedProgram (verified), optionally int8",
    "benchmark": "images/s and latency of a model per runtime and batch size",
    "serve": "an HTTP service (FastAPI) with a demo page",
}


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    return common


def _chosen(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser; ``command``'s module is imported and registers its
    full parser, the other commands get a one-line entry.

    Raises:
        ModuleNotFoundError: a command module that should exist is missing (a bug).
    """
    common = _common()
    parser = argparse.ArgumentParser(
        prog="swinlab", parents=[common],
        description="Swin Transformer / Swin-S3 / ViT image classification: train, evaluate, predict, extract "
                    "features and list the model zoo.",
        epilog="Run 'swinlab COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"swinlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        if name == command:
            importlib.import_module(f"{__package__}.{name}").register(sub, summary, [common])
        else:
            sub.add_parser(name, help=summary, add_help=False)
    parser.set_defaults(command_parsers=sub.choices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the command.

    Returns:
        the exit status: 0, the error's ``exit_code`` (2 usage / input,
        1 run time), 2 for a bad command line, 130 on Ctrl-C.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _chosen(argv)
    parser = build_parser(command if command in COMMANDS else None)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the command's own parser: "swinlab COMMAND: error: ..."
        own = args.command_parsers.get(getattr(args, "command", None), parser)
        own.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"swinlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except SwinlabError as err:
        if getattr(args, "debug", False):
            raise
        print(f"swinlab {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
