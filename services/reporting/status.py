"""Reporting's status side: what a person or a client sees of a task, and the service the status
API and page share. It reads the read model (``services.readmodel.reader.TaskReader``) for a
principal and moves tasks through the one writer, the reporting agent, by publishing a change.

Errors are the domain's: ``Forbidden`` (the key may not), ``NotFound``, ``IllegalMove`` (the
ledger's rules refuse the move) and ``ReadModelUnavailable``; each router says them its own way
(``api.py`` as HTTP statuses, ``web.py`` as pages).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from schemas.identifiers import pseudonym, redact
from schemas.status import StatusRequest, TaskStatusChange
from schemas.tasks import DateVerdict, Holding, TaskStatus
from services.domain.ledger import TaskRecord, UnknownTask, allowed_move
from services.http.access import Principal
from services.readmodel.reader import ReadModelUnavailable, Row, TaskReader
from services.runtime.clock import Clock

log = logging.getLogger(__name__)

#: Publishes one change to ``omboard.task-status`` (with the task's correlation id) and returns
#: once the broker acknowledged it.
Publish = Callable[[TaskStatusChange, str | None], Awaitable[None]]
POLL_SECONDS = 0.05


# -- views: what a person or a client sees of a task (pure) ----------------------------------------


def task_view(row: Row, today: dt.date) -> dict[str, Any]:
    record = row.record
    task = record.task
    return {
        "id": task.id,
        "provider_id": task.subject.provider_id,
        "provider_name": task.provider_name,
        "system": task.system,
        "status": record.status,
        "due": task.due.isoformat(),
        #: The checklist's date when the schedule could not meet it (ordered too late, or waiting for later work).
        "checklist_due": task.checklist_due.isoformat() if task.checklist_due else None,
        "optional": task.optional,
        "overdue": record.overdue(today),
        "days_overdue": (today - task.due).days if record.overdue(today) else 0,
        "late_by_days": record.late_by_days,  # done, but by an event after the due date
        "obligation": task.obligation,
        "action": task.action,
        "channel": task.channel,
        "responsible": task.responsible,
        "unit_id": task.subject.unit_id,
        "person": pseudonym(task.subject.person_id) if task.subject.person_id else None,
        "quantity": task.quantity,
        "instructions": task.instructions.model_dump(),
        "depends_on": list(task.depends_on),
        "waiting_for": row.waiting_for if record.status == "blocked" else [],
        "catalog_version": task.catalog_version,
        "history": [entry.model_dump(mode="json") for entry in record.history],
    }


def verdict_view(verdict: DateVerdict) -> dict[str, Any]:
    """A date at risk as the API and page show it: what it is of, the date, the first date the work
    can be done by and the chain of tasks that decides it. People by pseudonym only: the subject
    holds one, and any HSA-id in the free text is replaced by its pseudonym all the same."""
    return {
        "provider_id": verdict.provider_id,
        "subject": redact(verdict.subject),
        "event_id": redact(verdict.event_id),
        "event_type": verdict.event_type,
        "date": verdict.date.isoformat(),
        "at_risk": verdict.at_risk,
        "earliest_feasible": verdict.earliest_feasible.isoformat() if verdict.earliest_feasible else None,
        "chain": [{**step.model_dump(mode="json"), "unit_id": redact(step.unit_id) if step.unit_id else None}
                  for step in verdict.chain],
        "message": redact(verdict.message) if verdict.message else None,
        "planned_at": verdict.planned_at.isoformat(),
    }


#: The columns of ``GET /v1/tasks?format=csv``: what a spreadsheet needs, one task per line.
CSV_COLUMNS = ("id", "provider_id", "provider_name", "system", "status", "due", "overdue", "days_overdue", "late_by_days",
               "obligation", "action", "channel", "responsible", "unit_id", "person", "quantity",
               "waiting_for", "last_change_at", "last_change_by")


def csv_line(row: Row, today: dt.date) -> dict[str, Any]:
    view = task_view(row, today)
    last = row.record.history[-1] if row.record.history else None
    line = {column: view.get(column) for column in CSV_COLUMNS}
    line["waiting_for"] = " ".join(view["waiting_for"])
    line["last_change_at"] = last.at.isoformat() if last else ""
    line["last_change_by"] = last.by if last else ""
    return {column: as_cell_text(value) for column, value in line.items()}


def as_cell_text(value: Any) -> Any:
    """A cell a spreadsheet shows as written: text it would run as a formula (a provider's name
    from upstream starting with "=", say) gets a leading apostrophe, as OWASP advises."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def check_move(row: Row | None, provider_id: str, task_id: str, status: TaskStatus) -> TaskRecord:
    """As ``services.domain.ledger.check_move``, on what the read model shows."""
    if row is None or row.provider_id != provider_id:
        raise UnknownTask(f"no task {task_id} for provider {provider_id}")
    return allowed_move(row.record, status, lambda: row.waiting_for)


# -- the service behind the routes -------------------------------------------------------------------


class NotFound(LookupError):
    """What was asked for is not there, or not for this key: a route answers 404 (the message
    names ids only, never a personal number)."""


@dataclass
class Outcome:
    status_code: int  # 200 applied (or nothing to change), 202 published but not yet shown
    changed: bool
    task: dict[str, Any] | None
    detail: str


