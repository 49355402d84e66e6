"""Hypothesis strategies over the event contract (docs/events.md): valid events of every type, and
valid event histories of one provider.

Every event is built by its ``tests/factories.py`` builder, with the fields hypothesis varies passed
in, so what "valid" means stays written in one place. Values stay inside the documented limits
(``schemas.events``: ids, names, dates 2000-01-01..2099-12-31, counts, list lengths); list sizes
are kept small by default so that a run stays fast, and the limits themselves are reached by
``events(limits=True)``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st

from schemas.events import (
    EVENT_TYPES,
    FIRST_DATE,
    LAST_DATE,
    MAX_CONTACTS,
    MAX_FIELD_GROUPS,
    MAX_STAFF,
    MAX_UNITS,
    SYSTEMS,
    ContactRole,
    Service,
    StaffRole,
)
from schemas.identifiers import looks_like_personal_number
from tests import factories as f

CONTACT_ROLES: tuple[str, ...] = ContactRole.__args__  # type: ignore[attr-defined]
STAFF_ROLES: tuple[str, ...] = StaffRole.__args__  # type: ignore[attr-defined]
SERVICES: tuple[str, ...] = Service.__args__  # type: ignore[attr-defined]

# -- the building blocks ---------------------------------------------------------------------------

#: An id in ``data``: 1-100 of letters, digits and ``._:-``, never shaped like a personal number.
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}", fullmatch=True).filter(
    lambda value: not looks_like_personal_number(value)
)
#: Short ids, for the ids a history refers back to (units, subcontractors, providers).
short_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,11}", fullmatch=True).filter(
    lambda value: not looks_like_personal_number(value)
)
#: An envelope attribute: printable ASCII without spaces.
attribute_texts = st.from_regex(r"[!-~]{1,200}", fullmatch=True)
#: A name or field group: 1-200 characters, no control characters, not only white space.
names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=200
).filter(lambda value: value.strip() != "")
emails = st.from_regex(r"[A-Za-z0-9._%+-]{1,30}@[A-Za-z0-9-]{1,30}\.[A-Za-z]{2,8}", fullmatch=True)
dates = st.dates(FIRST_DATE, LAST_DATE)
iso_dates = dates.map(dt.date.isoformat)
months = dates.map(lambda day: f"{day.year:04d}-{day.month:02d}")
counts = st.one_of(st.integers(0, 200), st.integers(0, MAX_STAFF), st.sampled_from([0, 1, MAX_STAFF]))
flags = st.booleans()
#: An RFC 3339 time with an offset whose local date is inside the window.
times = st.builds(
    lambda moment, quarters: moment.replace(tzinfo=dt.timezone(dt.timedelta(minutes=15 * quarters))).isoformat(),
    st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2099, 12, 31, 23, 59, 59)),
    st.integers(-12 * 4, 14 * 4),
)


@st.composite
def org_numbers(draw: st.DrawFn) -> str:
    """A legal entity's organisation number (third digit 2-9, Luhn), with or without the dash."""
    prefix = draw(st.from_regex(r"[0-9]{2}[2-9]", fullmatch=True))
    number = f.org_number(draw(st.integers(0, 999_999)), prefix=prefix)
    return number if draw(st.booleans()) else number.replace("-", "")


@st.composite
def hsa_ids(draw: st.DrawFn) -> str:
    """``SE`` + an issuer's organisation number (Luhn) + ``-`` + 1-20 letters or digits."""
    body = draw(st.from_regex(r"[0-9]{9}", fullmatch=True))
    suffix = draw(st.from_regex(r"[A-Za-z0-9]{1,20}", fullmatch=True))
    return f"SE{body}{f.luhn_check_digit(body)}-{suffix}"


def persons() -> st.SearchStrategy[dict]:
    return st.builds(f.person, hsa_ids(), name=names, email=emails, role=st.sampled_from(STAFF_ROLES), licensed=flags)


@st.composite
def units(draw: st.DrawFn, unit_id: st.SearchStrategy[str] = ids, *, max_field_groups: int = 3) -> dict:
    """A unit; now and then with some of its staff named (never more than it counts)."""
    staff_count = draw(counts)
    staff = draw(st.none() | st.lists(persons(), max_size=min(3, staff_count), unique_by=lambda person: person["id"]))
    return f.unit(draw(unit_id), name=draw(names), staff_count=staff_count,
                  field_groups=draw(st.lists(names, max_size=max_field_groups)), staff=staff)


