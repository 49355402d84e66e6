"""What reporting does with each kind of message, routed by topic. Pure: each handler takes the
received message and a context (how to load a ledger or a provider's state, the planner, the
time) and returns what changed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.notifications import NotificationRequest
from schemas.status import TaskStatusChange
from schemas.tasks import Task
from schemas.topics import EVENTS, TASK_STATUS, TASK_TOPICS
from schemas.wire import event_from_kafka, model_from_kafka
from services.planning.planner import Planner
from services.planning.state import ProviderState, event_key, evolve
from services.reporting.ledger import Ledger, change_status, record_task
from services.runtime.streams import Received


@dataclass(frozen=True)
class Context:
    load_ledger: Callable[[str], Ledger]
    load_state: Callable[[str], ProviderState]
    planner: Planner
    now: dt.datetime


@dataclass(frozen=True)
class Effect:
    ledger: Ledger | None = None  # None: no ledger to store
    state: ProviderState | None = None  # None: no provider state to store
    requests: list[NotificationRequest] = field(default_factory=list)
    created: list[Task] = field(default_factory=list)  # tasks new to the ledger (for metrics)
    changes: list[TaskStatusChange] = field(default_factory=list)  # accepted status changes (for metrics)


def on_task(received: Received, ctx: Context) -> Effect:
    task = model_from_kafka(Task, received.value)
    ledger, added = record_task(ctx.load_ledger(task.subject.provider_id), task, ctx.now)
    return Effect(ledger, created=[task]) if added else Effect()


def on_status_change(received: Received, ctx: Context) -> Effect:
    """Raises UnknownTask or IllegalMove (the message is dead-lettered with the reason)."""
    change = model_from_kafka(TaskStatusChange, received.value)
    before = ctx.load_ledger(change.provider_id)
    ledger, requests = change_status(before, change)
    if ledger is before:
        return Effect()
    return Effect(ledger, requests=requests, changes=[change])


def on_event(received: Received, ctx: Context) -> Effect:
    """Keep the provider facts that monthly reports need, and complete the report tasks a
    ServiceReportSubmitted names (opening them first if the month has not been opened yet)."""
    event = event_from_kafka(received.value, received.headers)
    state = ctx.load_state(event.provider_id)
    if state.has_processed(event):
        return Effect()
    plan = ctx.planner.plan(event, state)
    new_state = evolve(state, event, plan, ctx.planner.catalog)
    completed = ctx.planner.completions(event, state)
    if not completed:
        return Effect(state=new_state)
    ledger = ctx.load_ledger(event.provider_id)
    created: list[Task] = []
    month = getattr(event.data, "month", None)
    if month is not None:
        for task in ctx.planner.plan_monthly_reports(new_state, month):
            if task.id in completed:
                ledger, added = record_task(ledger, task, ctx.now)
                created += [task] if added else []
    requests: list[NotificationRequest] = []
    changes: list[TaskStatusChange] = []
    for task_id in completed:
        if task_id not in ledger.tasks:
            continue  # not opened for this unit (e.g. a unit without the services it concerns)
        change = TaskStatusChange(
            id=f"{event_key(event)}|{task_id}", task_id=task_id, provider_id=event.provider_id, status="done",
            by=event.source, at=event.time, source=event.type, reason=f"report submitted on {event.data.submitted_on}",
        )
        if ledger.tasks[task_id].status in ("done", "cancelled"):
            continue
        ledger, unblocked = change_status(ledger, change)
        requests += unblocked
        changes.append(change)
    return Effect(ledger, new_state, requests, created, changes)


HANDLERS: dict[str, Callable[[Received, Context], Effect]] = {
    **{topic: on_task for topic in TASK_TOPICS},
    TASK_STATUS: on_status_change,
    EVENTS: on_event,
}
