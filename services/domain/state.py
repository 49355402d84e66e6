"""What the planners remember about a provider between events, one entity at a time.

A provider's state is its small facts (``ProviderFacts``: who it is, its contacts and
subcontractors, the events it saw lately) plus one record per unit, per person and per task an
earlier plan made. Stored like that (``services.adapters.provider_store``), no record grows with the
provider's staff or work: a provider with thousands of staff once needed a planning record of
megabytes, past what Kafka accepts (issue 9).

The planner reads a state through ``StateView``. ``ProviderState`` is the whole state in memory
(the dry run, the tests); the workers read theirs from a table. ``changes`` says, for one event
and its plan, which entities change: the dry run, orgstructure and permissions fold the same events
into the same changes, so they agree on facts and on the ids of tasks already planned. Reporting,
which plans nothing, keeps ``fact_changes``: the same facts, units and staff, without the plan's part.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import Field

from schemas.catalog.model import Catalog
from schemas.events import (
    Contact,
    ContactAssigned,
    Contract,
    Envelope,
    OrgChangeRequested,
    Person,
    Provider,
    ProviderStarted,
    ServiceReportSubmitted,
    StaffJoined,
    StaffLeft,
    StaffRole,
    StaffRoleChanged,
    StaffRosterConfirmed,
    StaffRosterReported,
    SubcontractorEnded,
    SubcontractorStarted,
    UnitClosed,
    UnitOpened,
)
from schemas.tasks import Plan
from services.domain.roster import HeldRoster, confirms, reconcile

#: How many events a provider's facts remember for de-duplication: a redelivery is of what was not
#: committed, at most one batch (``OMBOARD_BATCH_SIZE``, 500, at most this). A replay of older
#: history still yields the same task ids, which the ledger de-duplicates. Each is a 16-character
#: digest, so the memory costs under 10 kB of the facts record (it held 1,000 whole keys, 50 kB).
PROCESSED_MEMORY = 500


class UnitAccess(Contract):
    """A unit's order of access for its staff not known by name: the task, and how many places
    it still holds (a roster's people take places; the unit's closure cancels the rest)."""

    task_id: str
    places: int


class PlannedTask(Contract):
    """A task an earlier plan made, as a later plan finds it to wait for: its id and due date."""

    task_id: str
    due: dt.date | None = None  # None: planned before omboard kept it (catalog 2026.12.7 and earlier)


class UnitState(Contract):
    id: str
    name: str
    staff_count: int = 0
    field_groups: list[str] = Field(default_factory=list)
    active: bool = True
    subcontractor_id: str | None = None  # the organisation ordered for a subcontractor's staff (SC1)
    closed_on: dt.date | None = None  # UnitClosed (or SubcontractorEnded for a subcontractor's organisation)
    opened_on: dt.date | None = None  # UnitOpened; None: open since the provider's start
    #: Its access orders, by the person rule whose access each gives (``access_for``: one order a
    #: system). None: recorded before omboard kept them (catalog
    #: 2026.12.5 and earlier), when every order was for the whole staff_count; the closure then
    #: cancels them all.
    access: dict[str, UnitAccess] | None = None


class StaffState(Contract):
    unit_id: str
    role: StaffRole
    licensed: bool
    active: bool = True
    grants: dict[str, str] = Field(default_factory=dict)  # grant rule id -> task id


class SubcontractorState(Contract):
    id: str
    name: str
    staff_count: int
    start_date: dt.date
    active: bool = True


class ProviderFacts(Contract):
    """The provider-level record: what does not grow with the provider's units, staff or tasks."""

    provider_id: str
    provider: Provider | None = None
    start_date: dt.date | None = None
    takeover_from: str | None = None
    contacts: list[Contact] = Field(default_factory=list)
    subcontractors: dict[str, SubcontractorState] = Field(default_factory=dict)
    processed: list[str] = Field(default_factory=list)  # processed_marker of recent events
    held_roster: HeldRoster | None = None  # a roster whose leavers wait for an operator (``roster-held``)

    def has_processed(self, event: Envelope) -> bool:
        return processed_marker(event) in self.processed


class StateView(Protocol):
    """What planning reads of a provider: its facts, and its entities one lookup at a time."""

    @property
    def provider_id(self) -> str: ...
    @property
    def facts(self) -> ProviderFacts: ...
    def unit(self, unit_id: str) -> UnitState | None: ...
    def every_unit(self) -> Iterable[UnitState]: ...
    def person(self, person_id: str) -> StaffState | None: ...
    def staff_in(self, unit_id: str) -> list[tuple[str, StaffState]]: ...
    def every_person(self) -> Iterable[tuple[str, StaffState]]: ...
    def planned_task(self, key: str) -> str | None: ...
    def planned_due(self, key: str) -> dt.date | None: ...


