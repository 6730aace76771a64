"""Load pretrained weights from a file, a folder, a URL or the Hugging Face Hub.

Pipeline of :func:`load_pretrained` (the steps of ``load_pretrained`` in
microsoft/Swin-Transformer ``utils.py``, plus layout conversion):
:func:`resolve_source` -> :func:`read_checkpoint` -> ``unwrap_checkpoint`` ->
``to_swinlab`` (official / timm / Hugging Face names) ->
:func:`~swinlab.weights.adapt.adapt_state_dict` (head, position tables) ->
``model.load_state_dict``.

Only tensors are ever unpickled (``torch.load(weights_only=True)``); a
checkpoint that needs code to load is refused.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputNotFoundError, InvalidInputError, UsageError
from ..io.checkpoint import torch_load_safely, verify_digest
from ..io.download import download_to_cache
from ..io.rundir import RunDir
from ..models.registry import get_model_spec
from .adapt import adapt_state_dict
from .layouts import detect_layout, to_swinlab, unwrap_checkpoint

__all__ = [
    "LoadReport",
    "load_pretrained",
    "load_state_dict_checked",
    "read_checkpoint",
    "resolve_source",
]

TORCH_SUFFIXES = (".pth", ".pth.tar", ".pt", ".bin", ".ckpt", ".tar")
SAFETENSORS_SUFFIX = ".safetensors"
#: weight files of a Hugging Face model folder, in order of preference.
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


# ---------------------------------------------------------------- reading
def _is_safetensors_header(head: bytes) -> bool:
    return len(head) >= 9 and int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise InvalidInputError(f"{path}: not a readable safetensors file (truncated or corrupt?): {err}") from None


def _read_torch(path: Path) -> Any:
    return verify_digest(torch_load_safely(path, "torch checkpoint"), path)


def _read_sharded(index: Path) -> dict[str, Any]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise InvalidInputError(f"{index}: not a shard index (expected JSON with a 'weight_map'): {err}") from None
    out: dict[str, torch.Tensor] = {}
    for name in files:
        out.update(unwrap_checkpoint(_read_file(index.parent / name)))
    return out


def _read_file(path: Path) -> Any:
    if not path.exists():
        raise InputNotFoundError(f"checkpoint file not found: {path}")
    name = path.name.lower()
    if name.endswith(".index.json"):
        return _read_sharded(path)
    if name.endswith(SAFETENSORS_SUFFIX):
        return _read_safetensors(path)
    if not name.endswith(TORCH_SUFFIXES):
        with open(path, "rb") as f:  # unknown suffix (a URL without one): sniff
            if _is_safetensors_header(f.read(9)):
                return _read_safetensors(path)
    return _read_torch(path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read the tensors of a checkpoint file or Hugging Face model folder.

    Reads ``.pth``, ``.pth.tar``, ``.pt``, ``.bin``, ``.ckpt`` with
    ``torch.load(map_location="cpu", weights_only=True)``, ``.safetensors``
    with safetensors, sharded ``*.index.json``, folders holding
    ``model.safetensors`` or ``pytorch_model.bin`` (Hugging Face layout), and
    ``swinlab train`` run folders (their model checkpoint,
    :meth:`swinlab.io.rundir.RunDir.model_file`).
    Training wrappers (``{"model": ...}``, ``{"state_dict": ...}``) and the
    ``module.`` prefix are removed (``unwrap_checkpoint``); key names are
    otherwise unchanged.

    Returns:
        parameter name -> CPU tensor.

    Raises:
        FileNotFoundError: the file, or the weights of the folder, is missing.
        ValueError: a pickle that needs code to load ("refuses to unpickle
            code", with the file name), a truncated/corrupt file, or content
            that is not a state dict; the message names the file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = _weights_file_of_folder(path)
    try:
        return unwrap_checkpoint(_read_file(path))
    except ValueError as err:
        if str(path) in str(err) or path.name in str(err):
            raise
        raise InvalidInputError(f"{path}: {err}") from None


def _weights_file_of_folder(folder: Path) -> Path:
    """The weights of a Hugging Face / ``save_pretrained`` folder, else of a run folder."""
    for name in HF_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    if RunDir.is_run_dir(folder):
        return RunDir(folder).model_file()
    raise InputNotFoundError(
        f"{folder} is a folder without model weights: expected one of {list(HF_WEIGHT_FILES)} "
        f"or a run folder ({RunDir.BEST} / {RunDir.LAST})"
    )


# ---------------------------------------------------------------- resolving
def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _hub_snapshot(repo: str) -> Path:
    import huggingface_hub
    from huggingface_hub import constants, snapshot_download

    repo_id, _, revision = repo.partition("@")
    offline = bool(constants.HF_HUB_OFFLINE) or _env_true("HF_HUB_OFFLINE")
    # huggingface_hub reads its environment at import time; read it again here
    cache = os.environ.get("HF_HUB_CACHE") or (
        str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME") else None
    )
    patterns = (
        ["config.json", "model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"],
        ["config.json", "pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"],
    )
    errors = getattr(huggingface_hub, "errors", huggingface_hub.utils)
    folder: Path | None = None
    for allow in patterns:
        try:
            folder = Path(snapshot_download(repo_id, revision=revision or None, cache_dir=cache,
                                            local_files_only=offline, allow_patterns=allow))
        except errors.LocalEntryNotFoundError as err:
            raise InputNotFoundError(
                f"Hub model {repo_id!r} is not in the local Hugging Face cache "
                f"({cache or constants.HF_HUB_CACHE}) and downloading is "
                f"{'disabled (HF_HUB_OFFLINE=1)' if offline else 'not possible'}: {err}"
            ) from None
        except errors.RepositoryNotFoundError:
            raise InputNotFoundError(f"Hub model {repo_id!r} does not exist (or is private)") from None
        except errors.RevisionNotFoundError:
            raise InputNotFoundError(f"Hub model {repo_id!r} has no revision {revision!r}") from None
        if any((folder / n).is_file() for n in HF_WEIGHT_FILES):
            return folder
    raise InputNotFoundError(
        f"Hub model {repo_id!r} ({folder}) has no PyTorch weights: expected one of {list(HF_WEIGHT_FILES)}"
    )


def resolve_source(
    source: str | os.PathLike[str],
    model_name: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
) -> Path:
    """Turn a weights source into a local file or folder.

    Args:
        source: one of

            * a local file or folder (``~`` expanded);
            * an ``http://`` / ``https://`` URL: downloaded with
              :func:`swinlab.io.download.download_to_cache` into ``cache_dir``
              and reused afterwards;
            * a Hugging Face Hub id ``org/name`` (optionally ``@revision``,
              or prefixed ``hf-hub:``): ``huggingface_hub.snapshot_download``
              of the config and weights only; honours ``HF_HUB_OFFLINE``,
              ``HF_HUB_CACHE`` / ``HF_HOME`` (read at call time) and the Hub
              cache;
            * ``"official"``: the registry's release URL of ``model_name``;
            * ``"hf"``: the registry's Hub id of ``model_name``.
        model_name: registry name, needed for ``"official"`` / ``"hf"``.
        cache_dir: download cache for URLs (default ``$SWINLAB_CACHE`` or
            ``~/.cache/swinlab``).
        sha256: expected sha256 (or prefix) of a downloaded file.

    Returns:
        the local path (file, or folder for Hub models).

    Raises:
        FileNotFoundError: a local path, URL, Hub id or cache entry that does
            not exist (names it).
        ValueError: ``"official"``/``"hf"`` without ``model_name`` or for a
            model with no such weights; an empty source.
        ConnectionError: a download that failed.
    """
    if isinstance(source, os.PathLike):
        path = Path(source).expanduser()
        if not path.exists():
            raise InputNotFoundError(f"weights not found: {path}")
        return path
    if not isinstance(source, str) or not source.strip():
        raise UsageError(f"weights source must be a path, URL or Hub id, got {source!r}")
    source = source.strip()
    if source in ("official", "hf"):
        if not model_name:
            raise UsageError(
                f"pretrained={source!r} needs a registry model name (build the model with create_model, "
                f"or pass model_name=)"
            )
        spec = get_model_spec(model_name)
        resolved = spec.pretrained_cfg.url if source == "official" else spec.pretrained_cfg.hf_hub_id
        if not resolved:
            what = "official release URL" if source == "official" else "Hugging Face Hub id"
            raise UsageError(f"model {model_name!r} has no {what}; pass a file, URL or Hub id instead")
        return resolve_source(resolved, model_name, cache_dir, sha256)
    if re.match(r"^https?://", source, re.IGNORECASE):
        return download_to_cache(source, cache_dir, sha256=sha256)
    path = Path(source).expanduser()
    if path.exists():
        return path
    hub = source[len("hf-hub:"):] if source.startswith("hf-hub:") else source
    if hub.startswith("hf://"):
        hub = hub[len("hf://"):]
    if (_HUB_ID.match(hub) and not source.startswith((".", "/", "~"))
            and path.suffix.lower() not in TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,)):
        return _hub_snapshot(hub)
    raise InputNotFoundError(
        f"weights not found: {source!r} is not an existing file or folder, an http(s) URL, a Hub id "
        f"('org/name') or 'official'/'hf'"
    )


# ---------------------------------------------------------------- loading
@dataclass
class LoadReport:
    """Outcome of :func:`load_pretrained`.

    Attributes:
        source: what was asked for. path: the local file/folder read.
        layout: the detected checkpoint layout (``"swinlab"``, ``"official"``,
            ``"timm"``, ``"hf"``; ``"state_dict"`` for an in-memory dict).
        loaded: model keys set from the checkpoint.
        missing: model keys the checkpoint lacks (kept at their init).
        unexpected: checkpoint keys the model lacks (ignored).
        mismatched: ``(key, checkpoint shape, model shape)`` not loaded.
        adapted: descriptions of resized / re-mapped tensors.
        reinitialized: head keys deliberately left at the fresh init.
    """

    source: str
    path: str | None = None
    layout: str = ""
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    reinitialized: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model tensor was loaded or deliberately re-initialised."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.path or self.source} (layout {self.layout})"]
        lines += [f"  adapted: {a}" for a in self.adapted]
        if self.reinitialized:
            lines.append(f"  re-initialised: {', '.join(self.reinitialized)}")
        lines += _problem_lines(self)
        return "\n".join(lines)


def _shown(keys: list[str], limit: int = 40) -> str:
    more = f", ... ({len(keys) - limit} more; strict=False gives the full lists)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _problem_lines(r: LoadReport) -> list[str]:
    lines = []
    if r.missing:
        lines.append(f"  missing from the checkpoint ({len(r.missing)}): {_shown(r.missing)}")
    if r.unexpected:
        lines.append(f"  not in the model ({len(r.unexpected)}): {_shown(r.unexpected)}")
    if r.mismatched:
        shown = [f"{k} {tuple(a)} vs model {tuple(b)}" for k, a, b in r.mismatched]
        lines.append(f"  shape mismatch ({len(shown)}): {_shown(shown, 20)}")
    return lines


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    strict: bool = True,
    report: LoadReport | None = None,
) -> LoadReport:
    """Load ``state_dict`` into ``model``, comparing keys and shapes first.

    Keys named in ``report.reinitialized`` may be absent. Tensors whose shape
    differs are never loaded.

    Raises:
        ValueError: (``strict``) one error listing every missing, unexpected
            and mis-shaped key; nothing is loaded then.
    """
    report = report or LoadReport(source="state_dict", layout="state_dict")
    target = model.state_dict()
    skip = set(report.reinitialized)
    report.missing = [k for k in target if k not in state_dict and k not in skip]
    report.unexpected = [k for k in state_dict if k not in target]
    report.mismatched = [  # in the model's order
        (k, tuple(state_dict[k].shape), tuple(t.shape))
        for k, t in target.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(t.shape)
    ]
    bad = {k for k, _, _ in report.mismatched}
    good = {k: v for k, v in state_dict.items() if k in target and k not in bad}
    if strict and not report.ok:
        name = getattr(model, "model_name", type(model).__name__)
        hint = ""
        if len(good) < len(target) // 2:
            hint = " (the checkpoint looks like a different architecture or size)"
        raise InvalidInputError(
            f"weights from {report.path or report.source} do not fit model {name}{hint}:\n"
            + "\n".join(_problem_lines(report))
            + "\n(use strict=False to load the matching tensors only)"
        )
    model.load_state_dict(good, strict=False)
    report.loaded = sorted(good)
    return report


def load_pretrained(
    model: nn.Module,
    source: str | os.PathLike[str] | Mapping[str, Any],
    strict: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LoadReport:
    """Load pretrained weights into ``model`` (in place).

    Resolves ``source`` (:func:`resolve_source`: file, folder, URL, Hub id,
    ``"official"``/``"hf"`` with ``model.model_name``), reads it
    (:func:`read_checkpoint`), unwraps training wrappers, converts official /
    timm / Hugging Face key names (``to_swinlab``), adapts the head and the
    position tables to the model (:func:`~swinlab.weights.adapt.adapt_state_dict`,
    as the official fine-tuning code) and loads. ``source`` may also be an
    in-memory state dict / checkpoint.

    Args:
        model: a :class:`~swinlab.models.swin.SwinTransformer` or
            :class:`~swinlab.models.vit.VisionTransformer`.
        source: see above.
        strict: raise on any missing, unexpected or mis-shaped key; else load
            what fits and report the rest.
        cache_dir: download cache for URLs.

    Returns:
        a :class:`LoadReport`.

    Raises:
        ValueError: the weights do not fit the model (one message listing the
            keys), an unreadable or unsafe file, an unknown layout.
        FileNotFoundError: the source does not exist.
        ConnectionError: a download failed.
    """
    if isinstance(source, Mapping):
        report = LoadReport(source="state_dict")
        raw = unwrap_checkpoint(source)
    else:
        path = resolve_source(source, getattr(model, "model_name", None), cache_dir)
        report = LoadReport(source=str(source), path=str(path))
        raw = read_checkpoint(path)
    where = report.path or report.source
    try:
        report.layout = detect_layout(raw)
        state_dict = to_swinlab(raw, report.layout)
    except ValueError as err:
        raise InvalidInputError(f"{where}: {err}") from None
    try:
        state_dict, adapt = adapt_state_dict(state_dict, model)
    except ValueError as err:
        raise InvalidInputError(f"{where}: {err}") from None
    report.adapted = adapt.adapted
    report.reinitialized = adapt.reinitialized
    return load_state_dict_checked(model, state_dict, strict=strict, report=report)
