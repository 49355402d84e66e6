"""Raw messages in, raw messages out, a batch at a time.

Batching is the performance design (DESIGN.md): an agent takes up to a few hundred events, hands
each one to the domain, and produces everything the batch yields as concurrent producer futures
gathered once per batch (about 5x the throughput of one awaited send per message).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from aiokafka.errors import KafkaError

from schemas.wire import MAX_RECORD_BYTES, record_bytes
from services.runtime import metrics

log = logging.getLogger(__name__)

Header = tuple[str, bytes | None]  # Kafka allows a null header value
Headers = tuple[Header, ...]



class RecordTooLarge(ValueError):
    """What would be written does not fit in one Kafka record; names what it is, never its content."""


def check_fits(what: str, key: bytes | None, value: bytes | None, headers: Sequence[Header] = ()) -> bytes | None:
    """``value`` when the record fits; else RecordTooLarge, so the message that caused it is
    dead-lettered instead of the batch failing on the send and waiting forever for a broker that
    will never take it)."""
    size = record_bytes(key, value, headers)
    if size > MAX_RECORD_BYTES:
        raise RecordTooLarge(f"{what} would be a record of {size:,} bytes, over the {MAX_RECORD_BYTES:,} a Kafka record may hold")
    return value


@dataclass(frozen=True)
class Received:
    """One consumed Kafka message, exactly as it was on the wire."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp: float | None = None  # seconds since the epoch, as the producer or broker stamped it

    @classmethod
    def from_record(cls, record: Any) -> Received:
        """From an aiokafka ConsumerRecord (timestamps in milliseconds there)."""
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple((str(k), v) for k, v in (record.headers or ())),
            timestamp=record.timestamp / 1000 if record.timestamp is not None and record.timestamp >= 0 else None,
        )

    def header(self, name: str) -> bytes | None:
        """The last value of a header (Kafka allows repeats; the newest one wins)."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None


class Outgoing(NamedTuple):
    """A message to produce: already-encoded key and value; ``partition`` None lets the producer's
    partitioner choose by key (what every topic here wants, keyed by provider id)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header] = ()
    partition: int | None = None

    def checked(self) -> Outgoing:
        """Itself, or RecordTooLarge when the producer would refuse it."""
        check_fits(f"a message to {self.topic}", self.key, self.value, self.headers)
        return self


async def one_at_a_time(batch: list[Received]) -> AsyncIterator[Received]:
    """Each message of a batch, with a turn of the event loop before each one.

    Health checks, metrics and the status API share the loop with the agents: a burst of large
    events planned without a pause left /readyz, /healthz and the status API unanswered for
    minutes. A turn costs about a microsecond.
    """
    for received in batch:
        await asyncio.sleep(0)
        yield received


#: Seconds between attempts to produce a batch the broker refused: doubling up to the last.
RETRY_FIRST, RETRY_MAX = 0.5, 30.0


class Producing(Protocol):
    """What ``send_all`` needs of an app: its id (a metric label) and a started aiokafka producer."""

    id: str
    producer: Any


#: Why a worker's producing is stuck, per app: readiness reports it (services/runtime/health.py).
_STALLED: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def stalled(app: Any) -> str | None:
    """Why ``app`` holds its partition right now (it cannot produce, or cannot mail), or None."""
    return _STALLED.get(app)


def mark_stalled(app: Any, reason: str | None) -> None:
    """Say why ``app`` holds its partition (readiness reports it); None: it goes on again."""
    if reason is None:
        _STALLED.pop(app, None)
    else:
        _STALLED[app] = reason


async def send_all(
    app: Producing, messages: Iterable[Outgoing], *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> list[Any]:
    """Produce every message, then wait for all deliveries at once; returns their RecordMetadata.

    Each ``send`` returns once aiokafka has queued the message; awaiting the futures one by one
    would serialize the batch on broker round trips, so they are gathered once. When this
    returns, the broker has every message (acks=all): the barrier before a batch is committed.

    A batch the broker refuses is produced again, with back-off, until it is taken: raising would
    leave the batch neither done nor dead-lettered. Meanwhile the partition
    stands still, and readiness says why (``stalled``). A retry may deliver some messages twice;
    every consumer de-duplicates by id.
    """
    messages = list(messages)
    if not messages:
        return []
    delay = RETRY_FIRST
    while True:
        try:
            delivered = await _produce(app, messages)
        except KafkaError as error:
            reason = f"cannot produce {len(messages)} message(s) to {messages[0].topic}: {type(error).__name__}"
            mark_stalled(app, reason)
            metrics.PRODUCE_RETRIES.labels(app.id).inc()
            log.error("%s; trying again in %.1fs, the batch waits", reason, delay)
            await sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            continue
        mark_stalled(app, None)
        return delivered


async def queue(app: Producing, message: Outgoing) -> Any:
    """Hand ``message`` to the producer; returns the future of its delivery."""
    return await app.producer.send(message.topic, message.value, message.key, message.partition, None,
                                   list(message.headers) or None)


async def _produce(app: Producing, messages: list[Outgoing]) -> list[Any]:
    futures = [await queue(app, message) for message in messages]
    return list(await asyncio.gather(*futures))
