"""Reading the read model: what the status API serves, in the orders the in-memory ledger gave.

Every function takes a ``Source``: the API's ``AsyncConnectionPool`` (a connection is borrowed
for the query) or one ``AsyncConnection`` (tests, scripts). A task comes back as
``(record, waiting_for)``: its ``TaskRecord`` as the reporting worker holds it, and, for a blocked
task, the prerequisites that still hold it up (not done or cancelled, or not known at all; those
of the same provider, as in the ledger), in the order of ``depends_on``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from schemas.tasks import DateVerdict, Holding
from services.domain.ledger import TaskRecord

Source = AsyncConnectionPool | psycopg.AsyncConnection
TaskRow = tuple[TaskRecord, list[str]]

_ACTIVE = "t.status IN ('open', 'blocked')"  # as the partial index tasks_active_due says it
# An optional step is never overdue (``TaskRecord.overdue``): nobody chases it.
_OVERDUE = f"({_ACTIVE} AND t.due < %(today)s AND (t.record #>> '{{task,optional}}') IS DISTINCT FROM 'true')"
# What a task row is returned as; ``waiting_for`` only for blocked tasks, and only for the rows of
# the page (below, the page is chosen first: rows skipped by an offset cost no subquery).
_SELECT = """
SELECT t.provider_id, t.record::text,
       CASE WHEN t.status = 'blocked' THEN ARRAY(
           SELECT d.id FROM unnest(t.depends_on) WITH ORDINALITY AS d(id, n)
           WHERE NOT EXISTS (SELECT FROM tasks p WHERE p.id = d.id AND p.provider_id = t.provider_id
                                                   AND p.status IN ('done', 'cancelled'))
           ORDER BY d.n)
       ELSE '{}'::text[] END
