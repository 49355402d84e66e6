"""Publishing validated events to ``omboard.events``: one encoding, two clients.

``EventPublisher`` (aiokafka) serves the HTTP API and the benchmark; ``BlockingEventPublisher``
(kafka-python) serves the CLI. Both encode through ``encode_event`` (CloudEvents binary mode via
``schemas.wire.event_to_kafka``, keyed by provider id), produce with ``acks="all"`` and return only
after the broker acknowledged. A broker that cannot be reached or does not acknowledge in time
raises ``KafkaUnavailable``; nothing else about Kafka leaks to the callers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.events import Envelope
from schemas.topics import EVENTS
from schemas.wire import Headers, event_to_kafka
from services.runtime.broker import aiokafka_client_config, bootstrap_servers, kafka_client_config
from services.runtime.settings import Settings

log = logging.getLogger(__name__)

#: How long one publish may wait for metadata and the broker's acknowledgement.
DEFAULT_TIMEOUT = 10.0


class KafkaUnavailable(RuntimeError):
    """Kafka could not be reached or did not acknowledge: the event was not (known to be) published."""


@dataclass(frozen=True)
class OutgoingEvent:
    """One event as it goes on the wire."""

    topic: str
    key: bytes
    value: bytes
    headers: Headers
    event_id: str
    correlation_id: str


def encode_event(event: Envelope, correlation_id: str | None = None, topic: str = EVENTS) -> OutgoingEvent:
    """Binary content mode: ``ce_*`` headers, ``data`` as the value, the provider id as the key."""
    key, value, headers = event_to_kafka(event, correlation_id)
    return OutgoingEvent(
        topic=topic,
        key=key,
        value=value,
        headers=headers,
        event_id=event.id,
        correlation_id=correlation_id or event.id,
    )


class EventPublisher:
    """An aiokafka producer for domain events; ``start`` may be retried after a failure."""

    def __init__(
        self,
        bootstrap: str,
        settings: Settings | None = None,
        *,
        topic: str = EVENTS,
        timeout: float = DEFAULT_TIMEOUT,
        client_id: str = "omboard-intake",
        **producer_options: Any,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout = timeout
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers(bootstrap),
            "client_id": client_id,
            "acks": "all",
            "request_timeout_ms": int(timeout * 1000),
            **aiokafka_client_config(settings),
            **producer_options,
        }
        self._producer: Any = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        if self._producer is not None:
            return
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        producer = AIOKafkaProducer(**self._config)
        try:
            await producer.start()
        except (KafkaError, OSError) as error:
            await _quietly_stop(producer)
            raise KafkaUnavailable(f"cannot connect to Kafka at {self.bootstrap}: {error}") from error
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _quietly_stop(producer)

    async def publish(self, event: Envelope, correlation_id: str | None = None) -> OutgoingEvent:
        """Send one event and wait for the broker's acknowledgement."""
        return (await self.publish_many([event], correlation_id))[0]

    async def publish_many(self, events: Sequence[Envelope], correlation_id: str | None = None) -> list[OutgoingEvent]:
        """Send every event at once (one provider's stay in order) and wait for all acknowledgements."""
        from aiokafka.errors import KafkaError

        producer = self._producer
        if producer is None:
            raise KafkaUnavailable(f"not connected to Kafka at {self.bootstrap}")
        outgoing = [encode_event(event, correlation_id, self.topic) for event in events]
        try:
            futures = [
                await producer.send(message.topic, message.value, key=message.key, headers=message.headers)
                for message in outgoing
            ]
            await asyncio.gather(*futures)
        except (KafkaError, OSError) as error:
            raise KafkaUnavailable(f"Kafka at {self.bootstrap} did not accept the event: {error!r}") from error
        return outgoing

    async def __aenter__(self) -> EventPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def _quietly_stop(producer: Any) -> None:
    try:
        await producer.stop()
    except Exception:
        log.debug("stopping the Kafka producer failed", exc_info=True)


class BlockingEventPublisher:
    """A kafka-python producer for the CLI: publish a batch, flush, confirm every acknowledgement."""

    def __init__(
        self,
        bootstrap: str,
        settings: Settings | None = None,
        *,
        topic: str = EVENTS,
        timeout: float = DEFAULT_TIMEOUT,
        client_id: str = "omboard-cli",
    ) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.bootstrap = bootstrap
        self.topic = topic
        self.timeout = timeout
        timeout_ms = int(timeout * 1000)
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap_servers(bootstrap),
                client_id=client_id,
                acks="all",
                # One request in flight: a retried batch cannot overtake the next one, so one
                # provider's events keep their order.
                max_in_flight_requests_per_connection=1,
                api_version_auto_timeout_ms=timeout_ms,
                request_timeout_ms=timeout_ms,
                max_block_ms=timeout_ms,
                delivery_timeout_ms=timeout_ms * 2,
                **kafka_client_config(settings),
            )
        except (KafkaError, OSError) as error:
            raise KafkaUnavailable(f"cannot connect to Kafka at {bootstrap}: {error!r}") from error

    def publish_all(self, events: Iterable[Envelope], correlation_id: str | None = None) -> list[OutgoingEvent]:
        """Send the events in order, flush, and return them once every one was acknowledged."""
        from kafka.errors import KafkaError

        sent: list[tuple[OutgoingEvent, Any]] = []
        try:
            for event in events:
                message = encode_event(event, correlation_id, self.topic)
                future = self._producer.send(message.topic, value=message.value, key=message.key, headers=message.headers)
                sent.append((message, future))
            self._producer.flush(timeout=self.timeout * 2)
            for _, future in sent:
                future.get(timeout=self.timeout)
        except (KafkaError, OSError) as error:
            raise KafkaUnavailable(f"Kafka at {self.bootstrap} did not accept the events: {error!r}") from error
        return [message for message, _ in sent]

    def close(self) -> None:
        self._producer.close(timeout=self.timeout)

    def __enter__(self) -> BlockingEventPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
