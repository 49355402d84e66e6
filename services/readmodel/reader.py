"""The status side's reads (``TaskReader``) from the read model in PostgreSQL.

A database that cannot be reached, or a pool that has no connection to give in time, is
``ReadModelUnavailable``: the API answers 503 with the reason rather than hanging or failing
with a stack trace.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from schemas.tasks import DateVerdict, Holding
from services.domain.ledger import TaskRecord
from services.readmodel import queries

log = logging.getLogger(__name__)
T = TypeVar("T")


class ReadModelUnavailable(RuntimeError):
    """The read model cannot answer now (its database is unreachable); the message says why."""


@dataclass(frozen=True)
class Row:
    """A task as the read model has it, with the prerequisites that still hold it up."""

    record: TaskRecord
    waiting_for: list[str]

    @property
    def provider_id(self) -> str:
        return self.record.task.subject.provider_id


class TaskReader(Protocol):
    """What the API reads (``PostgresReader``); each raises
    ReadModelUnavailable when it cannot answer."""

    async def summaries(self, today: dt.date, provider_id: str | None = None) -> list[dict[str, Any]]: ...
    async def provider_tasks(self, provider_id: str, today: dt.date, *, system: str | None, responsible: str | None,
                             status: str | None, limit: int, offset: int) -> list[Row]: ...
    async def overdue(self, today: dt.date, *, provider_id: str | None, system: str | None,
                      responsible: str | None, limit: int, offset: int) -> list[Row]: ...
    async def tasks(self, today: dt.date, *, limit: int, offset: int, **filters: Any) -> list[Row]: ...
    async def task(self, task_id: str) -> Row | None: ...
    async def rule_tasks(self, provider_id: str, rules: list[str], today: dt.date) -> list[Row]: ...
    async def holdings(self, provider_id: str) -> list[Holding]: ...
    async def verdicts(self, provider_id: str) -> list[DateVerdict]: ...


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


    async def rule_tasks(self, provider_id: str, rules: list[str], today: dt.date) -> list[Row]:
        return _rows(await self._ask(lambda: queries.rule_tasks(self.pool, provider_id, rules, today)))


    async def holdings(self, provider_id: str) -> list[Holding]:
        return await self._ask(lambda: queries.holdings(self.pool, provider_id))

    async def verdicts(self, provider_id: str) -> list[DateVerdict]:
        """The provider's dates at risk (``queries.at_risk_verdicts``)."""
        return await self._ask(lambda: queries.at_risk_verdicts(self.pool, provider_id))


def _rows(found: list[queries.TaskRow]) -> list[Row]:
    return [Row(record, waiting) for record, waiting in found]
