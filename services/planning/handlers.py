"""From one received event to the state to store and the messages to send. Pure.

Both planning services (orgstructure: provider, unit and subcontractor rules; permissions:
person rules) run this with their own scopes over the same state, so they agree on facts and ids.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from schemas.events import Envelope
from schemas.notifications import NotificationRequest, TaskLine
from schemas.tasks import Task
from schemas.topics import NOTIFICATIONS, task_topic
from schemas.wire import correlation_id, event_from_kafka, model_to_kafka
from services.planning.planner import LATE_ORDER, Planner, task_id
from services.planning.state import ProviderState, evolve
from services.runtime.streams import Outgoing, Received


@dataclass(frozen=True)
class Outcome:
    provider_id: str
    state: ProviderState | None  # None: nothing to store (the event was already processed)
    messages: list[Outgoing] = field(default_factory=list)


def decode_state(raw: bytes | None, provider_id: str) -> ProviderState:
    return ProviderState.model_validate_json(raw) if raw else ProviderState(provider_id=provider_id)


def handle_event(
    received: Received, load_state: Callable[[str], bytes | None], planner: Planner, scopes: Collection[str]
) -> Outcome:
    """Plan the event, keep the tasks of ``scopes``, and say what to store and send.

    Raises InvalidEvent or UnknownProvider; the caller dead-letters the message."""
    event = event_from_kafka(received.value, received.headers)
    state = decode_state(load_state(event.provider_id), event.provider_id)
    if state.has_processed(event):
        return Outcome(event.provider_id, None)  # a redelivery: its effects were recorded with it
    plan = planner.plan(event, state)
    mine = [task for task in plan.tasks if planner.catalog.rule(task.rule).scope in scopes]
    correlation = correlation_id(received.headers) or event.id
    messages = [_task_message(task, correlation) for task in mine]
    messages += _late_notices(event, mine, planner, correlation)
    return Outcome(event.provider_id, evolve(state, event, plan, planner.catalog), messages)


def _task_message(task: Task, correlation: str) -> Outgoing:
    task = task.model_copy(update={"correlation_id": correlation})
    return Outgoing(task_topic(task.system), *model_to_kafka(task, task.subject.provider_id, correlation))


def task_line(task: Task) -> TaskLine:
    return TaskLine(
        task_id=task.id,
        obligation=task.obligation,
        system=task.system,
        action=task.action,
        due=task.due,
        channel=task.channel,
        instructions_sv=task.instructions.sv,
        instructions_en=task.instructions.en,
        where=task.instructions.where,
        unit_id=task.subject.unit_id,
        quantity=task.quantity,
    )


def _late_notices(event: Envelope, mine: list[Task], planner: Planner, correlation: str) -> list[Outgoing]:
    """Tell the parties the catalog names at once when an order is already too late."""
    messages = []
    for task in mine:
        if not planner.is_late(event, task):
            continue
        for party in planner.catalog.rule(task.rule).late_notify:
            request = NotificationRequest(
                id=task_id(LATE_ORDER, task.id, party),
                kind="late-order",
                provider_id=task.subject.provider_id,
                provider_name=task.provider_name,
                responsible=party,
                system=task.system,
                unit_id=task.subject.unit_id,
                tasks=[task_line(task)],
                requested_at=event.time,
                correlation_id=correlation,
            )
            messages.append(Outgoing(NOTIFICATIONS, *model_to_kafka(request, request.provider_id, correlation)))
    return messages

