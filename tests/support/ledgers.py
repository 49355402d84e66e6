"""The read model in memory, over real Ledger objects: the status API's unit tests run on it
without a database (tests/integration/test_readmodel.py checks the real one, in PostgreSQL, gives
the same orders and counts)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from schemas.tasks import DateVerdict, Holding
from services.domain.ledger import Ledger, TaskRecord, waiting_for
from services.readmodel.reader import ReadModelUnavailable, Row

STATUSES = ("open", "blocked", "done", "cancelled", "failed")


def order(record: TaskRecord, today: dt.date) -> tuple:
    rank = 0 if record.overdue(today) else 1 if record.active else 2
    return (rank, record.task.due, record.task.system, record.task.obligation, record.task.id)


class FakeStore:
    def __init__(self, *ledgers: Ledger, holdings: list[Holding] = (), verdicts: list[DateVerdict] = ()):
        self.tables = {ledger.provider_id: ledger for ledger in ledgers}
        self.places = list(holdings)  # what omboard.holdings would have projected
        self.verdicts_by_key = {verdict.key: verdict for verdict in verdicts}  # omboard.verdicts: the latest per key
        self.down = False  # True: every read fails as with the database away

    def load(self, provider_id: str) -> Ledger:
        return self.tables.get(provider_id) or Ledger(provider_id=provider_id)

    def _row(self, record: TaskRecord) -> Row:
        return Row(record, waiting_for(self.load(record.task.subject.provider_id), record))

    def _records(self, provider_id: str | None = None) -> list[TaskRecord]:
        if self.down:
            raise ReadModelUnavailable("its database cannot be reached")
        ledgers = [self.load(provider_id)] if provider_id is not None else list(self.tables.values())
        return [record for ledger in ledgers for record in ledger.tasks.values()]

    async def summaries(self, today: dt.date, provider_id: str | None = None) -> list[dict[str, Any]]:
        found = []
        for pid in sorted({r.task.subject.provider_id for r in self._records(provider_id)}):
            records = self._records(pid)
            counts = {status: sum(1 for r in records if r.status == status) for status in STATUSES}
            active = [r.task.due for r in records if r.active]
            finished = counts["done"] + counts["cancelled"]
            found.append({
                "id": pid, "name": next((r.task.provider_name for r in records if r.task.provider_name), None),
                "total": len(records), **counts, "overdue": sum(1 for r in records if r.overdue(today)),
                "next_due": min(active).isoformat() if active else None,
                "progress": round(100 * finished / len(records)) if records else 100,
            })
        return sorted(found, key=lambda s: (-s["overdue"], s["next_due"] or "9999", s["id"]))

    async def provider_tasks(self, provider_id: str, today: dt.date, *, system=None, responsible=None, status=None,
                             limit: int = 500, offset: int = 0) -> list[Row]:
        records = [r for r in self._records(provider_id) if _matches(r, system, responsible, status)]
        return [self._row(r) for r in sorted(records, key=lambda r: order(r, today))[offset:offset + limit]]

    async def overdue(self, today: dt.date, *, provider_id=None, system=None, responsible=None,
                      limit: int = 500, offset: int = 0) -> list[Row]:
        records = [r for r in self._records(provider_id) if r.overdue(today) and _matches(r, system, responsible, None)]
        records.sort(key=lambda r: (r.task.due, r.task.system, r.task.obligation, r.task.id))
        return [self._row(r) for r in records[offset:offset + limit]]

    async def tasks(self, today: dt.date, *, limit: int = 1000, offset: int = 0, provider_id=None, system=None,
                    responsible=None, status=None, obligation=None, overdue=None, due_from=None, due_to=None,
                    unit_id=None) -> list[Row]:
        records = [
            r for r in self._records(provider_id)
            if _matches(r, system, responsible, status)
            and (obligation is None or r.task.obligation == obligation)
            and (unit_id is None or r.task.subject.unit_id == unit_id)
            and (overdue is None or r.overdue(today) == overdue)
            and (due_from is None or r.task.due >= due_from) and (due_to is None or r.task.due <= due_to)
        ]
        records.sort(key=lambda r: (r.task.subject.provider_id, r.task.due, r.task.id))
        return [self._row(r) for r in records[offset:offset + limit]]

    async def task(self, task_id: str) -> Row | None:
        return next((self._row(r) for r in self._records() if r.task.id == task_id), None)

    async def holdings(self, provider_id: str) -> list[Holding]:
        if self.down:
            raise ReadModelUnavailable("its database cannot be reached")
        return [holding for holding in self.places if holding.provider_id == provider_id]

    async def verdicts(self, provider_id: str) -> list[DateVerdict]:
        if self.down:
            raise ReadModelUnavailable("its database cannot be reached")
        found = [v for v in self.verdicts_by_key.values() if v.provider_id == provider_id and v.at_risk]
        return sorted(found, key=lambda v: (v.date, v.subject, v.key))

    async def rule_tasks(self, provider_id: str, rules: list[str], today: dt.date) -> list[Row]:
        records = [r for r in self._records(provider_id) if r.task.rule in rules]
        return [self._row(r) for r in sorted(records, key=lambda r: (r.task.due, r.task.id))]


def _matches(record: TaskRecord, system: str | None, responsible: str | None, status: str | None) -> bool:
    task = record.task
    return ((system is None or task.system == system) and (responsible is None or task.responsible == responsible)
            and (status is None or record.status == status))
