"""What reporting does with each kind of message. The agent decodes what it received
(``decode``, by topic) and routes the message by its type (``HANDLERS``); each handler takes the
decoded message and a context (the tasks as the batch left them, how to read a provider's state,
the planner, the time) and returns what changed. Pure: no I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.events import Envelope, ProviderStarted, StaffRosterConfirmed, StaffRosterReported
from schemas.notifications import NotificationRequest
from schemas.status import TaskStatusChange
from schemas.tasks import Task
from schemas.topics import EVENTS, TASK_STATUS, TASK_TOPICS
from schemas.wire import event_from_kafka, model_from_kafka
from services.domain.ledger import FINISHED, Overlay, TaskLookup, TaskRecord, moved, new_record
from services.domain.planner import Planner
from services.domain.state import ChangedState, StateChanges, StateView, event_key, fact_changes
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


def on_task(task: Task, ctx: Context) -> Effect:
    record = new_record(ctx.tasks, task, ctx.now)
    return Effect({task.id: record}, created=[task]) if record is not None else Effect()


def on_status_change(change: TaskStatusChange, ctx: Context) -> Effect:
    """Raises UnknownTask or IllegalMove (the message is dead-lettered with the reason)."""
    records, requests = moved(ctx.tasks, change)
    if not records:
        return Effect()
    return Effect(records, requests=requests, changes=[change])


def on_event(event: Envelope, ctx: Context) -> Effect:
    """Keep the provider facts reporting needs (its units for monthly reports, a roster held); open
    the tasks reporting owns (a report a ServiceReportSubmitted names before its month was opened, a
    held roster's); and complete what the event answers. Events of one provider come in order, so a
    roster's task is opened before its confirmation can complete it."""
    state = ctx.load_state(event.provider_id)
    if state.facts.has_processed(event):
        return Effect()
    if state.facts.provider is None and not isinstance(event.data, ProviderStarted):
        return Effect()  # the planners dead-letter it (UnknownProvider): nothing to keep of it either
    changed = fact_changes(state, event, ctx.planner.catalog)  # the planners plan it; reporting keeps what it needs of the event
    after = ChangedState(state, changed)
    completed = ctx.planner.completions(event, state)
    opened = ctx.planner.held_roster_tasks(after, event)
    month = getattr(event.data, "month", None)
    if completed and month is not None:
        opened += [task for task in ctx.planner.plan_monthly_reports(after, month) if task.id in completed]
    if not completed and not opened:
        return Effect(state=changed)
    records: dict[str, TaskRecord] = {}
    tasks = Overlay(ctx.tasks, records)
    created: list[Task] = []
    for task in opened:
        if (record := new_record(tasks, task, ctx.now)) is not None:
            records[task.id] = record
            created.append(task)
    requests: list[NotificationRequest] = []
    accepted: list[TaskStatusChange] = []
    by, reason = _answer(event)
    for task_id in completed:
        record = tasks.get(task_id)
        if record is None or record.status in FINISHED:
            continue  # not opened for this unit (e.g. a unit without the services it concerns), or finished
        change = TaskStatusChange(
            id=f"{event_key(event)}|{task_id}", task_id=task_id, provider_id=event.provider_id, status="done",
            by=by, at=event.time, source=event.type, reason=reason,
        )
        done, unblocked = moved(tasks, change)
        late = _late_by(event, record)
        if late and task_id in done:  # recorded with the completion: the report came after its date
            done[task_id] = done[task_id].model_copy(update={"late_by_days": late})
        records.update(done)
        requests += unblocked
        accepted.append(change)
    return Effect(records, changed, requests, created, accepted)


def _late_by(event: Envelope, record: TaskRecord) -> int | None:
    """How many days after its task's due date a service report was submitted (None: in time)."""
    submitted = getattr(event.data, "submitted_on", None)
    if submitted is None or submitted <= record.task.due:
        return None
    return (submitted - record.task.due).days


def _answer(event: Envelope) -> tuple[str, str]:
    """Who completes a task ``event`` answers, and why."""
    data = event.data
    if isinstance(data, StaffRosterConfirmed):
        return data.confirmed_by, f"the roster of {data.as_of} confirmed"
    if isinstance(data, StaffRosterReported):
        return event.source, f"superseded by the roster of {data.as_of}"
    return event.source, f"report submitted on {data.submitted_on}"


Message = Task | TaskStatusChange | Envelope
#: The topics reporting reads.
TOPICS = (*TASK_TOPICS, TASK_STATUS, EVENTS)


def decode(received: Received) -> Message:
    """The message ``received`` carries, by its topic; raises InvalidEvent or a validation error
    naming the field (the agent dead-letters the message)."""
    if received.topic == EVENTS:
        return event_from_kafka(received.value, received.headers)
    if received.topic == TASK_STATUS:
        return model_from_kafka(TaskStatusChange, received.value)
    return model_from_kafka(Task, received.value)


HANDLERS: dict[type, Callable[[Any, Context], Effect]] = {
    Task: on_task,
    TaskStatusChange: on_status_change,
    Envelope: on_event,
}


def handle(message: Message, ctx: Context) -> Effect:
    return HANDLERS[type(message)](message, ctx)
