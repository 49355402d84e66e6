"""What reporting does with each kind of message, routed by topic. Pure: each handler takes the
received message and a context (the tasks as the batch left them, how to read a provider's state,
the planner, the time) and returns what changed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.notifications import NotificationRequest
from schemas.status import TaskStatusChange
from schemas.tasks import Task
from schemas.topics import EVENTS, TASK_STATUS, TASK_TOPICS
from schemas.wire import event_from_kafka, model_from_kafka
from services.domain.ledger import Overlay, TaskLookup, TaskRecord, moved, new_record
from services.domain.planner import Planner
from services.domain.state import ChangedState, StateChanges, StateView, changes, event_key
from services.runtime.streams import Received


@dataclass(frozen=True)
class Context:
    tasks: TaskLookup
    load_state: Callable[[str], StateView]
    planner: Planner
    now: dt.datetime


@dataclass(frozen=True)
class Effect:
    records: dict[str, TaskRecord] = field(default_factory=dict)  # task id -> its record now
    state: StateChanges | None = None  # None: no provider state to store
    requests: list[NotificationRequest] = field(default_factory=list)
    created: list[Task] = field(default_factory=list)  # tasks new to the ledger (for metrics)
    changes: list[TaskStatusChange] = field(default_factory=list)  # accepted status changes (for metrics)


def on_task(received: Received, ctx: Context) -> Effect:
    task = model_from_kafka(Task, received.value)
    record = new_record(ctx.tasks, task, ctx.now)
    return Effect({task.id: record}, created=[task]) if record is not None else Effect()


def on_status_change(received: Received, ctx: Context) -> Effect:
    """Raises UnknownTask or IllegalMove (the message is dead-lettered with the reason)."""
    change = model_from_kafka(TaskStatusChange, received.value)
    records, requests = moved(ctx.tasks, change)
    if not records:
        return Effect()
    return Effect(records, requests=requests, changes=[change])


def on_event(received: Received, ctx: Context) -> Effect:
    """Keep the provider facts that monthly reports need, and complete the report tasks a
    ServiceReportSubmitted names (opening them first if the month has not been opened yet)."""
    event = event_from_kafka(received.value, received.headers)
    state = ctx.load_state(event.provider_id)
    if state.facts.has_processed(event):
        return Effect()
    plan = ctx.planner.plan(event, state)
    changed = changes(state, event, plan, ctx.planner.catalog)
    completed = ctx.planner.completions(event, state)
    if not completed:
        return Effect(state=changed)
    records: dict[str, TaskRecord] = {}
    tasks = Overlay(ctx.tasks, records)
    created: list[Task] = []
    month = getattr(event.data, "month", None)
    if month is not None:
        for task in ctx.planner.plan_monthly_reports(ChangedState(state, changed), month):
            if task.id in completed and (record := new_record(tasks, task, ctx.now)) is not None:
                records[task.id] = record
                created.append(task)
    requests: list[NotificationRequest] = []
    accepted: list[TaskStatusChange] = []
    for task_id in completed:
        record = tasks.get(task_id)
        if record is None or record.status in ("done", "cancelled"):
            continue  # not opened for this unit (e.g. a unit without the services it concerns), or finished
        change = TaskStatusChange(
            id=f"{event_key(event)}|{task_id}", task_id=task_id, provider_id=event.provider_id, status="done",
            by=event.source, at=event.time, source=event.type, reason=f"report submitted on {event.data.submitted_on}",
        )
        done, unblocked = moved(tasks, change)
        records.update(done)
        requests += unblocked
        accepted.append(change)
    return Effect(records, changed, requests, created, accepted)


HANDLERS: dict[str, Callable[[Received, Context], Effect]] = {
    **{topic: on_task for topic in TASK_TOPICS},
    TASK_STATUS: on_status_change,
    EVENTS: on_event,
}
