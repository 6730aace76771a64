"""Request body size limit, as ASGI middleware.

A request whose ``Content-Length`` is over the limit is answered 413 before
its body is read. A body without a length (chunked) is counted as it
arrives and cut off with 413 as soon as it passes the limit, so no upload
(multipart included, which Starlette would otherwise spool whole to disk)
costs more than ``max_bytes`` of reading.
"""

from __future__ import annotations

import json
from typing import Any, Callable

__all__ = ["BodyLimitMiddleware"]


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Answer 413 ``{"detail": ...}`` to HTTP requests with more than ``max_bytes`` of body."""

    def __init__(self, app: Callable, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    def _message(self, size: int | None) -> bytes:
        got = f"{size:,} bytes" if size is not None else "more"
        text = f"request body of {got} is over the limit of {self.max_bytes:,} bytes (see --max-bytes)"
        return json.dumps({"detail": text}).encode()

    async def _reject(self, send: Callable, size: int | None) -> None:
        body = self._message(size)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send, int(length))
            return
        seen = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send, None)
