"""Who holds what: a provider's access register as its tasks show it, and the closure report that
proves every access ended. Pure: built from the read model's rows and the catalog.

An access is given by a grant task (a person's own, or a unit's order for its staff not known by
name) and ended by the revocation that names it (``Task.revokes``). A person who took a place in
their unit's order holds it through that order: the place is a ``Holding`` the planner of people
publishes on ``omboard.holdings``, projected beside the tasks. A revocation for someone omboard
never knew names no grant: it is listed as ending "whatever they held".

States, from the tasks' statuses: ``ordered`` (the grant is not done), ``active`` (done, nothing
ends it yet), ``ending`` (its revocation is planned, not done) and ``ended`` (the revocation done).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.catalog.model import Catalog
from schemas.identifiers import pseudonym
from schemas.tasks import Holding
from services.domain.ledger import TaskRecord
from services.readmodel.reader import Row
from services.reporting.status import as_cell_text

State = Literal["ordered", "active", "ending", "ended"]
#: The events whose plans are closures: a unit's, or a subcontractor's organisation's.
CLOSING_EVENTS = frozenset({"UnitClosed", "SubcontractorEnded"})


@dataclass(frozen=True)
class Step:
    """One task in an access's life, and who finished it when."""

    task_id: str
    rule: str
    status: str
    due: dt.date
    done_by: str | None = None
    done_at: dt.datetime | None = None

    @classmethod
    def of(cls, record: TaskRecord) -> Step:
        done = next((entry for entry in reversed(record.history) if entry.status == "done"), None)
        finished = done if record.status == "done" else None
        return cls(record.task.id, record.task.rule, record.status, record.task.due,
                   finished.by if finished else None, finished.at if finished else None)


@dataclass
class Access:
    system: str
    unit_id: str | None
    person_id: str | None  # None: the unit's order for its staff not known by name
    granted: Step | None  # None: never seen given (a revocation for someone never known)
    through_unit: bool = False  # held through a place in the unit's order
    places: int | None = None  # a unit's order: how many staff not named it was ordered for
    ended_by: list[Step] = field(default_factory=list)
    #: A unit's order: the accesses of people who took its places, as far as their ends show them.
    taken: list[Access] = field(default_factory=list)

    @property
    def state(self) -> State:
        if any(step.status == "done" for step in self.ended_by):
            return "ended"
        if self.places is not None and not self.ended_by and self.taken and len(self.taken) >= self.places:
            # Every place taken by someone named since: nothing is left for the unit's own
            # cancellation (it is not planned), and the order ends as theirs do.
            states = {access.state for access in self.taken}
            if states == {"ended"}:
                return "ended"
            return "ending" if states <= {"ending", "ended"} else self._given()
        if any(step.status not in ("cancelled", "failed") for step in self.ended_by):
            return "ending"
        return self._given()

    def _given(self) -> State:
        return "active" if self.granted is not None and self.granted.status == "done" else "ordered"

    @property
    def held(self) -> bool:
        """Whether this access still needs an end: a unit's order whose every place a named person
        took holds nothing itself (theirs are held, each on its own line)."""
        if self.places is not None and self.taken and len(self.taken) >= self.places and not self.ended_by:
            return False
        return self.state != "ended"


def access_rules(catalog: Catalog) -> list[str]:
    """The rules whose tasks give or end an access."""
    return [rule.id for rule in catalog.rules if rule.is_grant or rule.access_for or rule.revokes]


def closing_rules_of(catalog: Catalog) -> list[str]:
    """The rules of closures only: their tasks say which plans closed what. A taking-over
    provider's task of the closure (the tokens it takes over) is not a closure of its own."""
    return [rule.id for rule in catalog.rules
            if set(rule.triggers) <= CLOSING_EVENTS and rule.responsible != "taking-over-provider"]


def register(rows: list[Row], catalog: Catalog, holdings: Iterable[Holding] = ()) -> list[Access]:
    """Every access of the provider's tasks and of the places people took in its units' orders
    (``holdings``), by unit, holder and system."""
    records = {row.record.task.id: row.record for row in rows}
    by_grant: dict[str, Access] = {}
    accesses: list[Access] = []
    for record in records.values():
        task, rule = record.task, _rule(catalog, record)
        if rule is not None and (rule.is_grant or rule.access_for):
            access = Access(task.system, task.subject.unit_id, task.subject.person_id, Step.of(record),
                            places=task.quantity if rule.access_for else None)
            by_grant[task.id] = access
            accesses.append(access)
    places: dict[tuple[str, str], Access] = {}  # (the unit's order, person) -> the place they took
    for holding in holdings:
        order = by_grant.get(holding.task_id)
        if order is not None and (holding.task_id, holding.person_id) not in places:
            place = Access(order.system, holding.unit_id, holding.person_id, order.granted, through_unit=True)
            places[(holding.task_id, holding.person_id)] = place
            order.taken.append(place)
            accesses.append(place)
    for record in records.values():
        task, rule = record.task, _rule(catalog, record)
        if rule is None or not rule.revokes:
            continue
        step = Step.of(record)
        grant = by_grant.get(task.revokes) if task.revokes else None
        person = task.subject.person_id
        if grant is not None and grant.person_id == person:
            grant.ended_by.append(step)
        elif grant is not None and person is not None:  # a person's place in the unit's order, ended for them
            place = places.get((grant.granted.task_id, person))
            if place is None:  # its record not projected yet: the end shows it
                place = Access(task.system, task.subject.unit_id, person, grant.granted, through_unit=True)
                places[(grant.granted.task_id, person)] = place
                grant.taken.append(place)
                accesses.append(place)
            place.ended_by.append(step)
        else:
            accesses.append(Access(task.system, task.subject.unit_id, person, None, ended_by=[step]))
    return sorted(accesses, key=lambda a: (a.unit_id or "", a.person_id or "", a.system, a.granted.task_id if a.granted else ""))