class StatusService:
    """Reads the read model for a principal and moves tasks through the one writer (the agent)."""

    def __init__(self, reader: TaskReader, publish: Publish, clock: Clock, zone: str, wait_timeout: float):
        self.reader = reader
        self.publish = publish
        self.clock = clock
        self.zone = ZoneInfo(zone)
        self.wait_timeout = wait_timeout

    def today(self) -> dt.date:
        return self.clock.now().astimezone(self.zone).date()

    @staticmethod
    def scope(principal: Principal) -> str | None:
        """The one provider a key sees, or None for a key that sees them all."""
        principal.require_reader()
        return None if principal.sees_all() else principal.provider_id or ""

    async def summaries(self, principal: Principal) -> list[dict[str, Any]]:
        return await self.reader.summaries(self.today(), self.scope(principal))

    async def provider(self, principal: Principal, provider_id: str) -> dict[str, Any]:
        principal.require_sees(provider_id)
        found = await self.reader.summaries(self.today(), provider_id)
        if not found or not found[0]["total"]:
            raise NotFound(f"no tasks for provider {provider_id}")
        return found[0]

    async def provider_tasks(self, principal: Principal, provider_id: str, **filters: Any) -> tuple[dict[str, Any], list[Row]]:
        """The provider's summary and its tasks (``filters`` as ``TaskReader.provider_tasks``)."""
        summary = await self.provider(principal, provider_id)
        return summary, await self.reader.provider_tasks(provider_id, self.today(), **filters)

    async def overdue(self, principal: Principal, **filters: Any) -> list[Row]:
        return await self.reader.overdue(self.today(), provider_id=self.scope(principal), **filters)

    async def tasks(self, principal: Principal, provider_id: str | None, **filters: Any) -> list[Row]:
        """The tasks the key sees that match; a key of one provider asking for another's is refused."""
        scope = self.scope(principal)
        if scope is not None:
            if provider_id is not None and provider_id != scope:
                principal.require_sees(provider_id)
            provider_id = scope
        return await self.reader.tasks(self.today(), provider_id=provider_id, **filters)

    async def task(self, principal: Principal, task_id: str) -> Row:
        """One task; another provider's is not told apart from none."""
        scope = self.scope(principal)
        row = await self.reader.task(task_id)
        if row is None or (scope is not None and row.provider_id != scope):
            raise NotFound(f"no task {redact(task_id)}")
        return row

    async def access(self, principal: Principal, provider_id: str, rules: list[str]) -> tuple[list[Row], list[Holding]]:
        """The provider's tasks of ``rules`` (those of its access register), and the places people
        took in its units' orders."""
        principal.require_sees(provider_id)
        return await self.reader.rule_tasks(provider_id, rules, self.today()), await self.reader.holdings(provider_id)

    async def verdicts(self, principal: Principal, provider_id: str) -> list[DateVerdict]:
        """The provider's dates at risk (the latest verdict of each subject, where it is at risk), by
        date; for the keys that see the provider's tasks. One whose earliest feasible date has
        passed is history (the tasks themselves say what is still late), and is not shown."""
        principal.require_sees(provider_id)
        today = self.today()
        return [verdict for verdict in await self.reader.verdicts(provider_id)
                if (verdict.earliest_feasible or verdict.date) >= today]

    async def task_if_shown(self, task_id: str) -> Row | None:
        """A task the page names as a prerequisite; the page's own scope has been checked."""
        return await self.reader.task(task_id)

    async def move(self, principal: Principal, task_id: str, request: StatusRequest,
                   provider_id: str | None = None) -> Outcome:
        """Check, publish, wait. Raises Forbidden, NotFound or IllegalMove."""
        principal.require_reader()
        row = await self.reader.task(task_id)
        if row is None or (provider_id is not None and row.provider_id != provider_id):
            raise NotFound(f"no task {redact(task_id)}" + (f" for provider {provider_id}" if provider_id else ""))
        owner = row.provider_id
        principal.require_change(owner)
        try:
            record = check_move(row, owner, task_id, request.status)
        except UnknownTask as error:
            raise NotFound(str(error)) from None
        today = self.today()
        if record.status == request.status:
            return Outcome(200, False, task_view(row, today), f"task {task_id} is already {record.status}")
        change = TaskStatusChange(
            id=str(uuid.uuid4()), task_id=task_id, provider_id=owner, status=request.status, reason=request.reason,
            by=principal.name, at=self.clock.now(), source="api",
        )
        await self.publish(change, record.task.correlation_id)
        log.info("key %s asked to move task %s of %s to %s (change %s)", principal.name, task_id, owner,
                 request.status, change.id)
        return await self._wait_applied(change)

    async def _wait_applied(self, change: TaskStatusChange) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        while True:
            try:
                row = await self.reader.task(change.task_id)
            except ReadModelUnavailable:
                row = None  # published: the change stands; the answer says it is not shown yet
            if row is not None:
                record = row.record
                today = self.today()
                if any(entry.change_id == change.id for entry in record.history):
                    return Outcome(200, True, task_view(row, today), f"task {change.task_id} is {record.status}")
                if record.status == change.status:  # someone else made the same move first
                    return Outcome(200, False, task_view(row, today), f"task {change.task_id} is already {record.status}")
                # The task moved meanwhile and the agent refuses the change: IllegalMove.
                check_move(row, change.provider_id, change.task_id, change.status)
            if loop.time() >= deadline:
                return Outcome(202, False, None, f"change {change.id} was published but the read model has not "
                                                 f"shown it within {self.wait_timeout:g}s; look again shortly")
            await asyncio.sleep(POLL_SECONDS)
