"""What the planners remember about a provider between events.

Every service folds the same events into the same state with ``evolve``, so the dry run, the
orgstructure and the permissions services agree on facts and on the ids of tasks already planned.
"""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from schemas.catalog.model import Catalog
from schemas.events import (
    Contact,
    ContactAssigned,
    Contract,
    Envelope,
    OrgChangeRequested,
    Provider,
    ProviderStarted,
    ServiceReportSubmitted,
    StaffJoined,
    StaffLeft,
    StaffRole,
    StaffRoleChanged,
    SubcontractorEnded,
    SubcontractorStarted,
    UnitClosed,
)
from schemas.tasks import Plan

#: How many event ids a provider's state remembers for de-duplication. Redelivery under
#: at-least-once is of recent messages; a replay of older history still yields the same task ids,
#: which the ledger de-duplicates.
PROCESSED_MEMORY = 1000


class UnitState(Contract):
    id: str
    name: str
    staff_count: int = 0
    field_groups: list[str] = Field(default_factory=list)
    active: bool = True
    subcontractor_id: str | None = None  # the organisation ordered for a subcontractor's staff (SC1)
    closed_on: dt.date | None = None  # UnitClosed (or SubcontractorEnded for a subcontractor's organisation)


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


class ProviderState(Contract):
    provider_id: str
    provider: Provider | None = None
    start_date: dt.date | None = None
    takeover_from: str | None = None
    units: dict[str, UnitState] = Field(default_factory=dict)
    contacts: list[Contact] = Field(default_factory=list)
    staff: dict[str, StaffState] = Field(default_factory=dict)
    subcontractors: dict[str, SubcontractorState] = Field(default_factory=dict)
    #: "rule|unit|person" -> task id, so a later plan can depend on a task an earlier one made.
    planned: dict[str, str] = Field(default_factory=dict)
    processed: list[str] = Field(default_factory=list)

    def has_processed(self, event: Envelope) -> bool:
        return event_key(event) in self.processed


def event_key(event: Envelope) -> str:
    return event.dedup_key


def planned_key(rule: str, unit_id: str | None, person_id: str | None) -> str:
    return f"{rule}|{unit_id or ''}|{person_id or ''}"


def _with_contact(contacts: list[Contact], contact: Contact) -> list[Contact]:
    # A newer assignment for the same role, system and unit replaces the older one.
    same = (contact.role, contact.system, contact.unit_id)
    return [c for c in contacts if (c.role, c.system, c.unit_id) != same] + [contact]


def evolve(state: ProviderState, event: Envelope, plan: Plan, catalog: Catalog) -> ProviderState:
    """The state after ``event``, whose plan was ``plan``. Pure; the caller stores the result."""
    data = event.data
    units = dict(state.units)
    staff = dict(state.staff)
    subcontractors = dict(state.subcontractors)
    update: dict = {}

    match data:
        case ProviderStarted():
            update.update(provider=data.provider, start_date=data.start_date, takeover_from=data.takeover_from)
            for unit in data.units:
                units[unit.id] = UnitState(**unit.model_dump())
            contacts = state.contacts
            for contact in data.contacts:
                contacts = _with_contact(contacts, contact)
            update["contacts"] = contacts
        case ContactAssigned():
            update["contacts"] = _with_contact(state.contacts, data.contact)
        case OrgChangeRequested() | ServiceReportSubmitted():
            pass
        case SubcontractorStarted():
            sub = data.subcontractor
            subcontractors[sub.id] = SubcontractorState(
                id=sub.id, name=sub.name, staff_count=data.staff_count, start_date=data.start_date
            )
            if sub.id not in units or not units[sub.id].active:  # a new (or renewed) assignment
                units[sub.id] = UnitState(id=sub.id, name=sub.name, staff_count=data.staff_count, subcontractor_id=sub.id)
        case SubcontractorEnded():
            if data.subcontractor_id in subcontractors:
                subcontractors[data.subcontractor_id] = subcontractors[data.subcontractor_id].model_copy(update={"active": False})
            if data.subcontractor_id in units:
                units[data.subcontractor_id] = units[data.subcontractor_id].model_copy(
                    update={"active": False, "closed_on": data.end_date}
                )
            for person_id, person in staff.items():
                if person.unit_id == data.subcontractor_id:
                    staff[person_id] = person.model_copy(update={"active": False, "grants": {}})
        case UnitClosed():
            if data.unit_id in units:
                units[data.unit_id] = units[data.unit_id].model_copy(update={"active": False, "closed_on": data.closing_date})
            for person_id, person in staff.items():
                if person.unit_id == data.unit_id:
                    staff[person_id] = person.model_copy(update={"active": False, "grants": {}})
        case StaffJoined():
            staff[data.person.id] = StaffState(
                unit_id=data.unit_id, role=data.person.role, licensed=data.person.licensed
            )
        case StaffRoleChanged():
            if data.person_id in staff:
                staff[data.person_id] = staff[data.person_id].model_copy(
                    update={"role": data.role, "licensed": data.licensed}
                )
        case StaffLeft():
            if data.person_id in staff:
                staff[data.person_id] = staff[data.person_id].model_copy(update={"active": False, "grants": {}})

    planned = dict(state.planned)
    for task in plan.tasks:
        if task.subject.provider_id != state.provider_id:
            continue  # a task for the taking-over party belongs to that provider's state
        planned[planned_key(task.rule, task.subject.unit_id, task.subject.person_id)] = task.id
        person = staff.get(task.subject.person_id or "")
        if person is None or not person.active:
            continue
        rule = catalog.rule(task.rule)
        grants = dict(person.grants)
        if rule.revokes:
            grants.pop(rule.revokes, None)
        else:
            grants[rule.id] = task.id
        staff[task.subject.person_id] = person.model_copy(update={"grants": grants})

    processed = [*state.processed, event_key(event)][-PROCESSED_MEMORY:]
    return state.model_copy(
        update={**update, "units": units, "staff": staff, "subcontractors": subcontractors,
                "planned": planned, "processed": processed}
    )

