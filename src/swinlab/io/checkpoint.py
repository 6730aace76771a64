"""Verified torch checkpoints: written atomically, read safely, checked on load.

:func:`save_checkpoint` adds a ``"digest"`` entry to the saved dict: the
sha256 of every value in it (tensor bytes with their dtype and shape, and
the numbers and strings, walked in a fixed order), so that damage anywhere
in the file -- a flipped byte in a weight, a truncated tail -- is found on
:func:`load_checkpoint`, which recomputes it. torch's own zip container does
not check its records, and a damaged tensor would otherwise load as
garbage (NaN losses, chance accuracy) without a word.

Only tensors and plain data are ever unpickled (``torch.load(weights_only=True)``):
a file that needs code to load is refused and nothing in it runs.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, InputNotFoundError
from .files import atomic_write_bytes

__all__ = ["DIGEST_KEY", "content_digest", "save_checkpoint", "load_checkpoint", "torch_load_safely",
           "verify_digest"]

#: key of the digest in a saved checkpoint dict.
DIGEST_KEY = "digest"


def _feed(h: "hashlib._Hash", obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode())
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    else:
        h.update(f"V{type(obj).__name__}:{obj!r}".encode())


def content_digest(obj: Any) -> str:
    """sha256 (hex) of a checkpoint's content: nested dicts (keys in sorted
    order), lists, tensors (dtype, shape and bytes) and plain values."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def save_checkpoint(obj: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """``torch.save`` a dict with its :func:`content_digest`, atomically.

    The dict is serialised in memory first, so its exact size is known: a
    full disk is reported with the bytes needed, and ``path`` keeps its old
    content.

    Returns:
        the path written.

    Raises:
        DiskFullError: not enough space (the old file stays).
    """
    state = dict(obj)
    state.pop(DIGEST_KEY, None)
    state[DIGEST_KEY] = content_digest(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, buf.getbuffer())


def torch_load_safely(path: str | os.PathLike[str], what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors
    that name the file and say what is wrong in words.

    Raises:
        InputNotFoundError: no such file.
        CheckpointError: an empty file, a file that carries code (refused;
            nothing in it runs), or a truncated / damaged / foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes): an interrupted copy or write?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found:
            raise CheckpointError(
                f"{path.name}: swinlab refuses to unpickle code or objects other than tensors (it references "
                f"{found.group(1)}), so that loading a file never runs code. Re-save the checkpoint's state_dict "
                f"in a trusted environment (torch.save(model.state_dict(), ...) or safetensors) to load it. "
                f"File: {path}"
            ) from None
        raise CheckpointError(f"{path}: cannot read this {what} (truncated, corrupt or not a torch file)") from None
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - torch.load raises many types on a damaged file
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: cannot read this {what} (truncated or corrupt?): {detail}") from None


def verify_digest(obj: Any, path: str | os.PathLike[str]) -> Any:
    """Check and remove the :func:`content_digest` entry of a loaded dict
    (objects without one are returned as they are: files not written by
    :func:`save_checkpoint`).

    Raises:
        CheckpointError: the content does not match its digest (names the file).
    """
    if not isinstance(obj, dict) or DIGEST_KEY not in obj:
        return obj
    digest = obj.pop(DIGEST_KEY)
    if digest != content_digest(obj):
        raise CheckpointError(
            f"{path} is damaged: its content does not match the checksum written with it (a bit flip, a "
            f"partial copy or an edit); use another checkpoint (e.g. last.pt / best.pt of the run)"
        )
    return obj


def load_checkpoint(path: str | os.PathLike[str], require: tuple[str, ...] = (),
                    what: str = "checkpoint") -> dict[str, Any]:
    """Read a dict checkpoint and verify its digest (when it carries one).

    Args:
        path: the ``.pt`` file.
        require: keys that must be present (e.g. ``("model", "epoch")``).
        what: the noun used in messages.

    Returns:
        the dict, without its digest entry.

    Raises:
        InputNotFoundError: no such file.
        CheckpointError: unreadable, damaged (digest mismatch), not a dict,
            or missing a required key (all named).
    """
    obj = verify_digest(torch_load_safely(path, what), path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a swinlab {what}: it holds a {type(obj).__name__}, not a dict")
    missing = [k for k in require if k not in obj]
    if missing:
        raise CheckpointError(
            f"{path} is not a swinlab {what}: missing key(s) {missing} (found {sorted(map(str, obj))[:10]})"
        )
    return obj
