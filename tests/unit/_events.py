"""Small event builders for the planning tests: each returns a validated ``Envelope``.

Private to the catalog/planning tests (tests/factories.py serves the others). Dates are fixed and
events are sent well before their deadlines unless a test says otherwise.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from schemas.events import Envelope, parse_event
from tests.factories import hsa_id as hsa
from tests.factories import org_number

SENT = dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
START = "2026-03-02"  # a Monday
_ids = itertools.count(1)


def event(event_type: str, data: dict[str, Any], *, sent: dt.datetime | str = SENT, event_id: str | None = None) -> Envelope:
    return parse_event(
        {
            "specversion": "1.0",
            "id": event_id or f"evt-{next(_ids)}",
            "source": "urn:omboard:test:planning",
            "type": event_type,
            "time": sent.isoformat() if isinstance(sent, dt.datetime) else sent,
            "data": data,
        }
    )


def unit(unit_id: str = "u1", staff_count: int = 25, field_groups: tuple[str, ...] = ()) -> dict:
    return {"id": unit_id, "name": f"Enhet {unit_id}", "staff_count": staff_count, "field_groups": list(field_groups)}


def provider_started(
    provider_id: str = "p1",
    *,
    regi: str = "privat",
    services: tuple[str, ...] = ("hemtjanst",),
    hsl: bool = True,
    uses_flexite: bool = False,
    start_date: str = START,
    takeover_from: str | None = None,
    units: list[dict] | None = None,
    n: int = 1,
    **kw: Any,
) -> Envelope:
    data: dict[str, Any] = {
        "provider": {
            "id": provider_id,
            "name": f"Omsorg {provider_id} AB",
            "org_number": org_number(n),
            "regi": regi,
            "services": list(services),
            "hsl": hsl,
            "uses_flexite": uses_flexite,
        },
        "start_date": start_date,
        "units": units if units is not None else [unit()],
    }
    if takeover_from:
        data["takeover_from"] = takeover_from
    return event("ProviderStarted", data, **kw)


def org_change(
    provider_id: str = "p1", *, size: str = "small", decided_on: str = "2026-01-05",
    effective_date: str = "2026-04-01", unit_ids: tuple[str, ...] = (), **kw: Any,
) -> Envelope:  # fmt: skip
    data = {
        "provider_id": provider_id, "change_id": "chg-1", "size": size, "decided_on": decided_on,
        "effective_date": effective_date, "description": "Ny enhet", "unit_ids": list(unit_ids),
    }  # fmt: skip
    return event("OrgChangeRequested", data, **kw)


def subcontractor_started(
    provider_id: str = "p1", *, sub_id: str = "sub1", start_date: str = "2026-05-04", staff_count: int = 8, **kw: Any
) -> Envelope:
    data = {
        "provider_id": provider_id,
        "subcontractor": {"id": sub_id, "name": "Underleverantören AB", "org_number": org_number(900)},
        "start_date": start_date,
        "staff_count": staff_count,
    }
    return event("SubcontractorStarted", data, **kw)


def subcontractor_ended(provider_id: str = "p1", *, sub_id: str = "sub1", end_date: str = "2026-09-30", **kw: Any) -> Envelope:
    return event("SubcontractorEnded", {"provider_id": provider_id, "subcontractor_id": sub_id, "end_date": end_date}, **kw)


def unit_closed(
    provider_id: str = "p1", *, unit_id: str = "u1", closing_date: str = "2026-06-30", taken_over_by: str | None = None, **kw: Any
) -> Envelope:
    data: dict[str, Any] = {"provider_id": provider_id, "unit_id": unit_id, "closing_date": closing_date}
    if taken_over_by:
        data["taken_over_by"] = taken_over_by
    return event("UnitClosed", data, **kw)


def staff_joined(
    provider_id: str = "p1", *, person: str = "N1", unit_id: str = "u1", role: str = "sjukskoterska",
    licensed: bool = True, start_date: str = "2026-04-01", **kw: Any,
) -> Envelope:  # fmt: skip
    data = {
        "provider_id": provider_id,
        "unit_id": unit_id,
        "start_date": start_date,
        "person": {"id": hsa(person), "name": "Test Person", "email": "person@example.se", "role": role, "licensed": licensed},
    }
    return event("StaffJoined", data, **kw)


def staff_left(provider_id: str = "p1", *, person: str = "N1", end_date: str = "2026-08-31", **kw: Any) -> Envelope:
    return event("StaffLeft", {"provider_id": provider_id, "person_id": hsa(person), "end_date": end_date}, **kw)


def staff_role_changed(
    provider_id: str = "p1", *, person: str = "N1", role: str = "omvardnadspersonal", licensed: bool = False,
    effective_date: str = "2026-06-01", **kw: Any,
) -> Envelope:  # fmt: skip
    data = {
        "provider_id": provider_id, "person_id": hsa(person), "role": role, "licensed": licensed,
        "effective_date": effective_date,
    }  # fmt: skip
    return event("StaffRoleChanged", data, **kw)


def contact_assigned(provider_id: str = "p1", **kw: Any) -> Envelope:
    data = {"provider_id": provider_id, "contact": {"name": "Anna", "email": "anna@example.se", "role": "administrator"}}
    return event("ContactAssigned", data, **kw)


def service_report(
    provider_id: str = "p1", *, unit_id: str = "u1", month: str = "2026-03", submitted_on: str = "2026-04-03", **kw: Any
) -> Envelope:
    data = {"provider_id": provider_id, "unit_id": unit_id, "month": month, "submitted_on": submitted_on}
    return event("ServiceReportSubmitted", data, **kw)
