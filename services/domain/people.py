"""A roster planned as the events it stands for: each joiner a StaffJoined, each leaver a StaffLeft,
each new role a StaffRoleChanged, each move to another unit a StaffJoined there (which the planner
plans as a move); and the places new people take in their unit's orders before anything is ordered
for them. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.catalog.model import Catalog
from schemas.events import Envelope, StaffJoined, StaffLeft, StaffRoleChanged, StaffRosterConfirmed
from schemas.tasks import Holding, Task, Warning
from services.domain.roster import ROSTER_HELD, ROSTER_NOT_HELD, confirms, reconcile
from services.domain.state import StaffState, StateView, processed_marker, unit_orders

Part = StaffJoined | StaffLeft | StaffRoleChanged


@dataclass(frozen=True)
class RosterParts:
    parts: list[Part]
    joiners: set[str]  # person ids omboard never knew: they may take places in their unit's orders
    warnings: list[Warning]


def stands_for(event: Envelope, state: StateView, catalog: Catalog) -> RosterParts:
    """What a StaffRosterReported (or the confirmation of a held one) stands for, leavers first."""
    data = event.data
    if isinstance(data, StaffRosterConfirmed):
        held = state.facts.held_roster
        if held is None or not confirms(data, held):
            return RosterParts([], set(), [Warning(code=ROSTER_NOT_HELD, obligation="HO1", message=(
                f"no roster of {data.as_of} is held: nothing to confirm"
                + (f" (the one held is of {held.as_of})" if held else "")))])
        return RosterParts([StaffLeft(provider_id=data.provider_id, person_id=person_id, end_date=held.as_of)
                            for person_id in held.leavers], set(), [])
    diff = reconcile(state, data, processed_marker(event), catalog.roster.hold_above_share)
    leave = [] if diff.held else diff.leavers
    parts: list[Part] = [StaffLeft(provider_id=data.provider_id, person_id=person_id, end_date=data.as_of)
                         for person_id in leave]
    parts += [StaffRoleChanged(provider_id=data.provider_id, person_id=person.id, role=person.role,
                               licensed=person.licensed, effective_date=data.as_of) for person in diff.role_changes]
    parts += [StaffJoined(provider_id=data.provider_id, unit_id=person.unit_id, start_date=data.as_of,
                          person=person.model_dump(exclude={"unit_id"})) for person in [*diff.unit_moves, *diff.joiners]]
    warnings = []
    if diff.held:
        warnings.append(Warning(code=ROSTER_HELD, obligation="HO1", message=(
            f"the roster of {data.as_of} (roster {diff.held.roster}) leaves out {len(diff.held.leavers)} of the "
            f"{diff.held.known} staff omboard knows, more than {catalog.roster.hold_above_share:.0%}: their access is "
            f"not cancelled until an operator confirms it (omboard roster confirm {data.provider_id} --as-of "
            f"{data.as_of} --roster {diff.held.roster}) or a later roster supersedes it")))
    # Only people omboard never knew take places: someone who left and comes back is ordered anew.
    return RosterParts(parts, {person.id for person in diff.joiners if state.person(person.id) is None}, warnings)


def places_taken(tasks: list[Task], joiners: set[str], state: StateView, catalog: Catalog) -> tuple[list[Task], list[Holding]]:
    """A roster's new people take the places their unit's orders made for staff not known by
    name, system by system, before anything is ordered for them: they are who those orders were for."""
    places: dict[tuple[str, str], int] = {}
    holdings, kept = [], []
    for task in tasks:
        subject = task.subject
        order = None
        if subject.person_id in joiners and catalog.rule(task.rule).is_grant and subject.unit_id:
            unit = state.unit(subject.unit_id)
            access = unit_orders(unit, state, catalog).get(task.rule) if unit else None
            key = (subject.unit_id, task.rule)
            if access is not None and places.setdefault(key, access.places) > 0:
                places[key] -= 1
                order = access.task_id
        if order is None:
            kept.append(task)
        else:
            holdings.append(Holding(person_id=subject.person_id, unit_id=subject.unit_id, grant_rule=task.rule,
                                    task_id=order))
    return kept, holdings


class Leaving:
    """``state`` with ``leavers`` gone: what people moving to another unit join it as."""

    def __init__(self, state: StateView, leavers: set[str]):
        self._state, self._leavers = state, leavers
        self.provider_id, self.facts = state.provider_id, state.facts

    def person(self, person_id: str) -> StaffState | None:
        return None if person_id in self._leavers else self._state.person(person_id)

    def __getattr__(self, name: str):
        return getattr(self._state, name)
