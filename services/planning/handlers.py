"""From one decoded event to the state to store and the messages to send. Pure.

Both planning services (orgstructure: provider, unit and subcontractor rules; permissions:
person rules) run this with their own scopes over the same state, so they agree on facts and ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from schemas.events import Envelope
from schemas.tasks import Plan, Task, Warning
from schemas.topics import EVENTS, NOTIFICATIONS
from schemas.wire import event_to_kafka, model_to_kafka
from services.adapters.messages import holding_message, task_message, verdict_message
from services.domain.handover import takeover
from services.domain.ids import task_id
from services.domain.notices import notification_about
from services.domain.planner import Planner
from services.domain.schedule import LATE_ORDER
from services.domain.scheduler import DATE_AT_RISK, date_verdict, verdict_in
from services.domain.state import ProviderFacts, StateChanges, StateView, changes, event_key
from services.runtime.streams import Outgoing


@dataclass(frozen=True)
class Outcome:
    provider_id: str
    changes: StateChanges | None  # None: nothing to store (the event was already processed)
    messages: list[Outgoing] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)  # what was planned in this service's scopes
    late: list[Task] = field(default_factory=list)  # of those, the ones already late
    warnings: list[Warning] = field(default_factory=list)  # the plan's (roster-held, unknown-person, ...)


def handle_event(
    event: Envelope, correlation: str | None, load_state: Callable[[str], StateView], planner: Planner,
    scopes: Collection[str],
) -> Outcome:
    """Plan the event, keep the tasks of ``scopes``, and say what to store and send; the tasks
    carry ``correlation`` (default: the event's id).

    Raises UnknownProvider; the caller dead-letters the message."""
    state = load_state(event.provider_id)
    if state.facts.has_processed(event):
        return Outcome(event.provider_id, None)  # a redelivery: its effects were recorded with it
    plan = planner.plan(event, state)
    mine = [task for task in plan.tasks if planner.catalog.rule(task.rule).scope in scopes]
    correlation = correlation or event.id
    late = [task for task in mine if planner.schedule.is_late(event, task)]
    changed = changes(state, event, plan, planner.catalog)
    messages = [task_message(task, correlation) for task in mine]
    messages += _late_notices(event, late, planner, correlation, changed.facts)
    if "person" in scopes:  # the planner of people records who took a place in a unit's order
        messages += [holding_message(holding.model_copy(update={"provider_id": event.provider_id}), correlation)
                     for holding in plan.holdings]
    if "provider" in scopes and (verdict := date_verdict(event, plan)) is not None:
        # One service (the one planning provider rules: it sees every event) keeps the verdict.
        messages.append(verdict_message(verdict, correlation))
        if verdict.at_risk:
            messages.append(_verdict_notice(event, plan, correlation, changed.facts))
    if "unit" in scopes and (taken_over := takeover(event, state)) is not None:
        # The taker's side is planned where the taker's state is (services.domain.handover).
        messages.append(Outgoing(EVENTS, *event_to_kafka(taken_over, correlation)))
    return Outcome(event.provider_id, changed, messages, mine, late, plan.warnings)


def _verdict_notice(event: Envelope, plan: Plan, correlation: str, facts: ProviderFacts) -> Outgoing:
    """The ``date-at-risk`` notice of ``plan``: once per event, one mail to the provider's contacts
    for the chain's tasks and KLK IT together, listing the chain."""
    verdict = verdict_in(plan)
    assert verdict is not None
    in_plan = {task.id: task for task in plan.tasks}
    chain = [in_plan[step.task_id] for step in verdict.chain if step.task_id in in_plan]
    request = notification_about(
        chain, notification_id=task_id(DATE_AT_RISK, event_key(event), event.provider_id), kind="date-at-risk",
        provider_id=event.provider_id, party="provider", at=event.time, correlation=correlation,
    ).model_copy(update={"verdict": verdict, "contacts": list(facts.contacts), "provider_name": facts.provider.name
                         if facts.provider else None})
    return Outgoing(NOTIFICATIONS, *model_to_kafka(request, event.provider_id, correlation))


def _late_notices(event: Envelope, late: list[Task], planner: Planner, correlation: str,
                  facts: ProviderFacts) -> list[Outgoing]:
    """Tell the parties the catalog names at once when orders are already too late: one notice
    per party and provider for the whole event, listing every late task, addressed by the
    contacts ``facts`` (after the event) hold."""
    groups: dict[tuple[str, str], list[Task]] = defaultdict(list)
    for task in late:
        for party in planner.catalog.rule(task.rule).late_notify:
            groups[(task.subject.provider_id, party)].append(task)
    messages = []
    for (provider_id, party), tasks in sorted(groups.items()):
        request = notification_about(
            tasks, notification_id=task_id(LATE_ORDER, event_key(event), provider_id, party), kind="late-order",
            provider_id=provider_id, party=party, at=event.time, correlation=correlation,
        )
        if provider_id == facts.provider_id:  # a subcontractor's tasks: its own contacts decide
            request = request.model_copy(update={"contacts": list(facts.contacts)})
        messages.append(Outgoing(NOTIFICATIONS, *model_to_kafka(request, provider_id, correlation)))
    return messages
