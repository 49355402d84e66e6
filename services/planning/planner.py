"""Planning: one event plus what is known about its provider, through the catalog, into tasks.

Pure: no I/O, no clock. The orgstructure and permissions services, the reporting service's
monthly reports and the ``omboard plan`` dry run all call ``plan_event``, so they cannot drift.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.catalog.model import Catalog, Condition, Rule
from schemas.events import (
    Envelope,
    OrgChangeRequested,
    ProviderStarted,
    ServiceReportSubmitted,
    StaffJoined,
    StaffLeft,
    StaffRoleChanged,
    SubcontractorEnded,
    SubcontractorStarted,
    UnitClosed,
)
from schemas.tasks import Instructions, Plan, Subject, Task, Warning
from services.planning.calendar import BusinessCalendar
from services.planning.state import ProviderState, StaffState, event_key, planned_key

#: Namespace of every task id: uuid5 of the event, the rule and the subject.
TASK_NAMESPACE = uuid.UUID("6f1c1f3e-3b0a-5e55-9a51-0b0a4d0e1a11")
LATE_ORDER = "late-order"


class UnknownProvider(LookupError):
    """An event for a provider whose ProviderStarted has not been seen: nothing can be planned."""


def task_id(*parts: str | None) -> str:
    return str(uuid.uuid5(TASK_NAMESPACE, "|".join(part or "" for part in parts)))


@dataclass(frozen=True)
class Target:
    """One thing a rule applies to: the provider, a unit, a person or a subcontractor."""

    unit_id: str | None = None
    person_id: str | None = None
    staff_count: int | None = None
    facts: dict = field(default_factory=dict)


def holds(condition: Condition, facts: dict) -> bool:
    """Whether every stated fact matches; a fact the context does not know never matches."""
    for name in ("regi", "hsl", "uses_flexite", "takeover", "ceases_entirely", "size", "licensed", "subcontractor_staff"):
        wanted = getattr(condition, name)
        if wanted is not None and facts.get(name) != wanted:
            return False
    if condition.services_any is not None and not set(condition.services_any) & set(facts.get("services", ())):
        return False
    if condition.roles_any is not None and facts.get("role") not in condition.roles_any:
        return False
    return not condition.any_of or any(holds(option, facts) for option in condition.any_of)


def provider_facts(state: ProviderState) -> dict:
    provider = state.provider
    assert provider is not None
    return {
        "regi": provider.regi,
        "hsl": provider.hsl,
        "uses_flexite": provider.uses_flexite,
        "services": list(provider.services),
        "takeover": state.takeover_from is not None,
    }


def person_facts(person: StaffState, state: ProviderState) -> dict:
    unit = state.units.get(person.unit_id)
    return {
        "role": person.role,
        "licensed": person.licensed,
        "subcontractor_staff": bool(unit and unit.subcontractor_id),
    }


class Planner:
    def __init__(self, catalog: Catalog, calendar: BusinessCalendar | None = None):
        self.catalog = catalog
        self.calendar = calendar or BusinessCalendar(catalog.calendar.country, catalog.calendar.categories)

    # -- the entry point -------------------------------------------------------------------------

    def plan(self, event: Envelope, state: ProviderState) -> Plan:
        if state.provider is None and not isinstance(event.data, ProviderStarted):
            raise UnknownProvider(f"no ProviderStarted seen for provider {event.provider_id!r}; cannot plan {event.type}")
        if isinstance(event.data, ProviderStarted):
            state = _with_provider(state, event.data)
        facts = {**provider_facts(state), **self._event_facts(event)}
        tasks: list[Task] = []
        warnings: list[Warning] = []
        for rule in self.catalog.rules_for(event.type):
            for target in self._targets(rule, event, state, facts):
                if not holds(rule.when, {**facts, **target.facts}):
                    continue
                task = self._task(rule, event, state, target)
                tasks.append(task)
                late = self._late_warning(rule, event, task)
                if late:
                    warnings.append(late)
        tasks = self._link(tasks, state)
        return Plan(event_id=event.id, catalog_version=self.catalog.version, tasks=tasks, warnings=warnings)

    # -- what a rule applies to --------------------------------------------------------------------

    def _event_facts(self, event: Envelope) -> dict:
        data = event.data
        if isinstance(data, UnitClosed):
            return {"ceases_entirely": data.taken_over_by is None}
        if isinstance(data, OrgChangeRequested):
            return {"size": data.size}
        return {}

    def _targets(self, rule: Rule, event: Envelope, state: ProviderState, facts: dict) -> Iterable[Target]:
        data = event.data
        if rule.scope == "provider":
            return [Target()]
        if rule.scope == "unit":
            return [Target(unit_id=unit.id, staff_count=unit.staff_count) for unit in self._units(event, state)]
        if rule.scope == "subcontractor":
            if isinstance(data, SubcontractorStarted):
                return [Target(unit_id=data.subcontractor.id, staff_count=data.staff_count)]
            if isinstance(data, SubcontractorEnded):
                return [Target(unit_id=data.subcontractor_id)]
            return []
        return self._person_targets(rule, event, state)

    def _units(self, event: Envelope, state: ProviderState):
        data = event.data
        if isinstance(data, ProviderStarted):
            return data.units
        if isinstance(data, (UnitClosed, ServiceReportSubmitted)):
            unit = state.units.get(data.unit_id)
            return [unit] if unit else []
        if isinstance(data, OrgChangeRequested):
            return [state.units[uid] for uid in data.unit_ids if uid in state.units]
        return []

    def _person_targets(self, rule: Rule, event: Envelope, state: ProviderState) -> list[Target]:
        data = event.data
        if isinstance(data, StaffJoined):
            person = StaffState(unit_id=data.unit_id, role=data.person.role, licensed=data.person.licensed)
            return [] if rule.revokes else [self._person_target(data.person.id, person, state)]
        if isinstance(data, StaffRoleChanged):
            before = state.staff.get(data.person_id)
            if before is None or not before.active:
                return []
            after = before.model_copy(update={"role": data.role, "licensed": data.licensed})
            after_facts = {**provider_facts(state), **person_facts(after, state)}
            if rule.revokes:
                # Take away what was granted and no longer fits the new role.
                granted = self.catalog.rule(rule.revokes)
                if rule.revokes in before.grants and not holds(granted.when, after_facts):
                    return [self._person_target(data.person_id, after, state)]
                return []
            if rule.id in before.grants:
                return []
            return [self._person_target(data.person_id, after, state)]
        # Everyone who leaves, by themselves or with their unit or subcontractor, loses every access.
        if not rule.revokes:
            return []
        leavers: list[tuple[str, StaffState]] = []
        if isinstance(data, StaffLeft):
            person = state.staff.get(data.person_id)
            leavers = [(data.person_id, person)] if person and person.active else []
        elif isinstance(data, UnitClosed):
            leavers = [(pid, p) for pid, p in state.staff.items() if p.active and p.unit_id == data.unit_id]
        elif isinstance(data, SubcontractorEnded):
            leavers = [(pid, p) for pid, p in state.staff.items() if p.active and p.unit_id == data.subcontractor_id]
        return [self._person_target(pid, p, state) for pid, p in leavers if rule.revokes in p.grants]

    def _person_target(self, person_id: str, person: StaffState, state: ProviderState) -> Target:
        return Target(unit_id=person.unit_id, person_id=person_id, facts=person_facts(person, state))

    # -- one task ----------------------------------------------------------------------------------

    def _task(self, rule: Rule, event: Envelope, state: ProviderState, target: Target) -> Task:
        provider = state.provider
        assert provider is not None
        owner = self._owner(rule, event)
        channel = rule.channel[provider.regi] if isinstance(rule.channel, dict) else rule.channel
        due = self.due_date(rule, event)
        subject = Subject(provider_id=owner, unit_id=target.unit_id, person_id=target.person_id)
        return Task(
            id=task_id(event_key(event), rule.id, owner, target.unit_id, target.person_id),
            plan_id=event.id,
            catalog_version=self.catalog.version,
            rule=rule.id,
            obligation=rule.obligation,
            system=rule.system,
            action=rule.action,
            channel=channel,
            responsible=rule.responsible,
            subject=subject,
            due=due,
            status="open",
            instructions=Instructions(
                sv=rule.instructions.sv, en=rule.instructions.en, where=self.catalog.channels[channel].where
            ),
            quantity=self._quantity(rule, target),
            remind_on=self.reminder_dates(rule, due),
            provider_name=provider.name if owner == state.provider_id else None,
        )

    def _owner(self, rule: Rule, event: Envelope) -> str:
        """Whose list the task goes on: the taking-over party's tasks are that provider's."""
        data = event.data
        if rule.responsible == "taking-over-provider" and isinstance(data, UnitClosed) and data.taken_over_by:
            return data.taken_over_by
        return event.provider_id

    @staticmethod
    def _quantity(rule: Rule, target: Target) -> int | None:
        if rule.quantity is None or target.staff_count is None:
            return None
        if target.staff_count == 0:
            return 0
        return max(rule.quantity.minimum, math.ceil(round(target.staff_count * rule.quantity.ratio, 9)))

    # -- dates -------------------------------------------------------------------------------------

    def anchor(self, rule: Rule, event: Envelope, month_end: dt.date | None = None) -> dt.date:
        if rule.deadline.anchor == "decided_on" and isinstance(event.data, OrgChangeRequested):
            return event.data.decided_on
        if rule.deadline.anchor == "month_end" and month_end is not None:
            return month_end
        return event.anchor_date

    def due_date(self, rule: Rule, event: Envelope, month_end: dt.date | None = None) -> dt.date:
        anchor = self.anchor(rule, event, month_end)
        deadline = rule.deadline
        if deadline.unit == "business_days":
            due = self.calendar.add_business_days(anchor, deadline.offset)
        else:
            days = deadline.offset * (7 if deadline.unit == "weeks" else 1)
            due = anchor + dt.timedelta(days=days)
        return self.calendar.roll(due, deadline.roll)

    def reminder_dates(self, rule: Rule, due: dt.date) -> list[dt.date]:
        return sorted({self.calendar.add_business_days(due, -days) for days in rule.reminders})

    @staticmethod
    def earliest_start(event: Envelope) -> dt.date:
        """The first day the work could be ordered: the decision for an organisation change,
        otherwise the day the event was published."""
        data = event.data
        return data.decided_on if isinstance(data, OrgChangeRequested) else event.time.date()

    def is_late(self, event: Envelope, task: Task) -> bool:
        return task.due < self.earliest_start(event)

    def _late_warning(self, rule: Rule, event: Envelope, task: Task) -> Warning | None:
        """A task due before it could possibly be done: the order comes too late."""
        if not self.is_late(event, task):
            return None
        return Warning(
            code=LATE_ORDER,
            obligation=rule.obligation,
            message=(
                f"{rule.action} in {rule.system} should have been done by {task.due.isoformat()}, "
                f"before {self.earliest_start(event).isoformat()} when it could first be ordered"
            ),
        )

    # -- dependencies ------------------------------------------------------------------------------

    def _link(self, tasks: list[Task], state: ProviderState) -> list[Task]:
        linked = []
        for task in tasks:
            rule = self.catalog.rule(task.rule)
            depends_on = [
                found
                for dependency in rule.depends_on
                for found in [_find_prerequisite(dependency, task, tasks, state)]
                if found is not None
            ]
            linked.append(task.model_copy(update={"depends_on": depends_on, "status": "blocked" if depends_on else "open"}))
        return linked


def _find_prerequisite(rule_id: str, task: Task, tasks: list[Task], state: ProviderState) -> str | None:
    """The task of ``rule_id`` that ``task`` waits for: in the same plan, the one for the same unit
    or person, or the provider-wide one; otherwise the one an earlier plan made. None when that
    prerequisite does not apply to this provider (e.g. no SITHS card without health care)."""
    subject = task.subject
    for other in tasks:
        if (
            other.rule == rule_id
            and other.subject.provider_id == subject.provider_id
            and other.subject.unit_id in (None, subject.unit_id)
            and other.subject.person_id in (None, subject.person_id)
        ):
            return other.id
    for unit_id, person_id in ((subject.unit_id, subject.person_id), (subject.unit_id, None), (None, None)):
        found = state.planned.get(planned_key(rule_id, unit_id, person_id))
        if found:
            return found
    return None


def _with_provider(state: ProviderState, started: ProviderStarted) -> ProviderState:
    return state.model_copy(update={"provider": started.provider, "takeover_from": started.takeover_from})
