"""How contract models travel on Kafka.

Domain events use CloudEvents binary content mode: the attributes in ``ce_*`` headers and ``data``
as the JSON value. Internal messages (tasks, notifications) are the model's JSON. Every message
carries the correlation id of the event it came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from schemas.events import Envelope, FieldError, InvalidEvent, field_errors, parse_event

CORRELATION_HEADER = "omboard_correlation_id"
_CE_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "subject")

Headers = list[tuple[str, bytes]]
M = TypeVar("M", bound=BaseModel)


def headers_dict(headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes] | None) -> dict[str, str]:
    if not headers:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {key: (value or b"").decode("utf-8", "replace") for key, value in pairs}


def event_to_kafka(event: Envelope, correlation_id: str | None = None) -> tuple[bytes, bytes, Headers]:
    attributes = event.model_dump(mode="json", exclude={"data", "datacontenttype"}, exclude_none=True)
    headers: Headers = [(f"ce_{name}", str(attributes[name]).encode()) for name in _CE_ATTRIBUTES if name in attributes]
    headers.append(("content-type", b"application/json"))
    headers.append((CORRELATION_HEADER, (correlation_id or event.id).encode()))
    return event.provider_id.encode(), event.data.model_dump_json().encode(), headers


def event_from_kafka(value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | None) -> Envelope:
    """Rebuild and validate the envelope; raises InvalidEvent naming what is wrong."""
    attributes = {key[3:]: text for key, text in headers_dict(headers).items() if key.startswith("ce_")}
    if "type" not in attributes:
        raise InvalidEvent([FieldError(field="ce_type", reason="header missing: not a CloudEvent in binary mode")])
    try:
        data = json.loads(value) if value else None
    except ValueError as error:
        raise InvalidEvent([FieldError(field="data", reason=f"is not valid JSON: {error}")]) from None
    return parse_event({**attributes, "data": data})


def correlation_id(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    return headers_dict(headers).get(CORRELATION_HEADER)


def model_to_kafka(model: BaseModel, key: str, correlation: str | None) -> tuple[bytes, bytes, Headers]:
    headers: Headers = [("content-type", b"application/json")]
    if correlation:
        headers.append((CORRELATION_HEADER, correlation.encode()))
    return key.encode(), model.model_dump_json().encode(), headers


def model_from_kafka(model: type[M], value: bytes | None) -> M:
    try:
        return model.model_validate_json(value or b"")
    except ValidationError as error:
        raise InvalidEvent(field_errors(error)) from None
