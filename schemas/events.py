"""Event contract v1: a CloudEvents 1.0 envelope around one pydantic model per event type.

Upstream systems send the envelope as JSON (HTTP, CLI); on Kafka it travels in binary content
mode: attributes in ``ce_*`` headers, ``data`` as the JSON value (see ``schemas.wire``). Validating
one where it enters, with errors naming the field: ``schemas.parsing``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from schemas.identifiers import HsaId, OrgNumber, no_personal_number_in, not_a_personal_number


class Contract(BaseModel):
    """Base of every contract model: immutable, unknown fields rejected, ISO dates only."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


# -- limits: what a plan can handle, enforced where input enters (docs/events.md, "Limits") ---------

#: Dates a plan can be made for: the business calendar and the deadline arithmetic stay within it.
FIRST_DATE, LAST_DATE = dt.date(2000, 1, 1), dt.date(2099, 12, 31)
MAX_UNITS = 300  # of one ProviderStarted; Uppsala's largest operation runs about a hundred
MAX_FIELD_GROUPS = 50  # of one unit
MAX_CONTACTS = 200  # of one ProviderStarted
MAX_STAFF = 100_000  # staff_count of a unit or subcontractor
#: Persons one event names (a roster, or a start's or unit's staff): about 170 bytes each, so 5,000
#: fit in a Kafka record (1 MB) with room to spare; a larger provider reports one roster a unit.
MAX_PERSONS = 5_000


def _iso_date_only(value: Any) -> Any:
    # Without this, pydantic reads 0 as 1970-01-01 and 1.7e9 as a date in 2023.
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and len(value) == 10 and value[4] == value[7] == "-":
        return value
    raise ValueError("must be an ISO date, YYYY-MM-DD")


def _plannable(value: dt.date) -> dt.date:
    if not FIRST_DATE <= value <= LAST_DATE:
        raise ValueError(f"must be between {FIRST_DATE} and {LAST_DATE}")
    return value


_RFC3339_START = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _rfc3339_only(value: Any) -> Any:
    # Without this, pydantic reads 1700000000 (or "1700000000") as a Unix time: a number is not a time.
    if isinstance(value, dt.datetime) or (isinstance(value, str) and _RFC3339_START.match(value)):
        return value
    raise ValueError("must be an RFC 3339 time with a zone offset, YYYY-MM-DDTHH:MM:SS+HH:MM")


Date = Annotated[dt.date, BeforeValidator(_iso_date_only), AfterValidator(_plannable)]
Count = Annotated[int, Strict(), Field(ge=0, le=MAX_STAFF)]  # strict: true is not 1
Flag = Annotated[bool, Strict()]  # strict: "yes" and 1 are not true
Id = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"),
    AfterValidator(not_a_personal_number),
]
# Printable text: no control characters (CR/LF would forge log lines and break Kafka headers).
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$"),
                 AfterValidator(no_personal_number_in)]
