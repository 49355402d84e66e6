"""Run one service's Faust worker in this process: ``omboard worker <service>``."""

from __future__ import annotations

import importlib

import faust

from schemas.topics import SERVICES
from services.runtime.logs import logging_config
from services.runtime.settings import get_settings


def build_service(name: str) -> faust.App:
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    module = importlib.import_module(f"services.{name}.app")
    return module.build(get_settings())


def run_service(name: str) -> None:
    settings = get_settings()
    app = build_service(name)
    # Faust's Worker owns the event loop and the signal handlers: SIGTERM/SIGINT stop it cleanly.
    worker = faust.Worker(
        app, loglevel=settings.log_level, redirect_stdouts=False,
        logging_config=logging_config(name, settings.log_level),
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    import sys

    run_service(sys.argv[1])
