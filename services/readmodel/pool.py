"""The connection pool every reader and the projector of a process share."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from services.runtime.settings import Settings

#: Seconds a request waits for a connection before it is told the database is unavailable.
CONNECT_TIMEOUT = 5.0


def connection_pool(settings: Settings) -> AsyncConnectionPool:
    """A pool on ``OMBOARD_DATABASE_URL``, opened by the projector when the worker starts.

    Raises SystemExit naming the setting when it is missing: the launcher and ``omboard run``
    always set it (to the embedded server), production must."""
    if not settings.database_url:
        raise SystemExit("reporting: OMBOARD_DATABASE_URL is not set: the read model needs a PostgreSQL "
                         "database (omboard run starts one under var/postgres)")
    return AsyncConnectionPool(
        settings.database_url, open=False, min_size=1, max_size=4, timeout=CONNECT_TIMEOUT,
        kwargs={"connect_timeout": int(CONNECT_TIMEOUT), "application_name": "omboard-reporting"},
    )
