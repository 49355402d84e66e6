"""Run one service's worker in this process: ``omboard worker <service>``."""

from __future__ import annotations

import asyncio

from services.bootstrap import bootstrap, build_worker
from services.runtime.logs import configure_logging


def run_service(name: str) -> None:
    root = bootstrap()
    configure_logging(name, root.settings.log_level)
    app = build_worker(name, root)
    asyncio.run(app.run())  # SIGTERM/SIGINT stop it cleanly (StreamApp.run)


if __name__ == "__main__":
    import sys

    run_service(sys.argv[1])
