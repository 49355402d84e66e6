"""The task ledger: status moves, prerequisites, reminders and escalations, task by task. Pure.

Each task is its own record (``TaskRecord``), stored on the partition of its provider (the key of
every task topic), so it recovers with the provider's events; a change rewrites the tasks it
touches and nothing else. The rules here read tasks through ``TaskLookup`` (the reporting
worker's table, or ``Ledger``: one provider's tasks in memory, for the dry run and the tests) and
return the records they change. Only the reporting agent writes; the status API checks a move
here and then publishes it, so every change goes through one writer.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from pydantic import Field

from schemas.events import Contract
from schemas.notifications import NotificationKind, NotificationRequest
from schemas.status import StatusEntry, TaskStatusChange
from schemas.tasks import Task, TaskStatus
from services.domain.notices import earliest_due_first, notification_about

NOTIFICATION_NAMESPACE = uuid.UUID("0b7d7c1e-60a4-5c35-8d0e-7e1f3c2a9b44")
ACTIVE: frozenset[TaskStatus] = frozenset({"open", "blocked"})
#: A task that holds nothing up any more: done, or cancelled as not needed.
FINISHED: frozenset[TaskStatus] = frozenset({"done", "cancelled"})
SYSTEM_ACTOR = "omboard"

#: Which moves a person or a system may make. A blocked task opens by itself when its
#: prerequisites are done; it cannot be done before them.
ALLOWED_MOVES: dict[TaskStatus, frozenset[TaskStatus]] = {
    "blocked": frozenset({"cancelled"}),
    "open": frozenset({"done", "cancelled", "failed"}),
    "failed": frozenset({"open", "done", "cancelled"}),
    "done": frozenset(),
    "cancelled": frozenset(),
}


class UnknownTask(LookupError):
    pass


class IllegalMove(ValueError):
    pass


class TaskRecord(Contract):
    task: Task
    status: TaskStatus
    reminded: list[dt.date] = Field(default_factory=list)  # reminder dates already fired
    escalated: list[dt.date] = Field(default_factory=list)  # escalation dates already fired
    history: list[StatusEntry] = Field(default_factory=list)
    #: Done by an event that came after the due date (a service report submitted late, the basis
    #: of the customers' invoices): by how many days.
    late_by_days: int | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def overdue(self, today: dt.date) -> bool:
        """Active and past its due date; an optional step never is (nobody chases it)."""
        return self.active and self.task.due < today and not self.task.optional

    def due_reminder(self, today: dt.date) -> dt.date | None:
        """The newest reminder date reached and not fired; older missed ones are covered by it."""
        if self.status != "open":
            return None  # a blocked task's party cannot act yet; a finished one needs no reminding
        return _newest_unfired(self.task.remind_on, self.reminded, today)

    def due_escalation(self, today: dt.date) -> dt.date | None:
        if not self.active:
            return None
        return _newest_unfired(self.task.escalate_on, self.escalated, today)

    def pending_dates(self) -> list[dt.date]:
        dates = []
        if self.status == "open":
            dates += [day for day in self.task.remind_on if day not in self.reminded]
        if self.active:
            dates += [day for day in self.task.escalate_on if day not in self.escalated]
        return dates


def _newest_unfired(dates: Iterable[dt.date], fired: list[dt.date], today: dt.date) -> dt.date | None:
    reached = [day for day in dates if day <= today and day not in fired]
    return max(reached) if reached else None


class TaskLookup(Protocol):
    def get(self, task_id: str) -> TaskRecord | None: ...
    def dependents(self, task_id: str) -> Iterable[str]:
        """The ids of tasks that may wait for ``task_id`` (more is harmless: each is checked)."""
        ...


def next_date(record: TaskRecord) -> dt.date | None:
    """The earliest date on which a sweep has something to do for this task."""
    pending = record.pending_dates()
    return min(pending) if pending else None


def new_record(tasks: TaskLookup, task: Task, at: dt.datetime) -> TaskRecord | None:
    """The record of a task not seen before; None for a task id seen before (replays are harmless)."""
    if tasks.get(task.id) is not None:
        return None
    status: TaskStatus = task.status
    if status == "blocked" and all(_is_resolved(tasks, dep) for dep in task.depends_on):
        status = "open"
    entry = StatusEntry(status=status, by=SYSTEM_ACTOR, at=at, reason=f"planned from event {task.plan_id}")
    return TaskRecord(task=task, status=status, history=[entry])


def _is_resolved(tasks: TaskLookup, task_id: str) -> bool:
    """A prerequisite no longer holds anything up once it is done, or cancelled as not needed
    (otherwise what waits on a cancelled task would stay blocked for good)."""
    record = tasks.get(task_id)
    return record is not None and record.status in FINISHED


def waiting_for(tasks: TaskLookup, record: TaskRecord) -> list[str]:
    """The prerequisites of ``record`` that still hold it up."""
    return [dep for dep in record.task.depends_on if not _is_resolved(tasks, dep)]


def check_move(tasks: TaskLookup, provider_id: str, task_id: str, status: TaskStatus) -> TaskRecord:
    """The task's record if ``status`` may be set now (the same status again is allowed and
    changes nothing); raises UnknownTask or IllegalMove naming why not."""
    record = tasks.get(task_id)
    if record is None or record.task.subject.provider_id != provider_id:
        raise UnknownTask(f"no task {task_id} for provider {provider_id}")
    return allowed_move(record, status, lambda: waiting_for(tasks, record))


def allowed_move(record: TaskRecord, status: TaskStatus, waiting: Callable[[], list[str]]) -> TaskRecord:
    """``record`` if it may move to ``status``; IllegalMove naming why not (``waiting``: what it waits for)."""
    task_id = record.task.id
    if record.status == status or status in ALLOWED_MOVES[record.status]:
        return record
    if record.status == "blocked" and status == "done":
        raise IllegalMove(f"task {task_id} is blocked: it waits for {', '.join(waiting())} to be done first")
    raise IllegalMove(f"task {task_id} is {record.status}; it cannot move to {status}")


def moved(tasks: TaskLookup, change: TaskStatusChange) -> tuple[dict[str, TaskRecord], list[NotificationRequest]]:
    """The records one change rewrites; a replayed change or a repeat of the current status
    rewrites nothing.

    Completing (or cancelling) a task opens the tasks that waited only for it, and asks to tell
    their parties."""
    record = check_move(tasks, change.provider_id, change.task_id, change.status)
    if record.status == change.status or any(entry.change_id == change.id for entry in record.history):
        return {}, []
    entry = StatusEntry(status=change.status, by=change.by, at=change.at, reason=change.reason, change_id=change.id)
    changed = {change.task_id: record.model_copy(update={"status": change.status, "history": [*record.history, entry]})}
    if change.status not in FINISHED:
        return changed, []
    return _unblock(Overlay(tasks, changed), change, changed)


class Overlay:
    """``tasks`` as they will be once ``changed`` is stored (``changed`` may grow meanwhile)."""

    def __init__(self, tasks: TaskLookup, changed: Mapping[str, TaskRecord]):
        self.tasks, self.changed = tasks, changed

    def get(self, task_id: str) -> TaskRecord | None:
        return self.changed.get(task_id) or self.tasks.get(task_id)

    def dependents(self, task_id: str) -> Iterable[str]:
        waiting = set(self.tasks.dependents(task_id))
        waiting.update(tid for tid, record in self.changed.items() if task_id in record.task.depends_on)
        return waiting


def _unblock(tasks: Overlay, change: TaskStatusChange,
             changed: dict[str, TaskRecord]) -> tuple[dict[str, TaskRecord], list[NotificationRequest]]:
    opened: list[TaskRecord] = []
    for task_id in sorted(set(tasks.dependents(change.task_id))):
        record = tasks.get(task_id)
        if record is None or record.status != "blocked" or change.task_id not in record.task.depends_on:
            continue
        if all(_is_resolved(tasks, dep) for dep in record.task.depends_on):
            entry = StatusEntry(status="open", by=SYSTEM_ACTOR, at=change.at, reason="its prerequisites are done")
            changed[task_id] = record.model_copy(update={"status": "open", "history": [*record.history, entry]})
            opened.append(changed[task_id])
    groups: dict[str, list[TaskRecord]] = defaultdict(list)
    for record in opened:
        groups[record.task.responsible].append(record)
    requests = [
        _request(change.provider_id, "unblocked", party, records, change.at, f"unblocked|{change.task_id}")
        for party, records in sorted(groups.items())
    ]
    return changed, requests


def _request(provider_id: str, kind: NotificationKind, party: str, records: list[TaskRecord],
             at: dt.datetime, occasion: str) -> NotificationRequest:
    """One notification about ``records``; its id is derived from what it is about, so asking
    again after a crash asks for the same notification, which the notifier sends once."""
    tasks = sorted((r.task for r in records), key=earliest_due_first)
    ids = ",".join(t.id for t in tasks)
    return notification_about(
        tasks, notification_id=str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"{provider_id}|{kind}|{party}|{occasion}|{ids}")),
        kind=kind, provider_id=provider_id, party=party, at=at, correlation=tasks[0].correlation_id,
    )


def fire_due(provider_id: str, records: Iterable[TaskRecord], today: dt.date,
             now: dt.datetime) -> tuple[dict[str, TaskRecord], list[NotificationRequest]]:
    """Fire every reminder and escalation of ``records`` (one provider's) reached by ``today``,
    each once; returns the records that changed and what to ask.

    One reminder request per responsible party per day (a digest of all its tasks that fall
    due together), and one escalation request per party escalated to."""
    reminders: dict[str, list[TaskRecord]] = defaultdict(list)
    escalations: dict[str, list[TaskRecord]] = defaultdict(list)
    changed: dict[str, TaskRecord] = {}
    for record in records:
        update = {}
        reminder = record.due_reminder(today)
        if reminder is not None:
            reminders[record.task.responsible].append(record)
            update["reminded"] = sorted({*record.reminded, *(d for d in record.task.remind_on if d <= reminder)})
        escalation = record.due_escalation(today)
        if escalation is not None:
            for party in record.task.escalate_to or [record.task.responsible]:
                escalations[party].append(record)
            update["escalated"] = sorted({*record.escalated, *(d for d in record.task.escalate_on if d <= escalation)})
        if update:
            changed[record.task.id] = record.model_copy(update=update)
    occasion = today.isoformat()
    requests = [_request(provider_id, "reminder", p, rs, now, occasion) for p, rs in sorted(reminders.items())]
    requests += [_request(provider_id, "escalation", p, rs, now, occasion) for p, rs in sorted(escalations.items())]
    return changed, requests


# -- one provider's tasks in memory: the dry run's and the tests' ledger -----------------------------


class Ledger(Contract):
    provider_id: str
    tasks: dict[str, TaskRecord] = Field(default_factory=dict)

    def get(self, task_id: str) -> TaskRecord | None:
        return self.tasks.get(task_id)

    def dependents(self, task_id: str) -> Iterable[str]:
        return [tid for tid, record in self.tasks.items() if task_id in record.task.depends_on]

    def with_records(self, changed: Mapping[str, TaskRecord]) -> Ledger:
        return self.model_copy(update={"tasks": {**self.tasks, **changed}}) if changed else self

    def next_date(self) -> dt.date | None:
        pending = [day for record in self.tasks.values() if (day := next_date(record)) is not None]
        return min(pending) if pending else None


def record_task(ledger: Ledger, task: Task, at: dt.datetime) -> tuple[Ledger, bool]:
    record = new_record(ledger, task, at)
    return (ledger, False) if record is None else (ledger.with_records({task.id: record}), True)


def change_status(ledger: Ledger, change: TaskStatusChange) -> tuple[Ledger, list[NotificationRequest]]:
    changed, requests = moved(ledger, change)
    return ledger.with_records(changed), requests


def notifications_due(ledger: Ledger, today: dt.date, now: dt.datetime) -> tuple[Ledger, list[NotificationRequest]]:
    changed, requests = fire_due(ledger.provider_id, ledger.tasks.values(), today, now)
    return ledger.with_records(changed), requests