@dataclass(frozen=True)
class StateChanges:
    """What one event changes of a provider's state: the facts, and each entity it touched."""

    facts: ProviderFacts
    units: dict[str, UnitState] = field(default_factory=dict)
    staff: dict[str, StaffState] = field(default_factory=dict)
    planned: dict[str, PlannedTask] = field(default_factory=dict)  # by planned_key


class ProviderState(ProviderFacts):
    """A provider's whole state in memory: the dry run's and the tests' ``StateView``."""

    units: dict[str, UnitState] = Field(default_factory=dict)
    staff: dict[str, StaffState] = Field(default_factory=dict)
    #: "rule|unit|person" -> the task, so a later plan can depend on a task an earlier one made.
    planned: dict[str, PlannedTask] = Field(default_factory=dict)

    @property
    def facts(self) -> ProviderFacts:
        return ProviderFacts.model_validate(self.model_dump(include=set(ProviderFacts.model_fields)))

    def unit(self, unit_id: str) -> UnitState | None:
        return self.units.get(unit_id)

    def every_unit(self) -> Iterable[UnitState]:
        return self.units.values()

    def person(self, person_id: str) -> StaffState | None:
        return self.staff.get(person_id)

    def staff_in(self, unit_id: str) -> list[tuple[str, StaffState]]:
        return [(pid, person) for pid, person in self.staff.items() if person.unit_id == unit_id]

    def every_person(self) -> Iterable[tuple[str, StaffState]]:
        return self.staff.items()

    def planned_task(self, key: str) -> str | None:
        found = self.planned.get(key)
        return found.task_id if found else None

    def planned_due(self, key: str) -> dt.date | None:
        found = self.planned.get(key)
        return found.due if found else None

    def applied(self, changes: StateChanges) -> ProviderState:
        return ProviderState(
            **changes.facts.model_dump(),
            units={**self.units, **changes.units},
            staff={**self.staff, **changes.staff},
            planned={**self.planned, **changes.planned},
        )


def event_key(event: Envelope) -> str:
    """What identifies an event in the ids derived from it (task ids, change ids)."""
    return event.dedup_key


def processed_marker(event: Envelope) -> str:
    """A short digest of the event's key, for the facts' memory of events seen."""
    return hashlib.sha256(event.dedup_key.encode()).hexdigest()[:16]


def planned_key(rule: str, unit_id: str | None, person_id: str | None) -> str:
    return f"{rule}|{unit_id or ''}|{person_id or ''}"


def planned_rule_and_unit(key: str) -> tuple[str, str | None]:
    """The rule and unit a ``planned_key`` is of (a rule id and an HSA-id hold no "|"; a unit id may)."""
    rule, rest = key.split("|", 1)
    unit_id = rest.rsplit("|", 1)[0]
    return rule, unit_id or None


def with_contact(contacts: Sequence[Contact], contact: Contact) -> list[Contact]:
    """A newer contact for the same role, system and unit replaces the older one."""
    same = (contact.role, contact.system, contact.unit_id)
    return [c for c in contacts if (c.role, c.system, c.unit_id) != same] + [contact]


