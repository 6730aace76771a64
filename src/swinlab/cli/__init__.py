"""The ``swinlab`` command line: ``train``, ``evaluate``, ``predict``, ``features``, ``models``."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
