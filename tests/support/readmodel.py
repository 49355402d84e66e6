"""The read-model tests' helpers: a database of each test's own on the session's embedded
PostgreSQL (fixtures in ``tests/integration/conftest.py``), and projecting and reading it the way
the reporting worker and the status API do."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from services.readmodel.projection import ChangelogRecord, positions, project

#: The reporting worker's tasks changelog, as the projector reads it.
CHANGELOG = "omboard-reporting-tasks-changelog"


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(body())  # type: ignore[arg-type]


async def connect(url: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


def on_pool(url: str, query: Callable[[AsyncConnectionPool], Awaitable[Any]]) -> Any:
    """Run ``query`` as the API will: on a connection pool."""
    async def body():
        pool = AsyncConnectionPool(url, min_size=1, max_size=2, open=False)
        await pool.open()
        try:
            return await query(pool)
        finally:
            await pool.close()

    return asyncio.run(body())


def table(url: str, query: str) -> list[tuple]:
    async def body():
        async with await connect(url) as conn:
            cursor = await conn.execute(query.encode())
            return await cursor.fetchall() if cursor.description else []

    return asyncio.run(body())


def projected(url: str, *batches: list[ChangelogRecord], changelog_name: str = CHANGELOG, apply=project) -> dict[int, int]:
    async def body():
        async with await connect(url) as conn:
            for batch in batches:
                await apply(conn, changelog_name, batch)
            return await positions(conn, changelog_name)

    return run(body)
