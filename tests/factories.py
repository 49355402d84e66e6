"""Valid example events, as the JSON dicts upstream systems send (structured-mode CloudEvents).

Every builder returns a fresh dict that ``schemas.parsing.parse_event`` accepts; override what a
test is about and leave the rest. Identifiers are valid: organisation numbers pass Luhn with a
third digit of 2 or more (``org_number(n)`` makes distinct ones), HSA-ids are issued under
2321000032 (``hsa_id(suffix)``). Dates are fixed, so plans are reproducible; event ids are random
unless given, so two built events are two events.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

SOURCE = "urn:omboard:test:hr"
#: When the test events were sent: well before the default start dates, so no deadline has passed.
SENT_AT = "2026-01-05T09:00:00+01:00"
START_DATE = "2026-03-02"
PROVIDER_ID = "prov-1"
UNIT_ID = "unit-1"
HSA_ISSUER = "2321000032"  # a Luhn-valid ten-digit organisation number


def luhn_check_digit(digits: str) -> str:
    """The digit that makes ``digits + it`` pass the Luhn check."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:  # these positions are doubled once the check digit is appended
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def org_number(n: int = 0, *, prefix: str = "556") -> str:
    """A valid organisation number NNNNNN-NNNN; distinct ``n`` give distinct numbers.

    ``prefix`` must keep a third digit of 2-9 to be a legal entity's number (``"811"`` makes
    something shaped like a personal identity number, which validation must reject).
    """
    body = f"{prefix}{n:0{9 - len(prefix)}d}"
    if len(body) != 9 or not body.isdigit():
        raise ValueError("prefix plus n must make nine digits")
    digits = body + luhn_check_digit(body)
    return f"{digits[:6]}-{digits[6:]}"


def personal_number_shaped(n: int = 0) -> str:
    """Luhn-valid, but born on 18 December 1981: a personal identity number's shape."""
    return org_number(n, prefix="811218")


def hsa_id(suffix: str = "P0001") -> str:
    return f"SE{HSA_ISSUER}-{suffix}"


def envelope(
    event_type: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    time: str = SENT_AT,
    source: str = SOURCE,
    subject: str | None = None,
) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
    }
    if subject is not None:
        event["subject"] = subject
    return event


def unit(unit_id: str = UNIT_ID, *, name: str | None = None, staff_count: int = 25, field_groups: Sequence[str] = (),
         staff: Sequence[dict] | None = None) -> dict:
    result = {"id": unit_id, "name": name or f"Enhet {unit_id}", "staff_count": staff_count, "field_groups": list(field_groups)}
    if staff is not None:
        result["staff"] = list(staff)
    return result


def contact(
    role: str = "kontaktperson",
    *,
    name: str = "Karin Kontakt",
    email: str = "karin.kontakt@example.se",
    system: str | None = None,
    unit_id: str | None = None,
) -> dict:
    result: dict[str, Any] = {"name": name, "email": email, "role": role}
    if system is not None:
        result["system"] = system
    if unit_id is not None:
        result["unit_id"] = unit_id
    return result


def person(
    person_id: str | None = None,
    *,
    name: str = "Sara Sjuksköterska",
    email: str = "sara@example.se",
    role: str = "sjukskoterska",
    licensed: bool = True,
) -> dict:
    return {"id": person_id or hsa_id(), "name": name, "email": email, "role": role, "licensed": licensed}


# -- one builder per event type ----------------------------------------------------------------------


