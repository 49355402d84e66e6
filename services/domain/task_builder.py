"""One task from a rule and what it applies to: its channel by regi, its obligation and party (a
subcontractor's staff), its words (at a takeover; the provider's own services), how many it asks
for, and its reminder and escalation dates from its due date. Pure; the planner decides which
rules apply to which targets and when each task is due."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from schemas.catalog.model import Catalog, Rule
from schemas.events import Unit
from schemas.tasks import Instructions, Subject, Task
from services.domain.conditions import unit_facts
from services.domain.schedule import Schedule
from services.domain.state import StateView, UnitState


@dataclass(frozen=True)
class Target:
    """One thing a rule applies to: the provider, a unit, a person or a subcontractor."""

    unit_id: str | None = None
    person_id: str | None = None
    staff_count: int | None = None
    facts: dict = field(default_factory=dict)
    #: A unit's access order or its end: how many staff not known by name it covers.
    places: int | None = None
    revokes: str | None = None  # a cancellation: the task that gave the access


def unit_target(unit: Unit | UnitState) -> Target:
    unnamed = unit.staff_count - len(getattr(unit, "staff", ()))  # the named get orders of their own
    return Target(unit_id=unit.id, staff_count=unit.staff_count, facts=unit_facts(unit), places=unnamed)


class TaskBuilder:
    def __init__(self, catalog: Catalog, schedule: Schedule):
        self.catalog = catalog
        self.schedule = schedule

    def build(
        self, rule: Rule, state: StateView, target: Target, *, owner: str, due: dt.date, id: str, plan_id: str,
        takeover: bool = False, opened_on: dt.date | None = None,
    ) -> Task:
        """One task of ``rule`` for ``target``, due ``due``; reminded from ``opened_on`` on, not before
        (an event's plan is dated again by the scheduler, which reminds from the event's day)."""
        provider = state.facts.provider
        assert provider is not None
        channel = rule.channel[provider.regi] if isinstance(rule.channel, dict) else rule.channel
        obligation, responsible = rule.obligation, rule.responsible
        if rule.for_subcontractor_staff is not None and target.facts.get("subcontractor_staff"):
            obligation = rule.for_subcontractor_staff.obligation
            responsible = rule.for_subcontractor_staff.responsible
        action, text = rule.action, rule.instructions
        if takeover and rule.at_takeover is not None:
            action, text = rule.at_takeover.action, rule.at_takeover.instructions
        own = [rule.per_service[service] for service in provider.services if service in rule.per_service]
        if own:
            text = text.model_copy(update={"sv": " ".join([text.sv, *(part.sv for part in own)]),
                                           "en": " ".join([text.en, *(part.en for part in own)])})
        return Task(
            id=id,
            plan_id=plan_id,
            catalog_version=self.catalog.version,
            rule=rule.id,
            obligation=obligation,
            system=rule.system,
            action=action,
            channel=channel,
            responsible=responsible,
            subject=Subject(provider_id=owner, unit_id=target.unit_id, person_id=target.person_id),
            due=due,
            status="open",
            instructions=Instructions(
                sv=text.sv,
                en=text.en,
                where=rule.where if rule.where is not None else self.catalog.channels[channel].where,
            ),
            quantity=target.places if rule.access_for or (rule.revokes and rule.scope != "person")
            else _quantity(rule, target),
            revokes=target.revokes,
            remind_on=self.schedule.reminder_dates(rule, due, not_before=opened_on),
            escalate_on=self.schedule.escalation_dates(rule, due),
            escalate_to=list(rule.escalation.to),
            provider_name=provider.name if owner == state.provider_id else None,
            optional=rule.optional,
        )


def _quantity(rule: Rule, target: Target) -> int | None:
    if rule.quantity is None or target.staff_count is None:
        return None
    if target.staff_count == 0:
        return 0
    return max(rule.quantity.minimum, math.ceil(round(target.staff_count * rule.quantity.ratio, 9)))


