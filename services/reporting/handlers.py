"""What reporting does with each kind of message, routed by topic. Pure: each handler takes the
received message, a way to load a provider's ledger and the time, and returns what changed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.notifications import NotificationRequest
from schemas.status import TaskStatusChange
from schemas.tasks import Task
from schemas.topics import TASK_STATUS, TASK_TOPICS
from schemas.wire import model_from_kafka
from services.reporting.ledger import Ledger, change_status, record_task
from services.runtime.streams import Received

LoadLedger = Callable[[str], Ledger]


@dataclass(frozen=True)
class Effect:
    ledger: Ledger | None = None  # None: nothing to store
    requests: list[NotificationRequest] = field(default_factory=list)
    created: Task | None = None  # a task new to the ledger (for metrics)
    change: TaskStatusChange | None = None  # an accepted status change (for metrics)


def on_task(received: Received, load: LoadLedger, now: dt.datetime) -> Effect:
    task = model_from_kafka(Task, received.value)
    ledger, added = record_task(load(task.subject.provider_id), task, now)
    return Effect(ledger, created=task) if added else Effect()


def on_status_change(received: Received, load: LoadLedger, now: dt.datetime) -> Effect:
    """Raises UnknownTask or IllegalMove (the message is dead-lettered with the reason)."""
    change = model_from_kafka(TaskStatusChange, received.value)
    before = load(change.provider_id)
    ledger, requests = change_status(before, change)
    if ledger is before:
        return Effect()
    return Effect(ledger, requests, change=change)


HANDLERS: dict[str, Callable[[Received, LoadLedger, dt.datetime], Effect]] = {
    **{topic: on_task for topic in TASK_TOPICS},
    TASK_STATUS: on_status_change,
}
