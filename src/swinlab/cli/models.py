"""``swinlab models [PATTERN]``: list the model zoo (name, parameters, description)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run", "count_params"]


def register(subparsers: Any, help: str = "", parents: list[argparse.ArgumentParser] = ()) -> None:
    """Add the ``models`` parser to ``subparsers``."""
    p = subparsers.add_parser(
        "models", help=help, parents=list(parents),
        description="List registered models: name, parameters (millions) and description. PATTERN is a "
                    "shell-style pattern, e.g. 'swin_s3*' or '*_64'.")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern (default: all)")
    p.add_argument("--no-params", action="store_true", help="skip counting parameters")
    p.set_defaults(func=run)


def count_params(name: str) -> int:
    """Parameters of the registered model ``name``, counted on the meta device
    (no memory allocated, no arithmetic).

    Raises:
        UnknownModelError: unknown name.
    """
    import torch

    from ..models.flops import count_params as count_model_params
    from ..models.registry import build_model

    with torch.device("meta"):
        model = build_model(name)
    return count_model_params(model)


def run(args: argparse.Namespace) -> int:
    """Print the table; 1 when nothing matches."""
    from ..models.registry import get_model_spec, list_models

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}; run 'swinlab models' for the full list")
        return 1
    width = max(len(n) for n in names)
    print(f"{'name':<{width}}  {'params':>8}  description")
    for n in names:
        spec = get_model_spec(n)
        count = spec.num_params if spec.num_params is not None else count_params(n)
        params = "" if args.no_params else f"{count / 1e6:7.2f}M"
        print(f"{n:<{width}}  {params:>8}  {spec.description}")
    return 0
