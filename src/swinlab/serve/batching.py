"""Group the images of concurrent requests into one forward pass.

:class:`MicroBatcher` is the usual dynamic-batching queue of model servers:
a request puts its preprocessed images on an ``asyncio.Queue`` and awaits a
future; one background task takes the first waiting request, keeps
collecting requests for at most ``max_wait_s`` or until ``max_batch`` images
are gathered, runs the model once on the concatenation in a single worker
thread (so the event loop keeps accepting connections and at most one
forward runs at a time, using all the threads PyTorch / ONNX Runtime are
given), and hands each request its rows. A request with more images than
``max_batch`` runs as a batch of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["MicroBatcher"]


class MicroBatcher:
    """Dynamic batching of ``fn`` over concurrent callers (see the module docstring).

    Args:
        fn: ``(B, 3, S, S) -> (B, C)``, run in a worker thread.
        max_batch: most images per call of ``fn``. max_wait_s: longest wait
            for more requests after the first one [seconds].

    Use ``await start()`` inside the running event loop, ``await batcher(x)``
    with ``x`` ``(n, 3, S, S)`` to get ``(n, C)``, and ``await stop()``.
    Attributes ``batches`` and ``images`` count the calls of ``fn`` and the
    images they took.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], max_batch: int = 16, max_wait_s: float = 0.005):
        self.fn = fn
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="swinlab-model")
        self.batches = 0
        self.images = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._pending: tuple[torch.Tensor, asyncio.Future] | None = None  # did not fit the last batch

    async def start(self) -> None:
        """Start the background task (in the running loop)."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Cancel the background task and the worker thread; waiting callers get CancelledError."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def run_exclusive(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the model's worker thread (e.g. attention maps), after queued batches."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of ``fn`` for ``x`` ``(n, 3, S, S)``, batched with other callers' images."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((x, future))
        return await future

    async def _collect(self) -> list[tuple[torch.Tensor, asyncio.Future]]:
        assert self._queue is not None
        first, self._pending = self._pending, None
        items = [first if first is not None else await self._queue.get()]
        count = items[0][0].shape[0]
        deadline = time.monotonic() + self.max_wait_s
        while count < self.max_batch:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
            except asyncio.TimeoutError:
                break
            if count + item[0].shape[0] > self.max_batch:
                self._pending = item  # first in the next batch
                break
            items.append(item)
            count += item[0].shape[0]
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            live = [(x, f) for x, f in items if not f.done()]  # a client that went away cancelled its future
            if not live:
                continue
            batch = torch.cat([x for x, _ in live], dim=0)
            try:
                out = await loop.run_in_executor(self.executor, self.fn, batch)
            except Exception as e:  # hand the error to every waiting request; keep serving
                for _, f in live:
                    if not f.done():
                        f.set_exception(e)
                continue
            self.batches += 1
            self.images += batch.shape[0]
            start = 0
            for x, f in live:
                n = x.shape[0]
                if not f.done():
                    f.set_result(out[start : start + n])
                start += n
