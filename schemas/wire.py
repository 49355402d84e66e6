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

from schemas.events import Envelope
from schemas.parsing import FieldError, InvalidEvent, field_errors, parse_event

CORRELATION_HEADER = "omboard_correlation_id"

#: The largest record omboard writes: Faust's producer refuses more (producer_max_request_size),
#: Apache Kafka's message.max.bytes is a little above it (1,048,588) and Tansu has no limit.
MAX_RECORD_BYTES = 1_000_000
_CE_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "subject")

Headers = list[tuple[str, bytes]]
M = TypeVar("M", bound=BaseModel)


def headers_dict(headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes] | None) -> dict[str, str]:
    if not headers:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {key: (value or b"").decode("utf-8", "replace") for key, value in pairs}


def record_bytes(key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]] = ()) -> int:
    """A record's size as a producer counts it against its limit, or a little more: the batch
    header (61 bytes) and the varints of a record and of each header at their widest."""
    size = 61 + 21 + len(key or b"") + len(value or b"")
    return size + sum(10 + len(name.encode()) + len(header or b"") for name, header in headers)


class EventTooLarge(InvalidEvent):
    """A valid event whose Kafka record would be over MAX_RECORD_BYTES: it could never be delivered."""


def event_to_kafka(event: Envelope, correlation_id: str | None = None) -> tuple[bytes, bytes, Headers]:
    """The event's key, value and headers; EventTooLarge if that record could not be produced."""
    attributes = event.model_dump(mode="json", exclude={"data", "datacontenttype"}, exclude_none=True)
    headers: Headers = [(f"ce_{name}", str(attributes[name]).encode()) for name in _CE_ATTRIBUTES if name in attributes]
    headers.append(("content-type", b"application/json"))
    headers.append((CORRELATION_HEADER, (correlation_id or event.id).encode()))
    # What was sent, not every omitted field written out as null: the record stays as small as
    # the event that was accepted (a 919 KB event became a 1,021,872-byte record with the nulls).
    key, value = event.provider_id.encode(), event.data.model_dump_json(exclude_unset=True).encode()
    size = record_bytes(key, value, headers)
    if size > MAX_RECORD_BYTES:
        raise EventTooLarge([FieldError(
            field="(event)", reason=f"would be a Kafka record of {size:,} bytes, over the {MAX_RECORD_BYTES:,} one may hold",
        )])  # fmt: skip
    return key, value, headers


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