#: Free text people read (a change's description, a status reason): no personal identity number.
Text = Annotated[str, AfterValidator(no_personal_number_in)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _no_control_characters(value: str) -> str:
    # An address goes into SMTP commands and mail headers; the pattern's \s leaves out NUL and the like.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


Email = Annotated[
    str,
    Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    AfterValidator(_no_control_characters),
]


def _plannable_month(value: str) -> str:
    # The pattern's \d takes any script's digits ("２０２６-03"); the month is ASCII, like a date.
    if not value.isascii():
        raise ValueError("must be written YYYY-MM in ASCII digits")
    _plannable(dt.date(int(value[:4]), int(value[5:7]), 1))
    return value


Month = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$"), AfterValidator(_plannable_month)]

Regi = Literal["egen", "privat"]
Service = Literal["hemtjanst", "sarskilt_boende", "korttid", "lss"]
#: What a provider uses Flexite for: not at all, health-care deviations (HSL) only, or those and
#: the social-services ones (SoL/LSS), as the municipality's own operation does.
FlexiteUse = Literal["none", "hsl", "hsl_and_sol_lss"]
StaffRole = Literal[
    "sjukskoterska",
    "arbetsterapeut",
    "fysioterapeut",
    "bistandshandlaggare",
    "enhetschef",
    "verksamhetschef",
    "samordnare",
    "planerare",
    "omvardnadspersonal",
]
ContactRole = Literal[
    "kontaktperson",
    "administrator",
    "behorighetsadministrator",
    "expertanvandare",
    "verksamhetschef",
    "enhetschef",
]
SystemId = Literal["siebel", "siths", "prator", "flexite", "phoniro", "natthemsjukvard", "boka", "klk-it"]
SYSTEMS: tuple[str, ...] = SystemId.__args__  # type: ignore[attr-defined]


class Provider(Contract):
    id: Id
    name: Name
    org_number: OrgNumber
    regi: Regi
    services: list[Service] = Field(min_length=1)
    hsl: Flag
    #: Whether the provider uses Flexite at all (true: for HSL and SoL/LSS, what it always meant);
    #: ``flexite`` says for what. Either will do; given both, they must agree.
    uses_flexite: Flag | None = None
    flexite: FlexiteUse | None = None
    #: Prator's home-care category (enhetschef, samordnare, planerare), which the checklist says
    #: "kan vara aktuell för hemtjänstutförare": the provider's choice, for hemtjänst only.
    prator_home_care: Flag = False

    @field_validator("services")
    @classmethod
    def _services_unique(cls, services: list[str]) -> list[str]:
        if len(set(services)) != len(services):
            raise ValueError("lists a service twice")
        return services

    @model_validator(mode="after")
    def _choices_stated(self) -> Provider:
        if self.uses_flexite is None and self.flexite is None:
            raise ValueError("flexite: say what Flexite is used for (none, hsl or hsl_and_sol_lss), or uses_flexite")
        if self.uses_flexite is not None and self.flexite is not None and self.uses_flexite != (self.flexite != "none"):
            raise ValueError(f"uses_flexite: {str(self.uses_flexite).lower()} contradicts flexite {self.flexite}")
        if self.prator_home_care and "hemtjanst" not in self.services:
            raise ValueError("prator_home_care: Prator's home-care category is for providers of hemtjanst")
        return self

    @property
    def flexite_use(self) -> FlexiteUse:
        if self.flexite is not None:
            return self.flexite
        return "hsl_and_sol_lss" if self.uses_flexite else "none"


class Contact(Contract):
    name: Name
    email: Email
    role: ContactRole
    system: SystemId | None = None
    unit_id: Id | None = None


class Person(Contract):
    id: HsaId
    name: Name
    email: Email
    role: StaffRole
    licensed: Flag


def _persons_unique(persons: Iterable[Person], field: str) -> None:
    seen: set[str] = set()
    for index, person in enumerate(persons):
        if person.id in seen:  # named by its place, never repeated: it is an HSA-id
            raise ValueError(f"{field}.{index}.id: names a person listed before")
        seen.add(person.id)


class Unit(Contract):
    id: Id
    name: Name
    #: Everyone who works on the unit, named in ``staff`` or not: the unit's access orders are for
    #: the ones not named (``staff_count`` minus the named), who get no access of their own.
    staff_count: Count
    field_groups: list[Name] = Field(default_factory=list, max_length=MAX_FIELD_GROUPS)
    #: The unit's staff known by name: each is planned as a person, as a StaffJoined would be.
    staff: list[Person] = Field(default_factory=list, max_length=MAX_PERSONS)

    @model_validator(mode="after")
    def _staff_counted(self) -> Unit:
        _persons_unique(self.staff, "staff")
        if len(self.staff) > self.staff_count:
            raise ValueError(f"staff: names {len(self.staff)} persons, more than staff_count {self.staff_count}")
        return self


class Subcontractor(Contract):
    id: Id
    name: Name
    org_number: OrgNumber


class ProviderStarted(Contract):
    provider: Provider
    start_date: Date
    takeover_from: Id | None = None
    units: list[Unit] = Field(min_length=1, max_length=MAX_UNITS)
    contacts: list[Contact] = Field(default_factory=list, max_length=MAX_CONTACTS)

    @property
    def provider_id(self) -> str:
        return self.provider.id

    @model_validator(mode="after")
    def _consistent(self) -> ProviderStarted:
        unit_ids = [unit.id for unit in self.units]
        if len(set(unit_ids)) != len(unit_ids):
            raise ValueError("units: two units share an id")
        if sum(len(unit.staff) for unit in self.units) > MAX_PERSONS:
            raise ValueError(f"units: name more than {MAX_PERSONS} persons in all; report the rest with StaffRosterReported")
        seen: set[str] = set()
        for unit_index, unit in enumerate(self.units):
            for index, person in enumerate(unit.staff):
                if person.id in seen:
                    raise ValueError(f"units.{unit_index}.staff.{index}.id: names a person another unit lists")
                seen.add(person.id)
        for index, contact in enumerate(self.contacts):
            if contact.unit_id is not None and contact.unit_id not in unit_ids:  # named, never repeated
                raise ValueError(f"contacts.{index}.unit_id: is not one of the provider's units")
        if self.takeover_from == self.provider.id:
            raise ValueError("takeover_from: a provider cannot take over from itself")
        return self


class OrgChangeRequested(Contract):
    provider_id: Id
    change_id: Id
    size: Literal["small", "large"]
    decided_on: Date
    effective_date: Date
    description: Annotated[Text, Field(min_length=1, max_length=2000)]
    unit_ids: list[Id] = Field(default_factory=list, max_length=MAX_UNITS)


class SubcontractorStarted(Contract):
    provider_id: Id
    subcontractor: Subcontractor
    start_date: Date
    staff_count: Count


class SubcontractorEnded(Contract):
    provider_id: Id
    subcontractor_id: Id
    end_date: Date


class UnitOpened(Contract):
    """A unit the provider opens after its start (a new home-care area, a new housing): its
    structures, expert users, trainings and readiness check, and from its first month its
    service report, as at a start."""

    provider_id: Id
    unit: Unit
    start_date: Date
    #: The provider that hands the unit over, when this provider takes over a running unit (omboard
    #: publishes this for a UnitClosed whose ``taken_over_by`` it knows): the takeover's rules apply.
    taken_over_from: Id | None = None

    @model_validator(mode="after")
    def _not_from_itself(self) -> UnitOpened:
        if self.taken_over_from == self.provider_id:
            raise ValueError("taken_over_from: a provider cannot take a unit over from itself")
        return self


class UnitClosed(Contract):
    provider_id: Id
    unit_id: Id
    closing_date: Date
    taken_over_by: Id | None = None

    @model_validator(mode="after")
    def _not_to_itself(self) -> UnitClosed:
        if self.taken_over_by == self.provider_id:
            raise ValueError("taken_over_by: a provider cannot take a unit over from itself")
        return self


class StaffJoined(Contract):
    provider_id: Id
    unit_id: Id
    start_date: Date
    person: Person


class StaffLeft(Contract):
    provider_id: Id
    person_id: HsaId
    end_date: Date


class StaffRoleChanged(Contract):
    provider_id: Id
    person_id: HsaId
    role: StaffRole
    licensed: Flag
    effective_date: Date


class RosterPerson(Person):
    unit_id: Id


class StaffRosterReported(Contract):
    """The HR system's whole list of the provider's staff on ``as_of``: who is new joins, who is
    missing leaves on ``as_of``, who changed role, licence or unit moves (see ``docs/events.md``)."""

    provider_id: Id
    as_of: Date
    persons: list[RosterPerson] = Field(max_length=MAX_PERSONS)

    @model_validator(mode="after")
    def _unique(self) -> StaffRosterReported:
        _persons_unique(self.persons, "persons")
        return self


class StaffRosterConfirmed(Contract):
    """An operator's word that a held roster (warning ``roster-held``) is right: its leavers leave."""

    provider_id: Id
    as_of: Date  # the held roster's date
    confirmed_by: Name
    #: Which roster (the ``roster-held`` warning and its task say): given, only that one is
    #: confirmed, so a later roster of the same date cannot be released unseen.
    roster: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None


class ContactAssigned(Contract):
    provider_id: Id
    contact: Contact


class ServiceReportSubmitted(Contract):
    provider_id: Id
    unit_id: Id
    month: Month
    submitted_on: Date


EventData = (
    ProviderStarted
    | OrgChangeRequested
    | SubcontractorStarted
    | SubcontractorEnded
    | UnitOpened
    | UnitClosed
    | StaffJoined
    | StaffLeft
    | StaffRoleChanged
    | StaffRosterReported
    | StaffRosterConfirmed
    | ContactAssigned
    | ServiceReportSubmitted
)

#: The one table from a CloudEvents ``type`` to the model of its ``data``.
EVENT_TYPES: dict[str, type[Contract]] = {model.__name__: model for model in EventData.__args__}  # type: ignore[attr-defined]
EventType = Literal[tuple(EVENT_TYPES)]  # type: ignore[valid-type]


class Envelope(Contract):
    """CloudEvents 1.0 attributes plus the typed ``data``."""

    specversion: Literal["1.0"]
    # Printable ASCII without spaces: they travel as Kafka headers and appear in logs.
    id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[!-~]+$")]
    source: Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[!-~]+$")]
    type: EventType
    time: Annotated[dt.datetime, BeforeValidator(_rfc3339_only)]
    subject: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[!-~]+$")] | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    data: EventData

    @field_validator("time")
    @classmethod
    def _time_has_zone(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone offset (RFC 3339)")
        _plannable(value.date())
        return value

    @model_validator(mode="before")
    @classmethod
    def _data_by_type(cls, raw: Any) -> Any:
        # Validate ``data`` against the model its ``type`` names, so an error points at the real
        # field instead of listing a failure for every member of the union.
        if isinstance(raw, dict) and raw.get("type") in EVENT_TYPES and isinstance(raw.get("data"), dict):
            model = EVENT_TYPES[raw["type"]]
            return {**raw, "data": model.model_validate(raw["data"])}
        return raw

    @model_validator(mode="after")
    def _data_matches_type(self) -> Envelope:
        if type(self.data).__name__ != self.type:
            raise ValueError(f"data does not match type {self.type}")
        return self

    @property
    def provider_id(self) -> str:
        return self.data.provider_id

    @property
    def dedup_key(self) -> str:
        """What identifies this event when it comes again: CloudEvents ids are unique per source.
        A JSON pair, not a joined string: source "hr" with id "visma/x" is not source "hr/visma"
        with id "x"."""
        return json.dumps([self.source, self.id], separators=(",", ":"))

    @property
    def anchor_date(self) -> dt.date:
        """The date an event's deadlines are counted from."""
        data = self.data
        for name in ("start_date", "effective_date", "closing_date", "end_date", "submitted_on", "as_of"):
            if hasattr(data, name):
                return getattr(data, name)
        return self.time.date()