def provider_started(
    provider_id: str = PROVIDER_ID,
    *,
    start_date: str = START_DATE,
    regi: str = "privat",
    services: Sequence[str] = ("hemtjanst",),
    hsl: bool = True,
    uses_flexite: bool | None = False,
    flexite: str | None = None,
    prator_home_care: bool | None = None,
    takeover_from: str | None = None,
    units: Sequence[dict] | None = None,
    contacts: Sequence[dict] | None = None,
    name: str | None = None,
    org: str | None = None,
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data: dict[str, Any] = {
        "provider": {
            "id": provider_id,
            "name": name or f"Omsorg {provider_id} AB",
            "org_number": org or org_number(1),
            "regi": regi,
            "services": list(services),
            "hsl": hsl,
            **({"uses_flexite": uses_flexite} if uses_flexite is not None else {}),
            **({"flexite": flexite} if flexite is not None else {}),
            **({"prator_home_care": prator_home_care} if prator_home_care is not None else {}),
        },
        "start_date": start_date,
        "units": list(units) if units is not None else [unit()],
        "contacts": list(contacts) if contacts is not None else [contact()],
    }
    if takeover_from is not None:
        data["takeover_from"] = takeover_from
    return envelope("ProviderStarted", data, event_id=event_id, time=time)


def org_change_requested(
    provider_id: str = PROVIDER_ID,
    *,
    change_id: str = "change-1",
    size: str = "small",
    decided_on: str = "2026-01-05",
    effective_date: str = "2026-04-01",
    description: str = "Ny enhet för nattpatrull",
    unit_ids: Sequence[str] = (UNIT_ID,),
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data = {
        "provider_id": provider_id,
        "change_id": change_id,
        "size": size,
        "decided_on": decided_on,
        "effective_date": effective_date,
        "description": description,
        "unit_ids": list(unit_ids),
    }
    return envelope("OrgChangeRequested", data, event_id=event_id, time=time)


def subcontractor_started(
    provider_id: str = PROVIDER_ID,
    *,
    subcontractor_id: str = "sub-1",
    name: str = "Underleverantören AB",
    org: str | None = None,
    start_date: str = "2026-04-01",
    staff_count: int = 8,
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data = {
        "provider_id": provider_id,
        "subcontractor": {"id": subcontractor_id, "name": name, "org_number": org or org_number(2)},
        "start_date": start_date,
        "staff_count": staff_count,
    }
    return envelope("SubcontractorStarted", data, event_id=event_id, time=time)


def subcontractor_ended(
    provider_id: str = PROVIDER_ID,
    *,
    subcontractor_id: str = "sub-1",
    end_date: str = "2026-09-30",
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data = {"provider_id": provider_id, "subcontractor_id": subcontractor_id, "end_date": end_date}
    return envelope("SubcontractorEnded", data, event_id=event_id, time=time)


def unit_opened(
    provider_id: str = PROVIDER_ID,
    *,
    new_unit: dict | None = None,
    start_date: str = "2026-06-01",
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data = {"provider_id": provider_id, "unit": new_unit or unit("unit-2"), "start_date": start_date}
    return envelope("UnitOpened", data, event_id=event_id, time=time)


def unit_closed(
    provider_id: str = PROVIDER_ID,
    *,
    unit_id: str = UNIT_ID,
    closing_date: str = "2026-06-30",
    taken_over_by: str | None = None,
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data: dict[str, Any] = {"provider_id": provider_id, "unit_id": unit_id, "closing_date": closing_date}
    if taken_over_by is not None:
        data["taken_over_by"] = taken_over_by
    return envelope("UnitClosed", data, event_id=event_id, time=time)


def staff_joined(
    provider_id: str = PROVIDER_ID,
    *,
    unit_id: str = UNIT_ID,
    start_date: str = START_DATE,
    person_id: str | None = None,
    role: str = "sjukskoterska",
    licensed: bool = True,
    name: str = "Sara Sjuksköterska",
    email: str = "sara@example.se",
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data = {
        "provider_id": provider_id,
        "unit_id": unit_id,
        "start_date": start_date,
        "person": person(person_id, name=name, email=email, role=role, licensed=licensed),
    }
    return envelope("StaffJoined", data, event_id=event_id, time=time)


def staff_left(
    provider_id: str = PROVIDER_ID,
    *,
    person_id: str | None = None,
    end_date: str = "2026-08-31",
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data = {"provider_id": provider_id, "person_id": person_id or hsa_id(), "end_date": end_date}
    return envelope("StaffLeft", data, event_id=event_id, time=time)


def staff_role_changed(
    provider_id: str = PROVIDER_ID,
    *,
    person_id: str | None = None,
    role: str = "enhetschef",
    licensed: bool = False,
    effective_date: str = "2026-05-01",
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data = {
        "provider_id": provider_id,
        "person_id": person_id or hsa_id(),
        "role": role,
        "licensed": licensed,
        "effective_date": effective_date,
    }
    return envelope("StaffRoleChanged", data, event_id=event_id, time=time)


def roster_person(person_id: str | None = None, *, unit_id: str = UNIT_ID, role: str = "sjukskoterska",
                  licensed: bool = True, name: str = "Sara Sjuksköterska", email: str = "sara@example.se") -> dict:
    return {**person(person_id, name=name, email=email, role=role, licensed=licensed), "unit_id": unit_id}


def staff_roster_reported(
    provider_id: str = PROVIDER_ID,
    *,
    as_of: str = "2026-05-01",
    persons: Sequence[dict] = (),
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data = {"provider_id": provider_id, "as_of": as_of, "persons": list(persons)}
    return envelope("StaffRosterReported", data, event_id=event_id, time=time)


def staff_roster_confirmed(
    provider_id: str = PROVIDER_ID,
    *,
    as_of: str = "2026-05-01",
    confirmed_by: str = "Olle Operatör",
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data = {"provider_id": provider_id, "as_of": as_of, "confirmed_by": confirmed_by}
    return envelope("StaffRosterConfirmed", data, event_id=event_id, time=time)


def contact_assigned(
    provider_id: str = PROVIDER_ID,
    *,
    role: str = "behorighetsadministrator",
    name: str = "Anna Admin",
    email: str = "anna.admin@example.se",
    system: str | None = "siebel",
    unit_id: str | None = None,
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data = {
        "provider_id": provider_id,
        "contact": contact(role, name=name, email=email, system=system, unit_id=unit_id),
    }
    return envelope("ContactAssigned", data, event_id=event_id, time=time)


def service_report_submitted(
    provider_id: str = PROVIDER_ID,
    *,
    unit_id: str = UNIT_ID,
    month: str = "2026-03",
    submitted_on: str = "2026-04-03",
    event_id: str | None = None,
    time: str = SENT_AT,
) -> dict:
    data = {"provider_id": provider_id, "unit_id": unit_id, "month": month, "submitted_on": submitted_on}
    return envelope("ServiceReportSubmitted", data, event_id=event_id, time=time)


#: Every event type's builder, by CloudEvents ``type``.
BUILDERS: dict[str, Callable[..., dict]] = {
    "ProviderStarted": provider_started,
    "OrgChangeRequested": org_change_requested,
    "SubcontractorStarted": subcontractor_started,
    "SubcontractorEnded": subcontractor_ended,
    "UnitOpened": unit_opened,
    "UnitClosed": unit_closed,
    "StaffJoined": staff_joined,
    "StaffLeft": staff_left,
    "StaffRoleChanged": staff_role_changed,
    "StaffRosterReported": staff_roster_reported,
    "StaffRosterConfirmed": staff_roster_confirmed,
    "ContactAssigned": contact_assigned,
    "ServiceReportSubmitted": service_report_submitted,
}


def write_json(path: Path, event: dict) -> Path:
    path.write_text(json.dumps(event, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, events: Iterable[dict | str]) -> Path:
    """One event a line; a str is written as it is (to plant a broken line)."""
    lines = [item if isinstance(item, str) else json.dumps(item, ensure_ascii=False) for item in events]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def at(date: str | dt.date, hour: int = 9) -> str:
    """An RFC 3339 time in Swedish winter time on ``date``, for an event's ``time``."""
    day = date if isinstance(date, dt.date) else dt.date.fromisoformat(date)
    return dt.datetime.combine(day, dt.time(hour), dt.timezone(dt.timedelta(hours=1))).isoformat()
