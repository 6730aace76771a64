"""The model side of the server, free of HTTP: decode an upload with its
limits, preprocess, run a batch, top-k, attention overlays.

Decoding goes through the one image decoder,
:func:`swinlab.data.decode.decode_image`. Before it, :func:`decode_upload`
reads only the image header (Pillow's ``Image.open`` is lazy) and refuses
images of more than ``max_pixels`` pixels, so a decompression bomb (a small
file that decodes to gigabytes) is refused before any pixel is decoded. This
check is the server's own, done here because ``decode_image`` has no pixel
limit parameter yet; Pillow's global ``Image.MAX_IMAGE_PIXELS`` is left as it is.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import nn

from ..data.decode import decode_image
from ..errors import CorruptImageError, InvalidInputError, UsageError
from ..inference.attention import attention_maps, denormalize
from ..inference.loading import ModelInfo, eval_transform_for

__all__ = ["ImageTooLargeError", "decode_upload", "Predictor", "overlay_png"]


class ImageTooLargeError(InvalidInputError):
    """An upload whose header declares more pixels than the server allows (HTTP 413)."""


def decode_upload(data: bytes, name: str, max_pixels: int) -> torch.Tensor:
    """Decode one uploaded image after checking its declared size.

    Args:
        data: the file's bytes. name: its file name (used in messages).
        max_pixels: largest width x height accepted.

    Returns:
        uint8 ``(3, H, W)`` RGB.

    Raises:
        ImageTooLargeError: width x height over ``max_pixels`` (or over Pillow's own bomb limit).
        CorruptImageError: not an image (said here, from the header), truncated or
            otherwise undecodable (from ``decode_image``).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: we apply our own limit below
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"image '{name}' is too large to decode: {e}") from None
    except UnidentifiedImageError:
        raise CorruptImageError(
            f"cannot decode image '{name}': not an image in a format Pillow reads (JPEG, PNG, GIF, BMP, WebP, TIFF...)"
        ) from None
    except Exception:  # an unreadable header of a known format: decode_image below says why
        width = height = 0
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image '{name}' is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} "
            "(decompression bomb guard; see --max-pixels)"
        )
    return decode_image(data, name)


def overlay_png(image_uint8: torch.Tensor, grid: torch.Tensor, min_side: int = 256, alpha: float = 0.55) -> bytes:
    """PNG of ``grid`` (an ``(h, w)`` attention map) upsampled (bilinear),
    min-max scaled, coloured with matplotlib's ``jet`` map and alpha-blended
    over ``image_uint8`` (``(3, H, W)``); the result is scaled so its shorter
    side is at least ``min_side`` pixels. Same drawing as
    :func:`swinlab.plots.save_attention_figure`, as one image."""
    import matplotlib

    H, W = image_uint8.shape[-2:]
    scale = max(1, -(-min_side // min(H, W)))
    size = (H * scale, W * scale)
    img = F.interpolate(image_uint8[None].float(), size=size, mode="bilinear", align_corners=False)[0] / 255.0
    up = F.interpolate(grid.float()[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    lo, hi = float(up.min()), float(up.max())
    up = (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)
    colours = torch.from_numpy(matplotlib.colormaps["jet"](up.numpy())[..., :3]).permute(2, 0, 1).float()
    out = ((1 - alpha) * img.clamp(0, 1) + alpha * colours).clamp(0, 1)
    arr = (out.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Predictor:
    """A loaded model ready to serve.

    Args:
        model: eager classifier (possibly under autocast,
            :class:`swinlab.inference.precision.AutocastModel`),
            :class:`swinlab.export.OnnxRuntimeModel` or :class:`swinlab.export.OpenVinoModel`
            (``(B, 3, S, S)`` float -> ``(B, C)`` logits).
        info: its :class:`ModelInfo` (class names, preprocessing).
        eager_model: the PyTorch model for attention maps (None: no attention).
        runtime: a label for ``/health``, as ``swinlab benchmark`` names runtimes
            (``"eager"``, ``"eager-bf16"``, ``"onnxruntime-int8"``, ``"openvino-bf16"`` ...).
    """

    model: Any
    info: ModelInfo
    eager_model: nn.Module | None = None
    runtime: str = "eager"

    def __post_init__(self) -> None:
        self.transform = eval_transform_for(self.info)
        self.block_labels = self._block_labels() if self.eager_model is not None else []

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 ``(3, H, W)`` -> normalised float ``(3, S, S)`` (resize, centre crop)."""
        return self.transform(image.unsqueeze(0))[0]

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities ``(B, C)`` float32 of a preprocessed batch ``(B, 3, S, S)``."""
        return self.model(batch).float().softmax(dim=1).cpu()

    def top(self, probs: torch.Tensor, k: int) -> list[dict[str, Any]]:
        """Top-``k`` of one probability row ``(C,)``: rank, index, class, probability."""
        values, indices = probs.topk(min(k, probs.shape[0]))
        return [
            {"rank": r, "index": int(i), "class": self.info.class_names[int(i)], "probability": float(p)}
            for r, (p, i) in enumerate(zip(values.tolist(), indices.tolist()), start=1)
        ]

    def _block_labels(self) -> list[str]:
        """``stage i, block j (h x w)`` per attention block (Swin), else ``block k (h x w)``."""
        s = int(self.info.img_size)
        maps = attention_maps(self.eager_model, torch.zeros(3, s, s))
        layers = getattr(self.eager_model, "layers", None)
        where: list[str] = []
        if layers is not None:
            for i, layer in enumerate(layers):
                where += [f"stage {i + 1}, block {j + 1}" for j in range(len(layer.blocks))]
        if len(where) != len(maps):
            where = [f"block {k + 1}" for k in range(len(maps))]
        return [f"{w} ({m.shape[0]}x{m.shape[1]})" for w, m in zip(where, maps)]

    def attention(self, x: torch.Tensor, block: int | None) -> tuple[int, torch.Tensor]:
        """Attention map of one block for a preprocessed image ``(3, S, S)``.

        Args:
            block: 0-based block index; None: the last block (last stage).

        Returns:
            ``(block, grid)``: the index used and the ``(h, w)`` map (see
            :func:`swinlab.inference.attention_maps`).

        Raises:
            UsageError: no eager model, or ``block`` out of range.
        """
        if self.eager_model is None:
            raise UsageError("attention maps need the PyTorch model; this server runs an ONNX file only")
        n = len(self.block_labels)
        k = n - 1 if block is None else block
        if not 0 <= k < n:
            raise UsageError(f"block={block} is out of range: this model has blocks 0 to {n - 1}")
        return k, attention_maps(self.eager_model, x)[k]

    def attention_png(self, x: torch.Tensor, block: int | None) -> tuple[int, bytes]:
        """:meth:`attention` drawn over the model input with :func:`overlay_png`."""
        k, grid = self.attention(x, block)
        return k, overlay_png(denormalize(x, self.info.mean, self.info.std), grid)

    def describe(self) -> dict[str, Any]:
        """What ``/info`` shows about the model."""
        return {
            "model": self.info.model_name,
            "runtime": self.runtime,
            "num_classes": self.info.num_classes,
            "img_size": int(self.info.img_size),
            "attention_blocks": list(self.block_labels),
        }

