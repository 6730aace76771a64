"""Serving: a FastAPI application (:func:`create_app`) with ``/predict``,
``/attention``, ``/health``, ``/info`` and a demo page, run by uvicorn
(:func:`serve`). Requests are decoded with
:func:`swinlab.data.decode.decode_image`, batched across concurrent clients
(:class:`MicroBatcher`) and run by the eager model or ONNX Runtime.

Layering: imports ``swinlab.export``, ``swinlab.inference`` and below;
imported by ``swinlab.cli`` only. fastapi / uvicorn are needed only here
(the ``serve`` extra).
"""

from .app import STATIC_DIR, ServeConfig, create_app
from .batching import MicroBatcher
from .predictor import ImageTooLargeError, Predictor, decode_upload, overlay_png
from .server import serve

__all__ = [
    "STATIC_DIR",
    "ImageTooLargeError",
    "MicroBatcher",
    "Predictor",
    "ServeConfig",
    "create_app",
    "decode_upload",
    "overlay_png",
    "serve",
]
