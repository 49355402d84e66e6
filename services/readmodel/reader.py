"""The status API's reads (``services.reporting.api.TaskReader``) from the read model in PostgreSQL.

A database that cannot be reached, or a pool that has no connection to give in time, is
``ReadModelUnavailable``: the API answers 503 with the reason rather than hanging or failing
with a stack trace.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.readmodel import queries
from services.reporting.api import ReadModelUnavailable, Row

log = logging.getLogger(__name__)
T = TypeVar("T")


class PostgresReader:
    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool

    async def _ask(self, query: Callable[[], Awaitable[T]]) -> T:
        try:
            return await query()
        except (psycopg.OperationalError, PoolTimeout) as error:
            log.warning("read model: the database cannot answer: %s", type(error).__name__)
            raise ReadModelUnavailable("its database cannot be reached") from None

    async def summaries(self, today: dt.date, provider_id: str | None = None) -> list[dict[str, Any]]:
        return await self._ask(lambda: queries.provider_summaries(self.pool, today, provider_id))

    async def provider_tasks(self, provider_id: str, today: dt.date, *, system: str | None, responsible: str | None,
                             status: str | None, limit: int, offset: int) -> list[Row]:
        return _rows(await self._ask(lambda: queries.provider_tasks(
            self.pool, provider_id, today, system=system, responsible=responsible, status=status,
            limit=limit, offset=offset)))

    async def overdue(self, today: dt.date, *, provider_id: str | None, system: str | None,
                      responsible: str | None, limit: int, offset: int) -> list[Row]:
        return _rows(await self._ask(lambda: queries.overdue_tasks(
            self.pool, today, provider_id=provider_id, system=system, responsible=responsible,
            limit=limit, offset=offset)))

    async def tasks(self, today: dt.date, *, limit: int, offset: int, **filters: Any) -> list[Row]:
        return _rows(await self._ask(lambda: queries.tasks(self.pool, today, limit=limit, offset=offset, **filters)))

    async def task(self, task_id: str) -> Row | None:
        found = await self._ask(lambda: queries.task(self.pool, task_id))
        if found is None:
            return None
        _provider_id, record, waiting = found
        return Row(record, waiting)


def _rows(found: list[queries.TaskRow]) -> list[Row]:
    return [Row(record, waiting) for record, waiting in found]
