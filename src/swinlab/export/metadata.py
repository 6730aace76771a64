"""What an exported model carries so that inference needs nothing else:
class names and the evaluation preprocessing.

The same fields are stored two ways:

* ONNX files: one ``metadata_props`` entry per field (ONNX ``ModelProto``
  string key / value pairs), each value JSON-encoded, e.g.
  ``class_names = '["goldfish", ...]'``, ``input_size = '[3, 224, 224]'``;
* TorchScript / ExportedProgram files: a sidecar JSON object next to the
  file, named ``PATH.json`` (``model.pt`` -> ``model.pt.json``).

Fields (:class:`ExportMetadata`): ``model_name``, ``class_names`` (one per
output, index order), ``classes`` (class ids such as WordNet ids, or null),
``input_size`` ``[3, H, W]`` in pixels (the graph's static input size),
``mean`` / ``std`` (RGB, for [0, 1] pixel values), ``crop_ratio`` (resize the
shorter side to ``size / crop_ratio``, then centre crop), ``interpolation``,
``format``, ``int8``, ``int8_scheme`` (``"dynamic"``, ``"blockwise"`` or ``"per-token"``; files
written before it existed read as ``"dynamic"``), ``source`` and
``swinlab_version``; plus
``metadata_version`` (this schema: 1).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..constants import INTERPOLATIONS
from ..errors import InputNotFoundError, InvalidInputError, UsageError
from ..inference.loading import ModelInfo
from ..io.files import atomic_write_text
from ..version import __version__

__all__ = [
    "METADATA_VERSION",
    "FORMATS",
    "INT8_SCHEMES",
    "check_calibration",
    "check_int8_options",
    "ExportMetadata",
    "sidecar_path",
    "write_sidecar",
    "read_sidecar",
]

#: version of the metadata schema written by this module.
METADATA_VERSION = 1
#: export formats, as named on the command line.
FORMATS = ("onnx", "torchscript", "exported-program")
#: int8 quantization schemes of the ONNX export (see :func:`.onnx_export.quantize_int8`).
INT8_SCHEMES = ("dynamic", "blockwise", "per-token")


def check_calibration(int8_scheme: str, calibration: object) -> None:
    """Calibration images (``calibration`` not None) belong to the ``"per-token"`` scheme only.

    Raises:
        UsageError: ``calibration`` given with another ``int8_scheme``.
    """
    if calibration is not None and int8_scheme != "per-token":
        raise UsageError("--calibration is for --int8-scheme per-token")


def check_int8_options(fmt: str, int8: bool, int8_scheme: str, calibration: object = None,
                       runtime: str = "onnxruntime") -> None:
    """The int8 options of an export or a run, checked together.

    ONNX Runtime (exports, ``--runtime onnxruntime``): ``int8_scheme`` one of
    :data:`INT8_SCHEMES` and only with ``int8``, ``calibration`` only with
    ``"per-token"`` (:func:`check_calibration`), ``int8`` only with the
    ``"onnx"`` format (ONNX Runtime quantization). OpenVINO (``runtime``
    ``"openvino"``): int8 is NNCF's, so no ``int8_scheme`` but the default,
    and ``int8`` and ``calibration`` together (NNCF calibrates on the images).

    Raises:
        UsageError: naming the option that does not fit, as on the command line.
    """
    if runtime == "openvino":
        if int8_scheme != "dynamic":
            raise UsageError(f"--int8-scheme {int8_scheme} is for ONNX Runtime; OpenVINO's --int8 is NNCF's "
                             "post-training quantization on --calibration images")
        if int8 != (calibration is not None):
            raise UsageError("--runtime openvino: --int8 and --calibration IMAGES go together "
                             "(NNCF calibrates the int8 ranges on the images)")
        return
    if int8_scheme not in INT8_SCHEMES:
        raise UsageError(f"--int8-scheme {int8_scheme!r}: expected one of {', '.join(INT8_SCHEMES)}")
    if int8_scheme != "dynamic" and not int8:
        raise UsageError(f"--int8-scheme {int8_scheme} needs --int8")
    check_calibration(int8_scheme, calibration)
    if int8 and fmt != "onnx":
        raise UsageError(f"--int8 works with --format onnx only (ONNX Runtime quantization), not {fmt}")


@dataclass
class ExportMetadata:
    """Class names and preprocessing of an exported model (see the module docstring).

    Attributes:
        model_name: registry name. class_names: one per output.
        input_size: ``(3, H, W)`` of the exported graph [pixels].
        mean, std: RGB normalisation of [0, 1] values.
        crop_ratio: eval resize-then-centre-crop ratio in (0, 1].
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``.
        format: one of :data:`FORMATS`. int8: Linear layers quantized to int8.
        int8_scheme: one of :data:`INT8_SCHEMES` (meaningful with ``int8``).
        classes: class ids when known. source: what was exported.
    """

    model_name: str
    class_names: list[str]
    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_ratio: float
    interpolation: str
    format: str
    int8: bool = False
    int8_scheme: str = "dynamic"
    classes: list[str] | None = None
    source: str = ""
    swinlab_version: str = __version__
    metadata_version: int = METADATA_VERSION

    @classmethod
    def from_model_info(
        cls, info: ModelInfo, img_hw: tuple[int, int], fmt: str, int8: bool = False,
        int8_scheme: str = "dynamic",
    ) -> "ExportMetadata":
        """The metadata of ``info`` (from :func:`swinlab.inference.load_model`)
        for a graph with input ``(3, *img_hw)``."""
        return cls(
            model_name=info.model_name,
            class_names=list(info.class_names),
            input_size=(3, int(img_hw[0]), int(img_hw[1])),
            mean=tuple(float(v) for v in info.mean),  # type: ignore[arg-type]
            std=tuple(float(v) for v in info.std),  # type: ignore[arg-type]
            crop_ratio=float(info.crop_ratio),
            interpolation=str(info.interpolation),
            format=fmt,
            int8=bool(int8),
            int8_scheme=int8_scheme,
            classes=list(info.classes) if info.classes else None,
            source=str(info.source),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists)."""
        d = asdict(self)
        for key in ("input_size", "mean", "std"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> "ExportMetadata":
        """Validate and build from a decoded dict.

        Args:
            d: the fields (see the module docstring). where: the file, named in errors.

        Raises:
            InvalidInputError: a missing key or a value of the wrong type / range,
                naming ``where``, the key and what was expected.
        """
        def need(key: str) -> Any:
            if key not in d:
                raise InvalidInputError(f"{where}: metadata key {key!r} is missing (not a swinlab export?)")
            return d[key]

        names = need("class_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise InvalidInputError(f"{where}: metadata 'class_names' must be a non-empty list of strings")
        size = need("input_size")
        if not (isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)):
            raise InvalidInputError(f"{where}: metadata 'input_size' must be [3, H, W] positive ints, got {size}")
        stats = {}
        for key in ("mean", "std"):
            v = need(key)
            if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)):
                raise InvalidInputError(f"{where}: metadata {key!r} must be 3 numbers, got {v}")
            stats[key] = tuple(float(x) for x in v)
        crop = need("crop_ratio")
        if not isinstance(crop, (int, float)) or not 0 < crop <= 1:
            raise InvalidInputError(f"{where}: metadata 'crop_ratio' must be a number in (0, 1], got {crop}")
        interp = need("interpolation")
        if interp not in INTERPOLATIONS:
            raise InvalidInputError(
                f"{where}: metadata 'interpolation' must be one of {INTERPOLATIONS}, got {interp!r}"
            )
        scheme = d.get("int8_scheme", "dynamic")
        if scheme not in INT8_SCHEMES:
            raise InvalidInputError(f"{where}: metadata 'int8_scheme' must be one of {INT8_SCHEMES}, got {scheme!r}")
        classes = d.get("classes")
        return cls(
            model_name=str(need("model_name")),
            class_names=list(names),
            input_size=tuple(size),  # type: ignore[arg-type]
            mean=stats["mean"],  # type: ignore[arg-type]
            std=stats["std"],  # type: ignore[arg-type]
            crop_ratio=float(crop),
            interpolation=str(interp),
            format=str(need("format")),
            int8=bool(d.get("int8", False)),
            int8_scheme=str(scheme),
            classes=[str(c) for c in classes] if isinstance(classes, list) else None,
            source=str(d.get("source", "")),
            swinlab_version=str(d.get("swinlab_version", "")),
            metadata_version=int(d.get("metadata_version", METADATA_VERSION)),
        )

    def to_onnx_props(self) -> dict[str, str]:
        """``metadata_props`` entries: each field JSON-encoded."""
        return {k: json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_onnx_props(cls, props: dict[str, str], where: str) -> "ExportMetadata":
        """Inverse of :meth:`to_onnx_props` (unknown keys are ignored).

        Raises:
            InvalidInputError: a value that is not JSON, or see :meth:`from_dict`.
        """
        decoded = {}
        for k, v in props.items():
            try:
                decoded[k] = json.loads(v)
            except json.JSONDecodeError:
                decoded[k] = v  # foreign metadata: kept as text, validated by from_dict if used
        return cls.from_dict(decoded, where)

    @property
    def img_hw(self) -> tuple[int, int]:
        """``(H, W)`` of the graph input [pixels]."""
        return int(self.input_size[1]), int(self.input_size[2])

    def to_model_info(self) -> ModelInfo:
        """A :class:`ModelInfo` for :func:`swinlab.inference.predict` (square
        inputs only: ``img_size`` is H; a non-square export keeps its size in
        ``extra["input_hw"]``)."""
        h, w = self.img_hw
        return ModelInfo(
            model_name=self.model_name,
            class_names=list(self.class_names),
            img_size=h,
            mean=self.mean,
            std=self.std,
            crop_ratio=self.crop_ratio,
            interpolation=self.interpolation,
            classes=list(self.classes) if self.classes else None,
            source=self.source,
            kind="export",
            extra={"input_hw": (h, w), "format": self.format, "int8": self.int8},
        )


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``PATH.json``: the metadata file of a TorchScript / ExportedProgram file."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def write_sidecar(path: str | os.PathLike[str], meta: ExportMetadata) -> Path:
    """Write ``meta`` to :func:`sidecar_path` of ``path`` (atomically).

    Returns:
        the sidecar's path.
    """
    return atomic_write_text(sidecar_path(path), json.dumps(meta.to_dict(), indent=2) + "\n")


def read_sidecar(path: str | os.PathLike[str]) -> ExportMetadata:
    """Read the sidecar metadata of an exported TorchScript / ExportedProgram file.

    Raises:
        InputNotFoundError: ``PATH.json`` does not exist.
        InvalidInputError: it is not JSON, or a field is missing or wrong.
    """
    side = sidecar_path(path)
    if not side.is_file():
        raise InputNotFoundError(
            f"metadata file {side} not found (written by 'swinlab export' next to {Path(path).name})"
        )
    try:
        d = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{side}: not a JSON file ({e})") from None
    if not isinstance(d, dict):
        raise InvalidInputError(f"{side}: expected a JSON object, got {type(d).__name__}")
    return ExportMetadata.from_dict(d, str(side))
