"""Image decoding: encoded bytes -> uint8 RGB tensor ``(3, H, W)``.

:func:`decode_image` is the one decoder of swinlab: the training data sets,
``evaluate``, ``predict``, ``features`` (and serving) all call it, so an image
gives the same pixels everywhere. It follows Pillow (``PIL.Image.open``)
and applies, in this order:

1. **Size limit**: an image whose declared width x height exceeds
   ``max_pixels`` is refused *before* its pixels are decoded (a
   decompression bomb -- a tiny file declaring 30000 x 30000 pixels -- costs
   nothing). Pillow's own guard (:class:`PIL.Image.DecompressionBombError`,
   over ``2 * PIL.Image.MAX_IMAGE_PIXELS``) is reported the same way, so
   ``max_pixels`` above that bound has no further effect.
2. **First frame** of animated / multi-frame files (GIF, APNG, TIFF, MPO).
3. **EXIF orientation** (:func:`PIL.ImageOps.exif_transpose`): the pixels
   come out the way a viewer shows them.
4. **Conversion to 8-bit RGB** (:data:`ALPHA_BACKGROUND` and the rules below).

Pixel-format rules (``mode`` is Pillow's):

* ``RGB``, ``L`` (replicated to 3 channels), ``1`` (0 / 255), ``CMYK``,
  ``YCbCr``, ``LAB``, ``HSV``, ``P`` without transparency: ``Image.convert("RGB")``.
* **Alpha** (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, and ``P`` / ``L`` /
  ``RGB`` with a transparency key): composited over an opaque white
  background, ``out = round((rgb * a + 255 * (255 - a)) / 255)`` -- what a
  viewer shows on a white page. (A plain ``convert("RGB")`` would keep
  whatever colour the file stores under fully transparent pixels, often black
  and sometimes garbage.)
* **16-bit** (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``: 16-bit grayscale PNG /
  TIFF): the high byte, ``v >> 8`` (0..65535 -> 0..255), the same mapping
  Pillow applies when it opens a 16-bit RGB(A) PNG. Never clipped.
* **32-bit integer** (``I``): values within 0..65535 are taken as 16-bit data
  (``v >> 8``, as above: older Pillow opened 16-bit PNGs as ``I``); an image
  with values outside that range is min-max scaled like a float image.
* **Float** (``F``, e.g. 32-bit float TIFF): values within [0, 1] are scaled
  by 255 and rounded; an image with values outside [0, 1] is min-max scaled to
  0..255 over its own range (so its appearance is kept, but absolute values
  are not comparable between such images); a constant image outside [0, 1]
  is clipped. NaN or infinite values make the image unreadable.

Every failure is a :class:`~swinlab.errors.CorruptImageError` (exit status 2
on the command line) whose one-line message names the file (and archive)
and gives the reason in words.

Thread safety: :func:`decode_image` is called from the data sets' decode
threads, so it does not touch :mod:`warnings` filters
(``warnings.catch_warnings`` is not thread-safe before Python 3.14: threads
interleaving it can leave a process-wide "ignore" filter behind). Pillow's
``DecompressionBombWarning`` (images over ``PIL.Image.MAX_IMAGE_PIXELS``) is
therefore not silenced; with the default limits every image that triggers
it is refused by the ``max_pixels`` check anyway.
"""

from __future__ import annotations

import io
import re

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import CorruptImageError

__all__ = [
    "ALPHA_BACKGROUND",
    "CorruptImageError",
    "DATASET_MAX_PIXELS",
    "DEFAULT_MAX_PIXELS",
    "decode_image",
    "pil_to_array",
    "pil_to_tensor",
]

#: default decoded-pixel limit (width x height) of inference (``predict``,
#: ``features``, ``evaluate``, serving): 64 megapixels, e.g. 8000 x 8000.
DEFAULT_MAX_PIXELS = 64_000_000
#: default decoded-pixel limit of the training data sets: Pillow's default
#: ``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485, about 9459 x 9459).
DATASET_MAX_PIXELS = 89_478_485
#: RGB colour that images with an alpha channel are composited over (white).
ALPHA_BACKGROUND = (255, 255, 255)

_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
_BOMB = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+)")