def fact_changes(state: StateView, event: Envelope, catalog: Catalog) -> StateChanges:
    """What ``event`` itself changes of ``state``: its facts, units and staff (a roster's joiners,
    movers and leavers, or the roster held), with no plan behind it (no planned task, no grant).
    What a service that does not plan keeps (reporting). Pure.

    Costs what the event touches: a unit's closure reads the staff of that unit, not of the provider.
    """
    data = event.data
    facts = state.facts
    units: dict[str, UnitState] = {}
    staff: dict[str, StaffState] = {}
    update: dict = {}

    def leave_all(unit_id: str) -> None:
        for person_id, member in state.staff_in(unit_id):
            if member.active or member.grants:
                staff[person_id] = member.model_copy(update={"active": False, "grants": {}})

    match data:
        case ProviderStarted():
            update.update(provider=data.provider, start_date=data.start_date, takeover_from=data.takeover_from)
            for unit in data.units:
                known_unit = state.unit(unit.id)
                units[unit.id] = UnitState(**unit.model_dump(exclude={"staff"}),
                                           access=known_unit.access if known_unit else {})
                for person in unit.staff:
                    staff[person.id] = named(state, unit.id, person)
            contacts = facts.contacts
            for contact in data.contacts:
                contacts = with_contact(contacts, contact)
            update["contacts"] = contacts
        case ContactAssigned():
            update["contacts"] = with_contact(facts.contacts, data.contact)
        case OrgChangeRequested() | ServiceReportSubmitted():
            pass
        case SubcontractorStarted():
            sub = data.subcontractor
            update["subcontractors"] = {**facts.subcontractors, sub.id: SubcontractorState(
                id=sub.id, name=sub.name, staff_count=data.staff_count, start_date=data.start_date)}
            known = state.unit(sub.id)
            if known is None or not known.active:  # a new (or renewed) assignment
                units[sub.id] = UnitState(id=sub.id, name=sub.name, staff_count=data.staff_count, subcontractor_id=sub.id,
                                          access={})
        case SubcontractorEnded():
            sub_id = data.subcontractor_id
            if sub_id in facts.subcontractors:
                update["subcontractors"] = {**facts.subcontractors,
                                            sub_id: facts.subcontractors[sub_id].model_copy(update={"active": False})}
            if (unit := state.unit(sub_id)) is not None:
                units[sub_id] = unit.model_copy(update={"active": False, "closed_on": data.end_date})
            leave_all(sub_id)
        case UnitOpened():
            known = state.unit(data.unit.id)
            if known is None or not known.active:  # a new unit, or one closed before opening again
                units[data.unit.id] = UnitState(**data.unit.model_dump(exclude={"staff"}), opened_on=data.start_date,
                                                access={})
                for person in data.unit.staff:
                    staff[person.id] = named(state, data.unit.id, person)
        case UnitClosed():
            if (unit := state.unit(data.unit_id)) is not None:
                units[data.unit_id] = unit.model_copy(update={"active": False, "closed_on": data.closing_date})
            leave_all(data.unit_id)
        case StaffJoined():
            staff[data.person.id] = named(state, data.unit_id, data.person)
        case StaffRoleChanged():
            if (known_person := state.person(data.person_id)) is not None:
                staff[data.person_id] = known_person.model_copy(update={"role": data.role, "licensed": data.licensed})
        case StaffLeft():
            if (known_person := state.person(data.person_id)) is not None:
                staff[data.person_id] = known_person.model_copy(update={"active": False, "grants": {}})
        case StaffRosterReported() | StaffRosterConfirmed():
            roster_staff, roster_update = roster_changes(state, event, catalog)
            staff.update(roster_staff)
            update.update(roster_update)

    processed = [*facts.processed, processed_marker(event)][-PROCESSED_MEMORY:]
    return StateChanges(facts.model_copy(update={**update, "processed": processed}), units, staff)


def unit_orders(unit: UnitState, state: StateView, catalog: Catalog) -> dict[str, UnitAccess]:
    """The access orders ``unit`` holds for its staff not known by name, by the person rule whose
    access each gives. A unit recorded before omboard kept them has each order the planned tasks
    name, for its whole staff."""
    if unit.access is not None:
        return unit.access
    return {
        rule.access_for: UnitAccess(task_id=task, places=unit.staff_count)
        for rule in catalog.rules
        if rule.access_for and (task := state.planned_task(planned_key(rule.id, unit.id, None)))
    }


def named(state: StateView, unit_id: str, person: Person) -> StaffState:
    """A person an event names on ``unit_id``: on that unit already, they keep what they hold; from
    another one, they hold nothing until it is ordered anew (the planner cancels what they had)."""
    known = state.person(person.id)
    facts = {"unit_id": unit_id, "role": person.role, "licensed": person.licensed}
    staying = known is not None and known.active and known.unit_id == unit_id
    return known.model_copy(update=facts) if staying else StaffState(**facts)


def roster_changes(state: StateView, event: Envelope, catalog: Catalog) -> tuple[dict[str, StaffState], dict]:
    """The staff a roster (or the confirmation of a held one) changes, and the facts it updates."""
    data = event.data
    staff: dict[str, StaffState] = {}
    if isinstance(data, StaffRosterConfirmed):
        held = state.facts.held_roster
        if held is None or not confirms(data, held):
            return staff, {}
        leavers: list[str] = held.leavers
        update: dict = {"held_roster": None}
    else:
        assert isinstance(data, StaffRosterReported)
        diff = reconcile(state, data, processed_marker(event), catalog.roster.hold_above_share)
        for person in diff.joiners:
            staff[person.id] = StaffState(unit_id=person.unit_id, role=person.role, licensed=person.licensed)
        for person in diff.role_changes:
            staff[person.id] = state.person(person.id).model_copy(update={"role": person.role, "licensed": person.licensed})
        for person in diff.unit_moves:  # what they held on the old unit is cancelled; the new one orders anew
            staff[person.id] = StaffState(unit_id=person.unit_id, role=person.role, licensed=person.licensed)
        leavers = [] if diff.held else diff.leavers
        update = {"held_roster": diff.held}
    for person_id in leavers:
        if (known := state.person(person_id)) is not None and known.active:
            staff[person_id] = known.model_copy(update={"active": False, "grants": {}})
    return staff, update


