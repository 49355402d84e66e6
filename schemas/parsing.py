"""Validating an event where it enters: ``parse_event`` turns a structured-mode CloudEvent (a dict
or JSON text) into an ``Envelope``, or raises ``InvalidEvent`` naming every bad field and the
reason, never the value (it may be personal)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from schemas.events import _CONTROL, EVENT_TYPES, Contract, Envelope


class FieldError(Contract):
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def described(errors: Iterable[FieldError]) -> str:
    """Errors on one line, as logs, dead letters and the CLI write them."""
    return "; ".join(map(str, errors))


class InvalidEvent(ValueError):
    """An event that failed validation; ``errors`` name each field and reason, never the value."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__(described(errors))


def _location_part(part: str | int) -> str:
    # An unknown key is named as sent; one that is empty or holds white space or control characters
    # is quoted and escaped, so that an error never names "" and never carries a CR/LF into a log line.
    text = str(part)
    if isinstance(part, str) and (not part or any(char.isspace() or _CONTROL.match(char) for char in part)):
        return json.dumps(part)
    return text


def field_name(location: Iterable[str | int]) -> str:
    """How an error names a field: the parts of its location joined with dots ("" if none)."""
    return ".".join(_location_part(part) for part in location)


def field_errors(error: ValidationError, prefix: tuple[str | int, ...] = (), whole: str = "(event)") -> list[FieldError]:
    """Turn a pydantic error into field/reason pairs (``whole`` names a problem with no field).
    Inputs are left out: they may be personal."""
    result = []
    for item in error.errors(include_input=False, include_url=False):
        location = field_name((*prefix, *item["loc"])) or whole
        reason = item["msg"].removeprefix("Value error, ")
        result.append(FieldError(field=location, reason=reason))
    return result


def parse_event(raw: Any) -> Envelope:
    """Validate a structured-mode CloudEvent (a dict or JSON text); errors name every bad field."""
    try:
        return _parse(raw)
    except RecursionError:  # JSON nested thousands deep: refused, not a crash
        raise InvalidEvent([FieldError(field="(body)", reason="nests too deeply")]) from None


def _parse(raw: Any) -> Envelope:
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError as error:
            raise InvalidEvent([FieldError(field="(body)", reason=f"is not valid JSON: {error}")]) from None
    if not isinstance(raw, dict):
        raise InvalidEvent([FieldError(field="(body)", reason="must be a JSON object")])
    event_type = raw.get("type")
    if "type" in raw and (not isinstance(event_type, str) or event_type not in EVENT_TYPES):
        # Named as what it is, not as errors in the fields of some other type's data.
        reason = "is not a known event type" if isinstance(event_type, str) else "must be a string"
        errors = [FieldError(field="type", reason=f"{reason}; one of {', '.join(EVENT_TYPES)}")]
        raise InvalidEvent(errors + _attribute_errors(raw))
    errors: list[FieldError] = []
    data_model = EVENT_TYPES.get(event_type)  # type: ignore[arg-type]
    if data_model is not None and "data" in raw and not isinstance(raw["data"], dict):
        # Not one error per member of the union, named after pydantic's internals.
        errors.append(FieldError(field="data", reason=f"must be a JSON object, a {event_type}"))
        raw = {**raw, "data": None}
    elif data_model is not None and isinstance(raw.get("data"), dict):
        try:
            raw = {**raw, "data": data_model.model_validate(raw["data"])}
        except ValidationError as error:
            errors += [_named(e) for e in field_errors(error, prefix=("data",))]
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


_CROSS_FIELD = re.compile(r"^([a-z_]+(?:\.\d+\.[a-z_]+)*): (.+)$")


def _named(error: FieldError) -> FieldError:
    """A rule across fields (``units: two units share an id``, of the data or of a part of it such
    as its ``provider``) is named by the field it is about."""
    match = _CROSS_FIELD.match(error.reason) if error.field.split(".")[0] == "data" else None
    return FieldError(field=f"{error.field}.{match.group(1)}", reason=match.group(2)) if match else error


def _attribute_errors(raw: dict[str, Any]) -> list[FieldError]:
    """What is wrong with the envelope's other attributes: checked with a stand-in type, their
    data left out (it cannot be judged without a type)."""
    stand_in = {**{key: value for key, value in raw.items() if key != "data"}, "type": next(iter(EVENT_TYPES))}
    try:
        Envelope.model_validate(stand_in)
    except ValidationError as error:
        return [e for e in field_errors(error) if e.field.split(".")[0] not in ("type", "data")]
    return []
