"""Image decoding: encoded bytes -> uint8 RGB tensor ``(3, H, W)``."""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image

from ..errors import CorruptImageError

__all__ = ["CorruptImageError", "decode_image", "pil_to_tensor"]


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image (any mode) -> uint8 tensor ``(3, H, W)``, RGB.

    Grayscale / palette / CMYK / RGBA images are converted with ``PIL.Image.convert("RGB")``
    (alpha is dropped).
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def decode_image(data: bytes, name: str, archive: str | None = None) -> torch.Tensor:
    """Decode encoded image bytes (JPEG/PNG/BMP/WebP/...) with Pillow.

    Args:
        data: the encoded file contents.
        name: file name (member path inside ``archive``, or a file path) used in errors.
        archive: path of the containing archive, if any, used in errors.

    Returns:
        uint8 tensor ``(3, H, W)``, RGB (grayscale converted).

    Raises:
        CorruptImageError: (a ``ValueError``) the bytes are not a decodable image;
            message ``cannot decode image '<name>' in <archive>: <reason>``.
    """
    where = f"'{name}'" + (f" in {archive}" if archive else "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. PIL's "Corrupt EXIF data" on valid pictures
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return pil_to_tensor(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        raise CorruptImageError(f"cannot decode image {where}: {reason}") from exc
