"""Liveness, readiness and metrics pages on each worker's health port.

Readiness is what the worker really does: joined, restored, holding partitions, producing, and
committing where messages wait. Liveness fails only when a loop of the worker died, which only a
restart mends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.runtime import metrics
from services.runtime.asgi import in_loop

if TYPE_CHECKING:
    from services.runtime.stream_app import StreamApp


def health_pages(app: StreamApp) -> Starlette:
    async def healthz(request: Request) -> Response:
        if app.crashed:
            return JSONResponse({"status": "broken", "problems": [app.crashed]}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        problems = app.readiness_problems()
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_page(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_page)])


def health_server(app: StreamApp) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    return in_loop(health_pages(app), app.settings.web_bind, app.web_port, app.settings.log_level)