def _replicate(gray: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` -> ``(H, W, 3)``."""
    return np.repeat(gray[:, :, None], 3, axis=2)


def _scale_float(values: np.ndarray) -> np.ndarray:
    """float ``(H, W)`` -> uint8 ``(H, W)`` by the module's float rule.

    Raises:
        ValueError: NaN or infinite values.
    """
    values = values.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        raise ValueError("the image holds NaN or infinite pixel values")
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0.0 and hi <= 1.0:
        scaled = values * np.float32(255.0)
    elif hi > lo:
        scaled = (values - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    else:  # a constant image outside [0, 1]
        scaled = np.clip(values, 0.0, 1.0) * np.float32(255.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _composite(rgba: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 4)`` -> ``(H, W, 3)`` over :data:`ALPHA_BACKGROUND` (rounded)."""
    rgb = rgba[:, :, :3].astype(np.uint16)
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    background = np.asarray(ALPHA_BACKGROUND, dtype=np.uint16)
    return ((rgb * alpha + background * (255 - alpha) + 127) // 255).astype(np.uint8)


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in _ALPHA or (img.mode in ("P", "L", "RGB", "1") and "transparency" in img.info)


def pil_to_array(img: Image.Image) -> np.ndarray:
    """A loaded PIL image (any mode) -> uint8 array ``(H, W, 3)``, RGB.

    Follows the pixel-format rules of the module docstring (alpha over
    white, 16-bit ``v >> 8``, float in [0, 1] x 255, else min-max).

    Raises:
        ValueError: a float image with NaN / infinite values, or a mode Pillow
            cannot convert to RGB.
    """
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        return _replicate((np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8))
    if mode == "I":
        values = np.asarray(img)
        if values.size and values.min() >= 0 and values.max() <= 0xFFFF:
            return _replicate((values >> 8).astype(np.uint8))
        return _replicate(_scale_float(values))
    if mode == "F":
        return _replicate(_scale_float(np.asarray(img)))
    if _has_alpha(img):
        return _composite(np.asarray(img.convert("RGBA")))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """A loaded PIL image (any mode) -> uint8 tensor ``(3, H, W)``, RGB
    (:func:`pil_to_array`, channels first, a fresh writable copy).

    Raises:
        ValueError: see :func:`pil_to_array`.
    """
    return torch.from_numpy(np.ascontiguousarray(pil_to_array(img).transpose(2, 0, 1)))


def _reason(exc: BaseException) -> str:
    """One line, in words, without object reprs such as ``<_io.BytesIO object at 0x...>``."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image in a format Pillow reads (or the file is damaged)"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    text = _REPR.sub("the data", str(exc).strip()).splitlines()
    return text[0] if text else type(exc).__name__


def _too_many_pixels(pixels: int, size: str, max_pixels: int | None, guard: int | None = None) -> ValueError:
    """The message of an image over the pixel limit (ours, or Pillow's bomb guard)."""
    if max_pixels is not None and pixels > max_pixels:
        limit = f"the limit of {max_pixels:,} (max_pixels / --max-pixels)"
    else:
        limit = f"Pillow's decompression-bomb limit of {guard or 0:,} (2 x PIL.Image.MAX_IMAGE_PIXELS)"
    return ValueError(f"{size}{pixels:,} pixels is over {limit}")


def _open_checked(data: bytes | bytearray | memoryview, max_pixels: int | None) -> Image.Image:
    """``Image.open`` + the pixel limit (before any pixel is decoded) + load of frame 0.

    Raises:
        ValueError: empty, or over ``max_pixels`` / Pillow's bomb guard (both numbers given).
        Exception: whatever Pillow raises on bad data.
    """
    if len(data) == 0:
        raise ValueError("the file is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # over 2 x MAX_IMAGE_PIXELS: raised before we see the size
        found = _BOMB.search(str(exc))
        if found is None:
            raise
        raise _too_many_pixels(int(found.group(1)), "", max_pixels, int(found.group(2))) from None
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        img.close()
        raise _too_many_pixels(width * height, f"{width} x {height} = ", max_pixels)
    img.load()  # frame 0 of an animated / multi-frame file
    return img


def decode_image(
    data: bytes | bytearray | memoryview,
    name: str,
    archive: str | None = None,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Decode one encoded image (JPEG, PNG, GIF, BMP, WebP, TIFF, PNM, ...) with Pillow.

    Args:
        data: the encoded file contents.
        name: file name (member path inside ``archive``, or a file path), used in errors.
        archive: path of the containing archive, if any, used in errors.
        max_pixels: refuse images whose width x height exceeds this many pixels
            (checked from the header, before decoding); None = only Pillow's own
            decompression-bomb guard. Default :data:`DEFAULT_MAX_PIXELS` (64 MPixel).

    Returns:
        uint8 tensor ``(3, H, W)``, RGB, values 0..255; the first frame,
        EXIF-oriented, converted as the module docstring says.

    Raises:
        CorruptImageError: the bytes are not a decodable image, are empty,
            exceed ``max_pixels`` or hold NaN / infinite float pixels; message
            ``cannot decode image '<name>' in <archive>: <reason>`` (one line).
    """
    where = f"'{name}'" + (f" in {archive}" if archive else "")
    try:
        img = _open_checked(data, max_pixels)
        with img:
            ImageOps.exif_transpose(img, in_place=True)
            return pil_to_tensor(img)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on damaged files
        raise CorruptImageError(f"cannot decode image {where}: {_reason(exc)}") from exc