"""
_RANK = f"CASE WHEN {_OVERDUE} THEN 0 WHEN {_ACTIVE} THEN 1 ELSE 2 END"


@asynccontextmanager
async def _connection(source: Source) -> AsyncIterator[psycopg.AsyncConnection]:
    if isinstance(source, AsyncConnectionPool):
        async with source.connection() as conn:
            yield conn
    else:
        yield source


async def _fetch(source: Source, query: str, params: dict[str, Any]) -> list[tuple]:
    # A transaction of its own: a plain connection is left as it was found, not idle in a transaction.
    async with _connection(source) as conn, conn.transaction():
        cursor = await conn.execute(query.encode(), params)
        return await cursor.fetchall()


async def _page(source: Source, where: str, order: str, params: dict[str, Any], limit: int,
                offset: int) -> list[TaskRow]:
    rows = await _fetch(source, f"""{_SELECT}
        FROM (SELECT * FROM tasks t {where} ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s) t
        ORDER BY {order}""", {**params, "limit": limit, "offset": offset})
    return [(TaskRecord.model_validate_json(record), list(waiting)) for _, record, waiting in rows]


def _where(**filters: Any) -> tuple[str, dict[str, Any]]:
    """``WHERE`` for the filters given (None: not filtered) on ``tasks t``."""
    column = {"provider_id": "t.provider_id", "system": "t.system", "responsible": "t.responsible",
              "status": "t.status", "obligation": "t.obligation", "unit_id": "t.unit_id"}
    conditions, params = [], {}
    for name, value in filters.items():
        if value is None:
            continue
        if name in column:
            conditions.append(f"{column[name]} = %({name})s")
        elif name == "overdue":
            conditions.append(_OVERDUE if value else f"NOT {_OVERDUE}")
            continue  # uses %(today)s, always given
        elif name == "due_from":
            conditions.append("t.due >= %(due_from)s")
        elif name == "due_to":
            conditions.append("t.due <= %(due_to)s")
        else:
            raise TypeError(f"no filter {name}")
        params[name] = value
    return ("WHERE " + " AND ".join(conditions)) if conditions else "", params


async def provider_summaries(source: Source, today: dt.date, provider_id: str | None = None) -> list[dict[str, Any]]:
    """Per provider: counts by status, overdue, the next due date of active work and the share
    finished (done or cancelled); those with the most overdue work first, then by next due date."""
    where, params = _where(provider_id=provider_id)
    rows = await _fetch(source, f"""
        SELECT t.provider_id, max(t.provider_name), count(*),
               count(*) FILTER (WHERE t.status = 'open'), count(*) FILTER (WHERE t.status = 'blocked'),
               count(*) FILTER (WHERE t.status = 'done'), count(*) FILTER (WHERE t.status = 'cancelled'),
               count(*) FILTER (WHERE t.status = 'failed'), count(*) FILTER (WHERE {_OVERDUE}),
               min(t.due) FILTER (WHERE {_ACTIVE})
        FROM tasks t {where}
        GROUP BY t.provider_id
        ORDER BY 9 DESC, 10 ASC NULLS LAST, 1""", {**params, "today": today})
    summaries = []
    for pid, name, total, opened, blocked, done, cancelled, failed, overdue, next_due in rows:
        summaries.append({
            "id": pid, "name": name, "total": total, "open": opened, "blocked": blocked, "done": done,
            "cancelled": cancelled, "failed": failed, "overdue": overdue,
            "next_due": next_due.isoformat() if next_due else None,
            "progress": round(100 * (done + cancelled) / total) if total else 100,
        })
    return summaries


async def provider_tasks(source: Source, provider_id: str, today: dt.date, *, system: str | None = None,
                         responsible: str | None = None, status: str | None = None, limit: int = 200,
                         offset: int = 0) -> list[TaskRow]:
    """One provider's checklist: overdue work first, then the other active work, then what is
    finished; each by due date, system, obligation and id."""
    where, params = _where(provider_id=provider_id, system=system, responsible=responsible, status=status)
    return await _page(source, where, f"{_RANK}, t.due, t.system, t.obligation, t.id", {**params, "today": today},
                       limit, offset)


async def overdue_tasks(source: Source, today: dt.date, *, provider_id: str | None = None, system: str | None = None,
                        responsible: str | None = None, limit: int = 200, offset: int = 0) -> list[TaskRow]:
    """Open or blocked tasks due before ``today``, oldest first (then system, obligation, id)."""
    where, params = _where(provider_id=provider_id, system=system, responsible=responsible)
    where = (where + " AND " if where else "WHERE ") + _OVERDUE
    return await _page(source, where, "t.due, t.system, t.obligation, t.id", {**params, "today": today}, limit, offset)


def _task_filters(provider_id: str | None, system: str | None, responsible: str | None, status: str | None,
                  obligation: str | None, unit_id: str | None, overdue: bool | None, due_from: dt.date | None,
                  due_to: dt.date | None) -> tuple[str, dict[str, Any]]:
    return _where(provider_id=provider_id, system=system, responsible=responsible, status=status,
                  obligation=obligation, unit_id=unit_id, overdue=overdue, due_from=due_from, due_to=due_to)


async def tasks(source: Source, today: dt.date, *, provider_id: str | None = None, system: str | None = None,
                responsible: str | None = None, status: str | None = None, obligation: str | None = None,
                unit_id: str | None = None, overdue: bool | None = None, due_from: dt.date | None = None,
                due_to: dt.date | None = None, limit: int = 1000, offset: int = 0) -> list[TaskRow]:
    """Every task matching the filters (``due_from``/``due_to`` inclusive; ``overdue`` True: only
    overdue work, False: everything else), by provider, due date and id."""
    where, params = _task_filters(provider_id, system, responsible, status, obligation, unit_id, overdue,
                                  due_from, due_to)
    return await _page(source, where, "t.provider_id, t.due, t.id", {**params, "today": today}, limit, offset)


async def rule_tasks(source: Source, provider_id: str, rules: list[str], today: dt.date) -> list[TaskRow]:
    """Every task of the provider planned by one of ``rules`` (its access register), by due date and
    id: all of them, for a register that leaves one out is wrong without saying so."""
    rows = await _fetch(source, f"""{_SELECT} FROM tasks t
        WHERE t.provider_id = %(provider_id)s AND t.rule = ANY(%(rules)s) ORDER BY t.due, t.id""",
                        {"provider_id": provider_id, "rules": rules, "today": today})
    return [(TaskRecord.model_validate_json(record), list(waiting)) for _, record, waiting in rows]


async def holdings(source: Source, provider_id: str) -> list[Holding]:
    """The places people took in the provider's units' orders (the access register's)."""
    rows = await _fetch(source, "SELECT record::text FROM holdings WHERE provider_id = %(provider_id)s "
                                "ORDER BY unit_id, task_id, id", {"provider_id": provider_id})
    return [Holding.model_validate_json(record) for (record,) in rows]


async def at_risk_verdicts(source: Source, provider_id: str) -> list[DateVerdict]:
    """The provider's dates at risk: the latest verdict of each subject, where it is at risk; by
    date (then subject)."""
    rows = await _fetch(source, "SELECT record::text FROM verdicts WHERE provider_id = %(provider_id)s AND at_risk "
                                "ORDER BY date, subject, id", {"provider_id": provider_id})
    return [DateVerdict.model_validate_json(record) for (record,) in rows]


async def count_tasks(source: Source, today: dt.date, *, provider_id: str | None = None, system: str | None = None,
                      responsible: str | None = None, status: str | None = None, obligation: str | None = None,
                      unit_id: str | None = None, overdue: bool | None = None, due_from: dt.date | None = None,
                      due_to: dt.date | None = None) -> int:
    """How many tasks ``tasks`` would list with the same filters and no limit."""
    where, params = _task_filters(provider_id, system, responsible, status, obligation, unit_id, overdue,
                                  due_from, due_to)
    rows = await _fetch(source, f"SELECT count(*) FROM tasks t {where}", {**params, "today": today})
    return int(rows[0][0])


async def task(source: Source, task_id: str) -> tuple[str, TaskRecord, list[str]] | None:
    """``(provider id, record, waiting_for)`` of one task, or None when there is no such task."""
    rows = await _fetch(source, f"{_SELECT} FROM tasks t WHERE t.id = %(id)s", {"id": task_id})
    if not rows:
        return None
    provider_id, record, waiting = rows[0]
    return provider_id, TaskRecord.model_validate_json(record), list(waiting)


async def history(source: Source, task_id: str) -> list[dict[str, Any]]:
    """A task's audit trail, oldest first: n, status, by, at (an aware datetime), reason, change_id."""
    rows = await _fetch(source, """
        SELECT n, status, by, at, reason, change_id FROM task_history WHERE task_id = %(id)s ORDER BY n""",
        {"id": task_id})
    return [{"n": n, "status": status, "by": by, "at": at, "reason": reason, "change_id": change_id}
            for n, status, by, at, reason, change_id in rows]
