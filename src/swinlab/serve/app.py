"""The HTTP API and demo page (FastAPI).

FastAPI (on Starlette, served by uvicorn) because uploads are handled
asynchronously (a slow client does not hold a model thread), multipart
parsing and the OpenAPI schema (``/docs``) come with it, and its
``TestClient`` plus a real uvicorn process make the server testable.

Endpoints:

* ``GET /health``: ``{"status": "ok", "model", "runtime"}``.
* ``GET /info``: model, runtime, classes, input size, limits and the
  attention blocks the demo page can show.
* ``POST /predict?topk=K``: images as ``multipart/form-data`` file fields (one
  or several) or one image as the raw body; answers
  ``{"model", "runtime", "results": [{"file", "width", "height", "predictions":
  [{"rank", "index", "class", "probability"}]}]}``.
* ``POST /attention?block=K&format=png|json``: one image (as above); the
  attention map of block K (0-based; default the last block, i.e. the last
  stage) as a PNG overlay on the model input, or as JSON ``{"block",
  "label", "grid"}``.
* ``GET /``: the demo page (``static/index.html``).

Errors are JSON ``{"detail": "one-line message"}``: 400 no image / empty
file / bad parameter, 413 request body over ``max_bytes`` or image over
``max_pixels``, 422 not an image or a damaged one, 409 attention asked of a
server without the PyTorch model. The server keeps serving after any of them.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..errors import CorruptImageError, UsageError
from .batching import MicroBatcher
from .limits import BodyLimitMiddleware
from .predictor import ImageTooLargeError, Predictor, decode_upload

__all__ = ["ServeConfig", "create_app", "STATIC_DIR"]

#: the demo page's files (package data).
STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass
class ServeConfig:
    """Server limits and batching.

    Attributes:
        max_bytes: largest request body [bytes] (413 above).
        max_pixels: largest image, width x height (413 above; decompression bomb guard).
        max_files: most images in one request. topk: default classes per image.
        max_batch: most images per forward pass. batch_wait_ms: longest wait for
            more requests to batch with [milliseconds].
    """

    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_files: int = 32
    topk: int = 5
    max_batch: int = 16
    batch_wait_ms: float = 5.0


async def _uploads(request: Request, config: ServeConfig) -> list[tuple[str, bytes]]:
    """``(file name, bytes)`` of the images in a multipart or raw request body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=config.max_files, max_fields=config.max_files)
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise HTTPException(400, "no file in the multipart body; send images as file fields (-F file=@cat.jpg)")
        items = [(f.filename or f"file{i}", await f.read()) for i, f in enumerate(files)]
    else:
        items = [(request.query_params.get("name") or "body", await request.body())]
    for name, data in items:
        if not data:
            raise HTTPException(400, f"empty image '{name}' (0 bytes)")
    return items


async def _decode(items: list[tuple[str, bytes]], predictor: Predictor, config: ServeConfig) -> list[dict[str, Any]]:
    """Decode and preprocess each upload (in a worker thread): ``{"file", "width", "height", "x"}``."""
    def work(name: str, data: bytes) -> dict[str, Any]:
        img = decode_upload(data, name, config.max_pixels)
        return {"file": name, "width": int(img.shape[2]), "height": int(img.shape[1]), "x": predictor.preprocess(img)}

    out = []
    for name, data in items:
        try:
            out.append(await run_in_threadpool(work, name, data))
        except ImageTooLargeError as e:
            raise HTTPException(413, str(e)) from None
        except CorruptImageError as e:
            raise HTTPException(422, str(e)) from None
    return out


def _routes(app: FastAPI, predictor: Predictor, config: ServeConfig, batcher: MicroBatcher) -> None:
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": predictor.info.model_name, "runtime": predictor.runtime}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {**predictor.describe(), "topk": config.topk, "limits": asdict(config),
                "batches": batcher.batches, "batched_images": batcher.images}

    @app.post("/predict")
    async def predict(request: Request, topk: int = Query(None, ge=1, le=1000)) -> dict[str, Any]:
        images = await _decode(await _uploads(request, config), predictor, config)
        probs = await batcher(torch.stack([im.pop("x") for im in images]))
        for im, row in zip(images, probs):
            im["predictions"] = predictor.top(row, topk or config.topk)
        return {"model": predictor.info.model_name, "runtime": predictor.runtime, "results": images}

    @app.post("/attention")
    async def attention(request: Request, block: int = Query(None), format: str = Query("png", pattern="^(png|json)$")):
        items = await _uploads(request, config)
        if len(items) != 1:
            raise HTTPException(400, f"/attention takes one image, got {len(items)}")
        (image,) = await _decode(items, predictor, config)
        try:
            if format == "json":
                k, grid = await batcher.run_exclusive(predictor.attention, image["x"], block)
                return {"block": k, "label": predictor.block_labels[k], "grid": grid.tolist()}
            k, png = await batcher.run_exclusive(predictor.attention_png, image["x"], block)
        except UsageError as e:
            raise HTTPException(409 if predictor.eager_model is None else 400, str(e)) from None
        headers = {"X-Block": str(k), "X-Block-Label": predictor.block_labels[k]}
        return Response(png, media_type="image/png", headers=headers)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")


def create_app(predictor: Predictor, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI application serving ``predictor`` (see the module docstring).

    The micro-batcher starts and stops with the application (its lifespan).
    """
    config = config or ServeConfig()
    batcher = MicroBatcher(predictor.probabilities, config.max_batch, config.batch_wait_ms / 1000)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="swinlab", description="Image classification with a swinlab model", lifespan=lifespan)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_bytes)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(HTTPException)
    async def one_line_errors(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in err.get("loc", ())[1:]) or "request"
        text = f"{where}={err.get('input')!r}: {err.get('msg', 'invalid')}"
        return JSONResponse({"detail": text}, status_code=400)

    _routes(app, predictor, config, batcher)
    app.state.predictor, app.state.config, app.state.batcher = predictor, config, batcher
    return app