def _rule(catalog: Catalog, record: TaskRecord):
    try:
        return catalog.rule(record.task.rule)
    except KeyError:  # a rule a later catalog no longer has: not an access omboard can read
        return None


def closures(rows: list[Row], catalog: Catalog) -> list[dict[str, Any]]:
    """The provider's closures (of a unit, or of a subcontractor's organisation), newest due first."""
    found: dict[str, dict[str, Any]] = {}
    closing = set(closing_rules_of(catalog))
    for row in rows:
        task = row.record.task
        if task.rule in closing:
            entry = found.setdefault(task.plan_id, {"plan_id": task.plan_id, "units": set(), "due": task.due})
            entry["units"].add(task.subject.unit_id)
            entry["due"] = min(entry["due"], task.due)
    return [{**entry, "units": sorted(u for u in entry["units"] if u), "due": entry["due"].isoformat()}
            for entry in sorted(found.values(), key=lambda e: (e["due"], e["plan_id"]), reverse=True)]


def closure_report(rows: list[Row], catalog: Catalog, plan_id: str,
                   holdings: Iterable[Holding] = ()) -> tuple[list[str], list[Access]] | None:
    """The units a closure (the plan of ``plan_id``) closed, and every access held on them: what it
    ended and anything still held. None when the plan closed nothing."""
    closing = set(closing_rules_of(catalog))
    units = sorted({row.record.task.subject.unit_id for row in rows if row.record.task.plan_id == plan_id
                    and row.record.task.rule in closing and row.record.task.subject.unit_id})
    if not units:
        return None
    return units, [access for access in register(rows, catalog, holdings) if access.unit_id in units]


# -- what a key sees -----------------------------------------------------------------------------------


def holder(person_id: str | None, show_ids: bool) -> str | None:
    """A person as the key may see them: their HSA-id, or a pseudonym."""
    if person_id is None:
        return None
    return person_id if show_ids else pseudonym(person_id)


def _step_view(step: Step | None) -> dict[str, Any] | None:
    if step is None:
        return None
    return {"task_id": step.task_id, "rule": step.rule, "status": step.status, "due": step.due.isoformat(),
            "done_by": step.done_by, "done_at": step.done_at.isoformat() if step.done_at else None}


def access_view(access: Access, show_ids: bool) -> dict[str, Any]:
    return {
        "system": access.system,
        "unit_id": access.unit_id,
        "person": holder(access.person_id, show_ids),
        "holder": "person" if access.person_id else "unit",
        "state": access.state,
        "since": access.granted.done_at.isoformat() if access.granted and access.granted.done_at else None,
        "granted_by": _step_view(access.granted),
        "through_unit_order": access.through_unit,
        "places": access.places,
        "ended_by": [_step_view(step) for step in access.ended_by],
    }


def people_view(accesses: list[Access], show_ids: bool) -> list[dict[str, Any]]:
    """The register by holder: each person (and each unit's staff not named) with what they hold."""
    people: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for access in accesses:
        key = (access.person_id, None if access.person_id else access.unit_id)
        entry = people.setdefault(key, {"person": holder(access.person_id, show_ids), "unit_id": access.unit_id,
                                        "holder": "person" if access.person_id else "unit", "access": []})
        entry["access"].append(access_view(access, show_ids))
    return list(people.values())


#: The columns of the register and closure report as CSV: one access a line.
CSV_COLUMNS = ("unit_id", "holder", "person", "system", "state", "places", "granted_task", "granted_status",
               "since", "through_unit_order", "ended_task", "ended_status", "ended_by", "ended_at")


def csv_line(access: Access, show_ids: bool) -> dict[str, Any]:
    ended = access.ended_by[-1] if access.ended_by else None
    line = {
        "unit_id": access.unit_id, "holder": "person" if access.person_id else "unit",
        "person": holder(access.person_id, show_ids), "system": access.system, "state": access.state,
        "places": access.places, "granted_task": access.granted.task_id if access.granted else "",
        "granted_status": access.granted.status if access.granted else "",
        "since": access.granted.done_at.isoformat() if access.granted and access.granted.done_at else "",
        "through_unit_order": access.through_unit, "ended_task": ended.task_id if ended else "",
        "ended_status": ended.status if ended else "", "ended_by": ended.done_by if ended and ended.done_by else "",
        "ended_at": ended.done_at.isoformat() if ended and ended.done_at else "",
    }
    return {column: as_cell_text("" if line[column] is None else line[column]) for column in CSV_COLUMNS}


def access_csv(accesses: list[Access], show_ids: bool) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(csv_line(access, show_ids) for access in accesses)
    return out.getvalue()


def csv_filename(kind: str, provider_id: str, today: dt.date) -> str:
    """A download's name: ASCII only, since it travels in a header (a provider id may be anything)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", provider_id)[:100]
    return f"omboard-{kind}-{safe}-{today.isoformat()}.csv"