def contacts(unit_ids: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[dict]:
    """A contact; ``unit_ids``: the units it may be for (None: none, the provider as a whole)."""
    return st.builds(
        f.contact,
        st.sampled_from(CONTACT_ROLES),
        name=names,
        email=emails,
        system=st.none() | st.sampled_from(SYSTEMS),
        unit_id=st.none() if unit_ids is None else st.none() | unit_ids,
    )


def _envelope(event: dict, draw: st.DrawFn, event_id: str | None = None) -> dict:
    """Vary what the builders fix about the envelope: id, source, time, subject."""
    event["id"] = event_id if event_id is not None else draw(attribute_texts)
    event["source"] = draw(st.just(f.SOURCE) | st.from_regex(r"[!-~]{1,500}", fullmatch=True))
    event["time"] = draw(times)
    if draw(st.booleans()):
        event["subject"] = draw(attribute_texts)
    if draw(st.booleans()):
        del event["datacontenttype"]  # optional; application/json by default
    return event


# -- one valid event of each type ------------------------------------------------------------------


@st.composite
def provider_started(draw: st.DrawFn, provider_id: str | None = None, *, limits: bool = False) -> dict:
    provider_id = provider_id or draw(ids)
    if limits:  # the documented maxima, all at once
        unit_list = [f.unit(f"u{i}", field_groups=[f"g{g}" for g in range(MAX_FIELD_GROUPS)]) for i in range(MAX_UNITS)]
        contact_list = [f.contact(email=f"c{i}@example.se", unit_id=f"u{i % MAX_UNITS}") for i in range(MAX_CONTACTS)]
    else:
        unit_list = draw(st.lists(units(), min_size=1, max_size=4, unique_by=lambda unit: unit["id"]))
        contact_list = draw(st.lists(contacts(st.sampled_from([unit["id"] for unit in unit_list])), max_size=3))
    takeover = draw(st.none() | ids.filter(lambda other: other != provider_id))
    services = draw(st.lists(st.sampled_from(SERVICES), min_size=1, unique=True))
    # What Flexite is used for, said the old way, the new way or both (agreeing).
    flexite = draw(st.sampled_from([None, "none", "hsl", "hsl_and_sol_lss"]))
    uses_flexite = draw(flags) if flexite is None else draw(st.sampled_from([None, flexite != "none"]))
    return _envelope(f.provider_started(
        provider_id,
        name=draw(names),
        org=draw(org_numbers()),
        start_date=draw(iso_dates),
        regi=draw(st.sampled_from(["egen", "privat"])),
        services=services,
        hsl=draw(flags),
        uses_flexite=uses_flexite,
        flexite=flexite,
        prator_home_care=draw(flags) if "hemtjanst" in services else draw(st.sampled_from([None, False])),
        takeover_from=takeover,
        units=unit_list,
        contacts=contact_list,
    ), draw)  # fmt: skip


@st.composite
def org_change_requested(draw: st.DrawFn, provider_id: str | None = None, unit_ids: list[str] | None = None,
                         *, limits: bool = False) -> dict:  # fmt: skip
    known = st.sampled_from(unit_ids) | ids if unit_ids else ids
    chosen = [f"u{i}" for i in range(MAX_UNITS)] if limits else draw(st.lists(known, max_size=4))
    return _envelope(f.org_change_requested(
        provider_id or draw(ids),
        change_id=draw(ids),
        size=draw(st.sampled_from(["small", "large"])),
        decided_on=draw(iso_dates),
        effective_date=draw(iso_dates),
        description=draw(st.text(min_size=1, max_size=2000).filter(lambda text: text.strip() != "")),
        unit_ids=chosen,
    ), draw)  # fmt: skip


@st.composite
def subcontractor_started(draw: st.DrawFn, provider_id: str | None = None, subcontractor_id: str | None = None) -> dict:
    return _envelope(f.subcontractor_started(
        provider_id or draw(ids),
        subcontractor_id=subcontractor_id or draw(ids),
        name=draw(names),
        org=draw(org_numbers()),
        start_date=draw(iso_dates),
        staff_count=draw(counts),
    ), draw)  # fmt: skip


@st.composite
def subcontractor_ended(draw: st.DrawFn, provider_id: str | None = None, subcontractor_id: str | None = None) -> dict:
    return _envelope(f.subcontractor_ended(
        provider_id or draw(ids), subcontractor_id=subcontractor_id or draw(ids), end_date=draw(iso_dates),
    ), draw)  # fmt: skip


@st.composite
def unit_opened(draw: st.DrawFn, provider_id: str | None = None, unit_id: str | None = None) -> dict:
    return _envelope(f.unit_opened(
        provider_id or draw(ids),
        new_unit=draw(units(st.just(unit_id) if unit_id else ids)),
        start_date=draw(iso_dates),
    ), draw)  # fmt: skip


@st.composite
def unit_closed(draw: st.DrawFn, provider_id: str | None = None, unit_id: str | None = None,
                taken_over_by: st.SearchStrategy[str | None] | None = None) -> dict:  # fmt: skip
    return _envelope(f.unit_closed(
        provider_id or draw(ids),
        unit_id=unit_id or draw(ids),
        closing_date=draw(iso_dates),
        taken_over_by=draw(taken_over_by if taken_over_by is not None else st.none() | ids),
    ), draw)  # fmt: skip


@st.composite
def staff_joined(draw: st.DrawFn, provider_id: str | None = None, unit_id: str | None = None,
                 person_id: str | None = None) -> dict:  # fmt: skip
    return _envelope(f.staff_joined(
        provider_id or draw(ids),
        unit_id=unit_id or draw(ids),
        start_date=draw(iso_dates),
        person_id=person_id or draw(hsa_ids()),
        role=draw(st.sampled_from(STAFF_ROLES)),
        licensed=draw(flags),
        name=draw(names),
        email=draw(emails),
    ), draw)  # fmt: skip


@st.composite
def staff_left(draw: st.DrawFn, provider_id: str | None = None, person_id: str | None = None) -> dict:
    return _envelope(f.staff_left(
        provider_id or draw(ids), person_id=person_id or draw(hsa_ids()), end_date=draw(iso_dates),
    ), draw)  # fmt: skip


@st.composite
def staff_role_changed(draw: st.DrawFn, provider_id: str | None = None, person_id: str | None = None) -> dict:
    return _envelope(f.staff_role_changed(
        provider_id or draw(ids),
        person_id=person_id or draw(hsa_ids()),
        role=draw(st.sampled_from(STAFF_ROLES)),
        licensed=draw(flags),
        effective_date=draw(iso_dates),
    ), draw)  # fmt: skip


@st.composite
def staff_roster_reported(draw: st.DrawFn, provider_id: str | None = None, unit_ids: list[str] | None = None,
                          people: list[str] | None = None) -> dict:  # fmt: skip
    """A roster: some of the people already known (``people``), now and then new ones, on known
    units (``unit_ids``) or any."""
    person_ids = st.sampled_from(people) | hsa_ids() if people else hsa_ids()
    on_units = st.sampled_from(unit_ids) | ids if unit_ids else ids
    listed = draw(st.lists(person_ids, max_size=5, unique=True))
    return _envelope(f.staff_roster_reported(
        provider_id or draw(ids),
        as_of=draw(iso_dates),
        persons=[f.roster_person(person_id, unit_id=draw(on_units), role=draw(st.sampled_from(STAFF_ROLES)),
                                 licensed=draw(flags), name=draw(names), email=draw(emails)) for person_id in listed],
    ), draw)  # fmt: skip


@st.composite
def staff_roster_confirmed(draw: st.DrawFn, provider_id: str | None = None, as_of: str | None = None) -> dict:
    return _envelope(f.staff_roster_confirmed(
        provider_id or draw(ids), as_of=as_of or draw(iso_dates), confirmed_by=draw(names),
    ), draw)  # fmt: skip


@st.composite
def contact_assigned(draw: st.DrawFn, provider_id: str | None = None, unit_ids: list[str] | None = None) -> dict:
    # A later assignment is not checked against the units (the event has none): any id will do.
    contact = draw(contacts(st.sampled_from(unit_ids) | ids if unit_ids else ids))
    return _envelope(f.contact_assigned(
        provider_id or draw(ids),
        role=contact["role"],
        name=contact["name"],
        email=contact["email"],
        system=contact.get("system"),
        unit_id=contact.get("unit_id"),
    ), draw)  # fmt: skip


@st.composite
def service_report_submitted(draw: st.DrawFn, provider_id: str | None = None, unit_id: str | None = None) -> dict:
    return _envelope(f.service_report_submitted(
        provider_id or draw(ids), unit_id=unit_id or draw(ids), month=draw(months), submitted_on=draw(iso_dates),
    ), draw)  # fmt: skip


#: One strategy of valid events per CloudEvents ``type``.
EVENTS: dict[str, Any] = {
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
assert set(EVENTS) == set(EVENT_TYPES)


def events() -> st.SearchStrategy[dict]:
    """A valid event of any type (the limits themselves now and then)."""
    return st.one_of(
        *(strategy() for strategy in EVENTS.values()),
        provider_started(limits=True),
        org_change_requested(limits=True),
    )


# -- a valid history of one provider ---------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn, max_events: int = 10) -> list[dict]:
    """A ProviderStarted, then other events of that provider that mostly refer to what it has:
    its units, the subcontractors and staff that earlier events brought in (and now and then to
    ids it never had, which the planner must take in its stride). Now and then an event is sent
    twice (a replay: the same source and id). Event ids are unique otherwise."""
    provider_id = draw(short_ids)
    started = draw(provider_started(provider_id))
    started["id"] = f"e0-{started['id']}"[:200]
    unit_ids = [unit["id"] for unit in started["data"]["units"]]
    subcontractors: list[str] = []
    people: list[str] = [person["id"] for unit in started["data"]["units"] for person in unit.get("staff", ())]
    rosters: list[str] = []
    others = st.sampled_from(["prov-other", "prov-next"]) | short_ids.filter(lambda other: other != provider_id)

    def known(pool: list[str], fresh: st.SearchStrategy[str]) -> str:
        return draw(st.sampled_from(pool) | fresh) if pool else draw(fresh)

    history = [started]
    for index in range(1, draw(st.integers(1, max_events))):
        if draw(st.integers(0, 9)) == 0:
            history.append(dict(draw(st.sampled_from(history))))  # a replay
            continue
        kind = draw(st.sampled_from(sorted(set(EVENT_TYPES) - {"ProviderStarted"})))
        if kind == "OrgChangeRequested":
            event = draw(org_change_requested(provider_id, unit_ids + subcontractors))
        elif kind == "SubcontractorStarted":
            sub_id = known(unit_ids + subcontractors, short_ids)  # a renewal, a clash with a unit, or new
            event = draw(subcontractor_started(provider_id, sub_id))
            subcontractors.append(sub_id)
        elif kind == "SubcontractorEnded":
            event = draw(subcontractor_ended(provider_id, known(subcontractors, short_ids)))
        elif kind == "UnitOpened":
            unit_id = known(unit_ids, short_ids)  # one already open (or closed), or a new one
            event = draw(unit_opened(provider_id, unit_id))
            unit_ids.append(unit_id)
        elif kind == "UnitClosed":
            event = draw(unit_closed(provider_id, known(unit_ids, short_ids), taken_over_by=st.none() | others))
        elif kind == "StaffJoined":
            person_id = known(people, hsa_ids())
            event = draw(staff_joined(provider_id, known(unit_ids + subcontractors, short_ids), person_id))
            people.append(person_id)
        elif kind == "StaffLeft":
            event = draw(staff_left(provider_id, known(people, hsa_ids())))
        elif kind == "StaffRoleChanged":
            event = draw(staff_role_changed(provider_id, known(people, hsa_ids())))
        elif kind == "StaffRosterReported":
            event = draw(staff_roster_reported(provider_id, unit_ids + subcontractors, people))
            people += [person["id"] for person in event["data"]["persons"]]
            rosters.append(event["data"]["as_of"])
        elif kind == "StaffRosterConfirmed":
            event = draw(staff_roster_confirmed(provider_id, known(rosters, iso_dates)))
        elif kind == "ContactAssigned":
            event = draw(contact_assigned(provider_id, unit_ids))
        else:
            event = draw(service_report_submitted(provider_id, known(unit_ids + subcontractors, short_ids)))
        event["id"] = f"e{index}-{event['id']}"[:200]
        history.append(event)
    return history
