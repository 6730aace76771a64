"""Run the application with uvicorn."""

from __future__ import annotations

from .app import ServeConfig, create_app
from .predictor import Predictor

__all__ = ["serve"]


def serve(predictor: Predictor, config: ServeConfig, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info") -> None:
    """Serve ``predictor`` on ``host:port`` until interrupted (uvicorn, one
    process; the model runs in one worker thread, see
    :class:`~swinlab.serve.batching.MicroBatcher`).

    Raises:
        OSError: the address cannot be bound (e.g. the port is in use).
    """
    import uvicorn

    app = create_app(predictor, config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
