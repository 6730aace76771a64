"""Images inlined in the report as ``data:`` URIs (the page needs no other file)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["data_uri", "file_data_uri", "thumbnail", "pixels_data_uri"]

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


def data_uri(payload: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` of ``payload``."""
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def file_data_uri(path: Path) -> str | None:
    """The data URI of an image file (PNG / JPEG / SVG); None when it does not exist."""
    if not path.is_file():
        return None
    return data_uri(path.read_bytes(), _MIME.get(path.suffix.lower(), "application/octet-stream"))


def thumbnail(image: torch.Tensor, max_side: int = 96) -> torch.Tensor:
    """A uint8 ``(3, H, W)`` image shrunk (antialiased bilinear) so that its
    longer side is at most ``max_side`` pixels; smaller images are kept."""
    h, w = image.shape[-2:]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def pixels_data_uri(pixels: torch.Tensor | np.ndarray, fmt: str = "JPEG") -> str:
    """Encode an image -- uint8 ``(3, H, W)`` tensor or ``(H, W, 3)`` array --
    as a JPEG (photos; quality 90) or PNG data URI."""
    if isinstance(pixels, torch.Tensor):
        pixels = pixels.permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buf, format=fmt, quality=90)
    return data_uri(buf.getvalue(), "image/jpeg" if fmt == "JPEG" else "image/png")
