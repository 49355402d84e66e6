"""Run one service's worker in this process: ``omboard worker <service>``."""

from __future__ import annotations

import asyncio
import importlib

from schemas.topics import SERVICES
from services.runtime.logs import configure_logging
from services.runtime.settings import get_settings
from services.runtime.stream_app import StreamApp


def build_service(name: str) -> StreamApp:
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    module = importlib.import_module(f"services.{name}.app")
    return module.build(get_settings())


def run_service(name: str) -> None:
    settings = get_settings()
    configure_logging(name, settings.log_level)
    app = build_service(name)
    asyncio.run(app.run())  # SIGTERM/SIGINT stop it cleanly (StreamApp.run)


if __name__ == "__main__":
    import sys

    run_service(sys.argv[1])
