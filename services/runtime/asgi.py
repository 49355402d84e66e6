"""An ASGI app served by uvicorn inside a worker's event loop (health pages, the status API)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the worker owns the signals and stops us with itself
        yield


def in_loop(asgi: Any, host: str, port: int, log_level: str = "info",
            ) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """``(start, stop)``: start returns once the server listens, or raises what stopped it
    (e.g. the port is taken); stop waits up to five seconds for requests in flight."""
    config = uvicorn.Config(asgi, host=host, port=port, lifespan="off", log_config=None,
                            log_level=log_level.lower(), access_log=False)
    server = _Server(config)
    serving: list[asyncio.Task] = []

    async def start() -> None:
        task = asyncio.ensure_future(server.serve())
        serving.append(task)
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError(f"the server on {host}:{port} stopped at start")
            await asyncio.sleep(0.02)

    async def stop() -> None:
        server.should_exit = True
        for task in serving:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout=5)
            if not task.done():
                task.cancel()

    return start, stop
