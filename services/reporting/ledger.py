"""The task ledger of one provider and the deadline engine's decisions. Pure.

A ledger is stored per provider (the key every task topic uses), so a provider's tasks live on
the partition its events use and recover with it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict

from pydantic import Field

from schemas.events import Contract
from schemas.notifications import NotificationRequest
from schemas.tasks import Task, TaskStatus
from services.planning.handlers import task_line

REMINDER_NAMESPACE = uuid.UUID("0b7d7c1e-60a4-5c35-8d0e-7e1f3c2a9b44")
ACTIVE: frozenset[TaskStatus] = frozenset({"open", "blocked"})


class TaskRecord(Contract):
    task: Task
    status: TaskStatus
    reminded: list[dt.date] = Field(default_factory=list)  # reminder dates already fired

    def due_reminder(self, today: dt.date) -> dt.date | None:
        """The newest reminder date reached and not fired; older missed ones are covered by it."""
        if self.status != "open":
            return None  # a blocked task's party cannot act yet; a finished one needs no reminding
        reached = [day for day in self.task.remind_on if day <= today and day not in self.reminded]
        return max(reached) if reached else None


class Ledger(Contract):
    provider_id: str
    tasks: dict[str, TaskRecord] = Field(default_factory=dict)

    def next_reminder(self) -> dt.date | None:
        """The earliest date on which a sweep has something to do for this provider."""
        pending = [
            day
            for record in self.tasks.values()
            if record.status == "open"
            for day in record.task.remind_on
            if day not in record.reminded
        ]
        return min(pending) if pending else None


def record_task(ledger: Ledger, task: Task) -> tuple[Ledger, bool]:
    """Add a task once; a task id seen before changes nothing (replays are harmless)."""
    if task.id in ledger.tasks:
        return ledger, False
    status = task.status
    if status == "blocked" and all(_is_done(ledger, dep) for dep in task.depends_on):
        status = "open"
    tasks = {**ledger.tasks, task.id: TaskRecord(task=task, status=status)}
    return ledger.model_copy(update={"tasks": tasks}), True


def _is_done(ledger: Ledger, task_id: str) -> bool:
    record = ledger.tasks.get(task_id)
    return record is not None and record.status == "done"


def reminders_due(ledger: Ledger, today: dt.date, now: dt.datetime) -> tuple[Ledger, list[NotificationRequest]]:
    """Fire every reminder reached by ``today``, once, one request per responsible party and system.

    The request id is derived from what it reminds of and the day, so a sweep that crashed
    after sending and is run again asks for the same notification, which the notifier skips."""
    groups: dict[tuple[str, str], list[TaskRecord]] = defaultdict(list)
    tasks = dict(ledger.tasks)
    for task_id, record in ledger.tasks.items():
        day = record.due_reminder(today)
        if day is None:
            continue
        groups[(record.task.responsible, record.task.system)].append(record)
        covered = sorted({*record.reminded, *(d for d in record.task.remind_on if d <= day)})
        tasks[task_id] = record.model_copy(update={"reminded": covered})
    requests = []
    for (responsible, system), records in sorted(groups.items()):
        records.sort(key=lambda r: (r.task.due, r.task.id))
        ids = ",".join(r.task.id for r in records)
        first = records[0].task
        requests.append(
            NotificationRequest(
                id=str(uuid.uuid5(REMINDER_NAMESPACE, f"{ledger.provider_id}|{today}|{ids}")),
                kind="reminder",
                provider_id=ledger.provider_id,
                provider_name=first.provider_name,
                responsible=responsible,  # type: ignore[arg-type]
                system=system,
                unit_id=first.subject.unit_id if len({r.task.subject.unit_id for r in records}) == 1 else None,
                tasks=[task_line(r.task) for r in records],
                requested_at=now,
                correlation_id=first.correlation_id,
            )
        )
    return ledger.model_copy(update={"tasks": tasks}), requests
