"""Roster reconciliation: the HR system's whole list of a provider's staff against what omboard
knows. Pure.

Who is new joins, who is missing leaves on the roster's date, who changed role or licence changes
role, who is on another unit moves (what they held on the old unit is cancelled, the new one orders
anew). A roster that would take away more than the catalog's share of the known staff
(``roster.hold_above_share``) is most likely a truncated export: its leavers are held, the rest is
planned, and an operator confirms (``StaffRosterConfirmed``) or a later roster supersedes it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from schemas.events import Contract, RosterPerson, StaffRosterConfirmed, StaffRosterReported

if TYPE_CHECKING:
    from services.domain.state import StateView

ROSTER_HELD = "roster-held"
ROSTER_NOT_HELD = "roster-not-held"


class HeldRoster(Contract):
    """A roster's leavers that were not planned: too many at once to be believed unconfirmed."""

    as_of: dt.date
    roster: str  # which roster: the processed marker of its event (two may share a date)
    known: int  # active staff omboard knew when it came
    leavers: list[str] = Field(default_factory=list)  # person ids, sorted


@dataclass(frozen=True)
class RosterDiff:
    joiners: list[RosterPerson]
    role_changes: list[RosterPerson]  # same unit, another role or licence
    unit_moves: list[RosterPerson]
    leavers: list[str]  # active and known, missing from the roster
    held: HeldRoster | None  # the leavers, when there are too many to plan unconfirmed


def known_staff(state: StateView) -> dict[str, tuple[str, str, bool]]:
    """Every active person omboard knows at the provider, on any unit (one it never opened too):
    id -> (unit, role, licensed)."""
    return {person_id: (person.unit_id, person.role, person.licensed)
            for person_id, person in state.every_person() if person.active}


def reconcile(state: StateView, roster: StaffRosterReported, roster_key: str, hold_above_share: float) -> RosterDiff:
    """``roster`` (whose event's processed marker is ``roster_key``) against ``state``."""
    known = known_staff(state)
    joiners, role_changes, unit_moves = [], [], []
    for person in roster.persons:
        before = known.get(person.id)
        if before is None:
            joiners.append(person)
        elif before[0] != person.unit_id:
            unit_moves.append(person)
        elif before[1:] != (person.role, person.licensed):
            role_changes.append(person)
    listed = {person.id for person in roster.persons}
    leavers = sorted(person_id for person_id in known if person_id not in listed)
    held = None
    if leavers and len(leavers) > hold_above_share * len(known):
        held = HeldRoster(as_of=roster.as_of, roster=roster_key, known=len(known), leavers=leavers)
    return RosterDiff(joiners, role_changes, unit_moves, leavers, held)


def confirms(confirmation: StaffRosterConfirmed, held: HeldRoster) -> bool:
    """Whether ``confirmation`` is the operator's word on the roster ``held``: its date, and the
    roster itself when it names one."""
    return confirmation.as_of == held.as_of and confirmation.roster in (None, held.roster)
