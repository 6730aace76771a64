"""Shared pytest fixtures.

The reference fixtures (checkpoints in three layouts and the outputs of the
reference implementations) live outside the repository in ``../shared``
(override with the environment variable ``SWINLAB_SHARED``). Tests that need
them are skipped only when that folder is absent; in CI it is present.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


def _shared_path() -> Path:
    env = os.environ.get("SWINLAB_SHARED")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` relative to the repository root (or ``$SWINLAB_SHARED``)."""
    path = _shared_path()
    if not path.is_dir():
        pytest.skip(f"shared reference folder {path} is absent (set SWINLAB_SHARED)")
    return path


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    """``shared/reference/checkpoints``: the parity checkpoints and outputs."""
    path = shared_dir / "reference" / "checkpoints"
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is missing from the shared folder {shared_dir}")
    return path


@pytest.fixture(scope="session")
def reference_io(reference_dir: Path) -> dict[str, torch.Tensor]:
    """Tensors of ``reference_io.safetensors``: ``input_224`` (2,3,224,224),
    ``logits_official`` (2,10), ``logits_s3_timm`` (2,10), ``input_384``
    (1,3,384,384), ``features_official_w12_384`` (1,128)."""
    from safetensors.torch import load_file

    return load_file(str(reference_dir / "reference_io.safetensors"))


@pytest.fixture(scope="session")
def tiny_imagenet_zip(shared_dir: Path) -> Path:
    """The real ``shared/data/tiny-imagenet-200.zip`` (the tests that need it are skipped without it)."""
    path = shared_dir / "data" / "tiny-imagenet-200.zip"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path
