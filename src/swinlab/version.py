"""The package version (one place; imported by the package and by files that record it)."""

__version__ = "0.1.0"