def changes(state: StateView, event: Envelope, plan: Plan, catalog: Catalog) -> StateChanges:
    """What ``event``, whose plan was ``plan``, changes of ``state``: ``fact_changes``, the people a
    roster makes join, move and leave, the tasks the plan made, and the access they order or
    cancel (a person's, a unit's order for staff not known by name, a place in it a person took).
    Pure; the caller stores it."""
    folded = fact_changes(state, event, catalog)
    staff, units, facts = dict(folded.staff), dict(folded.units), folded.facts

    def person(person_id: str) -> StaffState | None:
        return staff.get(person_id) or state.person(person_id)

    def unit(unit_id: str) -> UnitState | None:
        return units.get(unit_id) or state.unit(unit_id)

    def with_access(unit_id: str, rule_id: str, access: UnitAccess | None) -> None:
        if (known := unit(unit_id)) is None:
            return
        orders = dict(unit_orders(known, state, catalog))
        if access is None:
            orders.pop(rule_id, None)
        else:
            orders[rule_id] = access
        units[unit_id] = known.model_copy(update={"access": orders})

    planned: dict[str, PlannedTask] = {}
    for task in plan.tasks:
        if task.subject.provider_id != state.provider_id:
            continue  # a task for the taking-over party belongs to that provider's state
        planned[planned_key(task.rule, task.subject.unit_id, task.subject.person_id)] = PlannedTask(task_id=task.id, due=task.due)
        rule = catalog.rule(task.rule)
        if rule.scope != "person" and task.subject.unit_id is not None:
            if rule.access_for:
                with_access(task.subject.unit_id, rule.access_for, UnitAccess(task_id=task.id, places=task.quantity or 0))
            elif rule.revokes:
                with_access(task.subject.unit_id, catalog.rule(rule.revokes).access_for, None)
            continue
        person_id = task.subject.person_id
        holder = person(person_id) if person_id else None
        if holder is None or not holder.active:
            continue
        grants = dict(holder.grants)
        if rule.revokes:
            grants.pop(rule.revokes, None)
        elif rule.is_grant:
            grants[rule.id] = task.id
        staff[person_id] = holder.model_copy(update={"grants": grants})
    for holding in plan.holdings:
        holder, place = person(holding.person_id), unit(holding.unit_id)
        if holder is None or place is None:
            continue
        staff[holding.person_id] = holder.model_copy(update={"grants": {**holder.grants, holding.grant_rule: holding.task_id}})
        taken = unit_orders(place, state, catalog).get(holding.grant_rule)
        if taken is not None and taken.task_id == holding.task_id:
            with_access(holding.unit_id, holding.grant_rule, taken.model_copy(update={"places": max(0, taken.places - 1)}))
    return StateChanges(facts, units, staff, planned)


class ChangedState:
    """``state`` with ``changes`` on top, before they are stored: a ``StateView`` of the state after."""

    def __init__(self, state: StateView, changed: StateChanges):
        self._state, self._changes = state, changed
        self.provider_id = state.provider_id
        self.facts = changed.facts

    def unit(self, unit_id: str) -> UnitState | None:
        return self._changes.units.get(unit_id) or self._state.unit(unit_id)

    def every_unit(self) -> Iterable[UnitState]:
        units = {unit.id: unit for unit in self._state.every_unit()}
        return {**units, **self._changes.units}.values()

    def person(self, person_id: str) -> StaffState | None:
        return self._changes.staff.get(person_id) or self._state.person(person_id)

    def staff_in(self, unit_id: str) -> list[tuple[str, StaffState]]:
        members = dict(self._state.staff_in(unit_id))
        for person_id, person in self._changes.staff.items():
            if person.unit_id == unit_id:
                members[person_id] = person
            else:
                members.pop(person_id, None)
        return sorted(members.items())

    def every_person(self) -> Iterable[tuple[str, StaffState]]:
        return {**dict(self._state.every_person()), **self._changes.staff}.items()

    def planned_task(self, key: str) -> str | None:
        found = self._changes.planned.get(key)
        return found.task_id if found else self._state.planned_task(key)

    def planned_due(self, key: str) -> dt.date | None:
        found = self._changes.planned.get(key)
        return found.due if found else self._state.planned_due(key)


def evolve(state: ProviderState, event: Envelope, plan: Plan, catalog: Catalog) -> ProviderState:
    """The whole state after ``event`` (in memory: the dry run, the tests)."""
    return state.applied(changes(state, event, plan, catalog))
