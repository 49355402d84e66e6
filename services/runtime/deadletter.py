"""Dead letters: what a service could not process, kept byte for byte with the reason beside it.

A batch is committed once handled: a message that could not be handled is in its dead letter, or
nowhere.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from schemas.topics import dead_letter_topic
from schemas.wire import MAX_RECORD_BYTES, record_bytes
from services.runtime import metrics
from services.runtime.streams import Outgoing, Received, RecordTooLarge, one_at_a_time

log = logging.getLogger(__name__)
T = TypeVar("T")

# Headers are stored with every record and read by people: keep a reason short. Callers must
# not put personal identity numbers in it (pydantic errors quote the input: pass a summary).
MAX_REASON = 1000


def dead_letter(service: str, received: Received, reason: str, at: dt.datetime | None = None) -> Outgoing:
    """The dead-letter record for ``received``, to be produced with the rest of its batch."""
    at = at or dt.datetime.now(dt.UTC)  # wall clock: when it happened, not domain time
    provenance = {
        "dlq_reason": reason[:MAX_REASON],
        "dlq_service": service,
        "dlq_topic": received.topic,
        "dlq_partition": str(received.partition),
        "dlq_offset": str(received.offset),
        "dlq_at": at.isoformat(),
    }
    headers = [*received.headers, *((name, value.encode()) for name, value in provenance.items())]
    value = received.value
    if record_bytes(received.key, value, headers) > MAX_RECORD_BYTES:
        # The dead letter must fit where the original barely did: leave the value out and say
        # where it still is (the provenance headers), rather than fail to record anything.
        omitted = f"{len(value or b''):,} bytes, too large to copy; read it at dlq_topic/dlq_partition/dlq_offset"
        headers = [*headers, ("dlq_value_omitted", omitted.encode())]
        value = None
        if record_bytes(received.key, value, headers) > MAX_RECORD_BYTES:  # huge headers: keep ours only
            headers = [(name, value_) for name, value_ in headers if name.startswith("dlq_")]
    return Outgoing(dead_letter_topic(service), received.key, value, headers)


def reason_of(error: BaseException) -> str:
    """A dead letter's reason: the error's type and message. Ours name fields and ids, never
    values (InvalidEvent, UnknownProvider); anything else is a bug, named so the dead letter can be
    replayed once it is fixed."""
    return f"{type(error).__name__}: {error}"


def handle_or_dead_letter(
    service: str, received: Received, handle: Callable[[Received], T], type_label: str
) -> tuple[T, None] | tuple[None, Outgoing]:
    """Run ``handle`` on one message with a consuming service's bookkeeping: its age and
    processing time, consumed or failed by ``type_label``, and on any error a dead letter to
    produce with the rest of the batch (the batch is committed either way)."""
    metrics.observe_age(service, received.topic, received.timestamp, time.time())
    started = time.perf_counter()
    try:
        result = handle(received)
    except Exception as error:  # noqa: BLE001 - whatever it is, it is recorded and the agent goes on
        log.warning("%s: dead-lettering %s[%d]@%d: %s", service, received.topic, received.partition,
                    received.offset, type(error).__name__)
        metrics.EVENTS_FAILED.labels(service, type_label).inc()
        if isinstance(error, RecordTooLarge):
            metrics.RECORDS_TOO_LARGE.labels(service).inc()
        metrics.DEAD_LETTERS.labels(service, received.topic).inc()
        return None, dead_letter(service, received, reason_of(error))
    metrics.EVENTS_CONSUMED.labels(service, type_label).inc()
    metrics.PROCESSING_SECONDS.labels(service).observe(time.perf_counter() - started)
    return result, None


async def handle_each(
    service: str, batch: list[Received], handle: Callable[[Received], T], type_label: Callable[[Received], str],
    dead_letters: list[Outgoing],
) -> AsyncIterator[tuple[Received, T]]:
    """The batch loop's middle: each message of ``batch`` through ``handle_or_dead_letter``, with a
    turn of the event loop before each (``one_at_a_time``). Yields each message handled with its
    result; the dead letter of each that raised goes to ``dead_letters``."""
    async for received in one_at_a_time(batch):
        result, rejected = handle_or_dead_letter(service, received, handle, type_label(received))
        if rejected is not None:
            dead_letters.append(rejected)
        else:
            yield received, result  # type: ignore[misc]
