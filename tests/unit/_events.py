"""The planning tests' events: ``tests.factories``' builders with these tests' defaults, each
returned as a validated ``Envelope``.

The shapes are the factories' (one place says what a valid event is); what differs is what the
planning tests hold fixed: provider ``p1`` with unit ``u1``, no contacts unless a test gives them,
people named by a short suffix of their HSA-id, event ids counted (``evt-1``, ...), and everything
sent on 2025-11-03, well before its deadlines, unless a test says otherwise.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from schemas.events import Envelope
from schemas.parsing import parse_event
from tests import factories
from tests.factories import hsa_id as hsa

SENT = dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
START = "2026-03-02"  # a Monday
_ids = itertools.count(1)


def _parsed(built: dict, sent: dt.datetime | str, event_id: str | None) -> Envelope:
    return parse_event({**built, "id": event_id or f"evt-{next(_ids)}",
                        "time": sent.isoformat() if isinstance(sent, dt.datetime) else sent})


def event(event_type: str, data: dict[str, Any], *, sent: dt.datetime | str = SENT, event_id: str | None = None) -> Envelope:
    return _parsed(factories.envelope(event_type, data), sent, event_id)


def unit(unit_id: str = "u1", staff_count: int = 25, field_groups: tuple[str, ...] = (),
         staff: list[dict] | None = None) -> dict:
    return factories.unit(unit_id, staff_count=staff_count, field_groups=field_groups, staff=staff)


def person(suffix: str = "N1", *, role: str = "sjukskoterska", licensed: bool = True, unit_id: str | None = None) -> dict:
    """A person named in a unit's staff, or on a roster (with ``unit_id``)."""
    named = factories.person(hsa(suffix), name="Test Person", email="person@example.se", role=role, licensed=licensed)
    return named if unit_id is None else {**named, "unit_id": unit_id}


def provider_started(
    provider_id: str = "p1", *, regi: str = "privat", services: tuple[str, ...] = ("hemtjanst",), hsl: bool = True,
    uses_flexite: bool | None = False, flexite: str | None = None, prator_home_care: bool | None = None,
    start_date: str = START, takeover_from: str | None = None,
    units: list[dict] | None = None, n: int = 1, sent: dt.datetime | str = SENT, event_id: str | None = None,
) -> Envelope:  # fmt: skip
    built = factories.provider_started(
        provider_id, start_date=start_date, regi=regi, services=services, hsl=hsl, uses_flexite=uses_flexite,
        flexite=flexite, prator_home_care=prator_home_care, takeover_from=takeover_from, units=units if units is not None else [unit()], contacts=[],
        org=factories.org_number(n))
    return _parsed(built, sent, event_id)


def org_change(
    provider_id: str = "p1", *, size: str = "small", decided_on: str = "2026-01-05",
    effective_date: str = "2026-04-01", unit_ids: tuple[str, ...] = (), sent: dt.datetime | str = SENT,
    event_id: str | None = None,
) -> Envelope:  # fmt: skip
    built = factories.org_change_requested(provider_id, change_id="chg-1", size=size, decided_on=decided_on,
                                           effective_date=effective_date, description="Ny enhet", unit_ids=unit_ids)
    return _parsed(built, sent, event_id)


def subcontractor_started(
    provider_id: str = "p1", *, sub_id: str = "sub1", start_date: str = "2026-05-04", staff_count: int = 8,
    sent: dt.datetime | str = SENT, event_id: str | None = None,
) -> Envelope:  # fmt: skip
    built = factories.subcontractor_started(provider_id, subcontractor_id=sub_id, org=factories.org_number(900),
                                            start_date=start_date, staff_count=staff_count)
    return _parsed(built, sent, event_id)


def subcontractor_ended(provider_id: str = "p1", *, sub_id: str = "sub1", end_date: str = "2026-09-30",
                        sent: dt.datetime | str = SENT, event_id: str | None = None) -> Envelope:
    return _parsed(factories.subcontractor_ended(provider_id, subcontractor_id=sub_id, end_date=end_date), sent, event_id)


def unit_opened(
    provider_id: str = "p1", *, unit_id: str = "u2", staff_count: int = 12, start_date: str = "2026-06-01",
    staff: list[dict] | None = None, sent: dt.datetime | str = SENT, event_id: str | None = None,
) -> Envelope:  # fmt: skip
    built = factories.unit_opened(provider_id, new_unit=unit(unit_id, staff_count=staff_count, staff=staff),
                                  start_date=start_date)
    return _parsed(built, sent, event_id)


def unit_closed(
    provider_id: str = "p1", *, unit_id: str = "u1", closing_date: str = "2026-06-30", taken_over_by: str | None = None,
    sent: dt.datetime | str = SENT, event_id: str | None = None,
) -> Envelope:  # fmt: skip
    built = factories.unit_closed(provider_id, unit_id=unit_id, closing_date=closing_date, taken_over_by=taken_over_by)
    return _parsed(built, sent, event_id)


def staff_joined(
    provider_id: str = "p1", *, person: str = "N1", unit_id: str = "u1", role: str = "sjukskoterska",
    licensed: bool = True, start_date: str = "2026-04-01", sent: dt.datetime | str = SENT, event_id: str | None = None,
) -> Envelope:  # fmt: skip
    built = factories.staff_joined(provider_id, unit_id=unit_id, start_date=start_date, person_id=hsa(person), role=role,
                                   licensed=licensed, name="Test Person", email="person@example.se")
    return _parsed(built, sent, event_id)


def staff_left(provider_id: str = "p1", *, person: str = "N1", end_date: str = "2026-08-31",
               sent: dt.datetime | str = SENT, event_id: str | None = None) -> Envelope:
    return _parsed(factories.staff_left(provider_id, person_id=hsa(person), end_date=end_date), sent, event_id)


def staff_role_changed(
    provider_id: str = "p1", *, person: str = "N1", role: str = "omvardnadspersonal", licensed: bool = False,
    effective_date: str = "2026-06-01", sent: dt.datetime | str = SENT, event_id: str | None = None,
) -> Envelope:  # fmt: skip
    built = factories.staff_role_changed(provider_id, person_id=hsa(person), role=role, licensed=licensed,
                                         effective_date=effective_date)
    return _parsed(built, sent, event_id)


def roster(provider_id: str = "p1", *, persons: list[dict], as_of: str = "2026-05-04",
           sent: dt.datetime | str = SENT, event_id: str | None = None) -> Envelope:
    return _parsed(factories.staff_roster_reported(provider_id, as_of=as_of, persons=persons), sent, event_id)


def roster_confirmed(provider_id: str = "p1", *, as_of: str = "2026-05-04", roster: str | None = None,
                     sent: dt.datetime | str = SENT, event_id: str | None = None) -> Envelope:
    built = factories.staff_roster_confirmed(provider_id, as_of=as_of)
    if roster is not None:
        built["data"]["roster"] = roster
    return _parsed(built, sent, event_id)


def contact_assigned(provider_id: str = "p1", *, sent: dt.datetime | str = SENT, event_id: str | None = None) -> Envelope:
    built = factories.contact_assigned(provider_id, role="administrator", name="Anna", email="anna@example.se", system=None)
    return _parsed(built, sent, event_id)


def service_report(
    provider_id: str = "p1", *, unit_id: str = "u1", month: str = "2026-03", submitted_on: str = "2026-04-03",
    sent: dt.datetime | str = SENT, event_id: str | None = None,
) -> Envelope:  # fmt: skip
    built = factories.service_report_submitted(provider_id, unit_id=unit_id, month=month, submitted_on=submitted_on)
    return _parsed(built, sent, event_id)
