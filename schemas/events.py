"""Event contract v1: a CloudEvents 1.0 envelope around one pydantic model per event type.

Upstream systems send the envelope as JSON (HTTP, CLI); on Kafka it travels in binary content
mode: attributes in ``ce_*`` headers, ``data`` as the JSON value (see ``schemas.wire``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.identifiers import HsaId, OrgNumber


class Contract(BaseModel):
    """Base of every contract model: immutable, unknown fields rejected, ISO dates only."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


Id = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Month = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]

Regi = Literal["egen", "privat"]
Service = Literal["hemtjanst", "sarskilt_boende", "korttid", "lss"]
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
    hsl: bool
    uses_flexite: bool

    @field_validator("services")
    @classmethod
    def _services_unique(cls, services: list[str]) -> list[str]:
        if len(set(services)) != len(services):
            raise ValueError("lists a service twice")
        return services


class Unit(Contract):
    id: Id
    name: Name
    staff_count: int = Field(ge=0, le=100_000)
    field_groups: list[Name] = Field(default_factory=list)


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
    licensed: bool


class Subcontractor(Contract):
    id: Id
    name: Name
    org_number: OrgNumber


class ProviderStarted(Contract):
    provider: Provider
    start_date: dt.date
    takeover_from: Id | None = None
    units: list[Unit] = Field(min_length=1)
    contacts: list[Contact] = Field(default_factory=list)

    @property
    def provider_id(self) -> str:
        return self.provider.id

    @model_validator(mode="after")
    def _consistent(self) -> ProviderStarted:
        unit_ids = [unit.id for unit in self.units]
        if len(set(unit_ids)) != len(unit_ids):
            raise ValueError("units: two units share an id")
        for contact in self.contacts:
            if contact.unit_id is not None and contact.unit_id not in unit_ids:
                raise ValueError(f"contacts: unit_id {contact.unit_id!r} is not one of the provider's units")
        if self.takeover_from == self.provider.id:
            raise ValueError("takeover_from: a provider cannot take over from itself")
        return self


class OrgChangeRequested(Contract):
    provider_id: Id
    change_id: Id
    size: Literal["small", "large"]
    decided_on: dt.date
    effective_date: dt.date
    description: Annotated[str, Field(min_length=1, max_length=2000)]
    unit_ids: list[Id] = Field(default_factory=list)


class SubcontractorStarted(Contract):
    provider_id: Id
    subcontractor: Subcontractor
    start_date: dt.date
    staff_count: int = Field(ge=0, le=100_000)


class SubcontractorEnded(Contract):
    provider_id: Id
    subcontractor_id: Id
    end_date: dt.date


class UnitClosed(Contract):
    provider_id: Id
    unit_id: Id
    closing_date: dt.date
    taken_over_by: Id | None = None


class StaffJoined(Contract):
    provider_id: Id
    unit_id: Id
    start_date: dt.date
    person: Person


class StaffLeft(Contract):
    provider_id: Id
    person_id: HsaId
    end_date: dt.date


class StaffRoleChanged(Contract):
    provider_id: Id
    person_id: HsaId
    role: StaffRole
    licensed: bool
    effective_date: dt.date


class ContactAssigned(Contract):
    provider_id: Id
    contact: Contact


class ServiceReportSubmitted(Contract):
    provider_id: Id
    unit_id: Id
    month: Month
    submitted_on: dt.date


EventData = (
    ProviderStarted
    | OrgChangeRequested
    | SubcontractorStarted
    | SubcontractorEnded
    | UnitClosed
    | StaffJoined
    | StaffLeft
    | StaffRoleChanged
    | ContactAssigned
    | ServiceReportSubmitted
)

#: The one table from a CloudEvents ``type`` to the model of its ``data``.
EVENT_TYPES: dict[str, type[Contract]] = {model.__name__: model for model in EventData.__args__}  # type: ignore[attr-defined]
EventType = Literal[tuple(EVENT_TYPES)]  # type: ignore[valid-type]


class Envelope(Contract):
    """CloudEvents 1.0 attributes plus the typed ``data``."""

    specversion: Literal["1.0"]
    id: Annotated[str, Field(min_length=1, max_length=200)]
    source: Annotated[str, Field(min_length=1, max_length=500)]
    type: EventType
    time: dt.datetime
    subject: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    data: EventData

    @field_validator("time")
    @classmethod
    def _time_has_zone(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone offset (RFC 3339)")
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
    def anchor_date(self) -> dt.date:
        """The date an event's deadlines are counted from."""
        data = self.data
        for name in ("start_date", "effective_date", "closing_date", "end_date", "submitted_on"):
            if hasattr(data, name):
                return getattr(data, name)
        return self.time.date()


class FieldError(Contract):
    field: str
    reason: str


class InvalidEvent(ValueError):
    """An event that failed validation; ``errors`` name each field and reason, never the value."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{error.field}: {error.reason}" for error in errors))


def field_errors(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[FieldError]:
    """Turn a pydantic error into field/reason pairs. Inputs are left out: they may be personal."""
    result = []
    for item in error.errors(include_input=False, include_url=False):
        location = ".".join(str(part) for part in (*prefix, *item["loc"])) or "(event)"
        reason = item["msg"].removeprefix("Value error, ")
        result.append(FieldError(field=location, reason=reason))
    return result


def parse_event(raw: Any) -> Envelope:
    """Validate a structured-mode CloudEvent (a dict or JSON text); errors name every bad field."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError as error:
            raise InvalidEvent([FieldError(field="(body)", reason=f"is not valid JSON: {error}")]) from None
    if not isinstance(raw, dict):
        raise InvalidEvent([FieldError(field="(body)", reason="must be a JSON object")])
    errors: list[FieldError] = []
    data_model = EVENT_TYPES.get(raw.get("type"))  # type: ignore[arg-type]
    if data_model is not None and isinstance(raw.get("data"), dict):
        try:
            raw = {**raw, "data": data_model.model_validate(raw["data"])}
        except ValidationError as error:
            errors += field_errors(error, prefix=("data",))
            raw = {**raw, "data": None}
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as error:
        # When data already failed on its own, the envelope's second opinion on it adds nothing.
        errors += [e for e in field_errors(error) if not (errors and e.field.split(".")[0] == "data")]
        raise InvalidEvent(errors) from None
    if errors:
        raise InvalidEvent(errors)
    return envelope
