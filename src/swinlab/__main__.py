"""``python -m swinlab``: the same as the ``swinlab`` command."""

from .cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
