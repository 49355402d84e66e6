"""notifier: keeps providers' contacts, and mails each notification request once.

Two agents, each ``concurrency=1``, each catching per message so one bad message never stops it:

- ``notifier-contacts`` reads ``omboard.events`` in batches and folds ProviderStarted and
  ContactAssigned into the ``contacts`` table (provider id -> ProviderContacts JSON).
- ``notifier-mail`` reads ``omboard.notifications`` one request at a time: decode, skip what the
  ``sent`` table (notification id -> DeliveryRecord JSON) says was delivered, resolve recipients,
  compose, send over SMTP with retries, record in ``sent``, publish the DeliveryRecord on
  ``omboard.notifications.sent``. Undecodable requests and undeliverable mail are dead-lettered.

At-least-once: the ``sent`` record is flushed to its changelog right after the SMTP server took
the mail, before the next request, so a worker killed at any point re-sends at most the one mail
in flight (with the same Message-ID). A request already delivered publishes its stored
DeliveryRecord again instead of mailing: a crash between recording and publishing loses no record.

``build(settings)`` returns the app; ``omboard worker notifier`` runs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

import faust

from schemas.notifications import DeliveryRecord, NotificationRequest
from schemas.topics import EVENTS, NOTIFICATIONS, NOTIFICATIONS_SENT
from schemas.wire import correlation_id, event_from_kafka, model_from_kafka, model_to_kafka
from services.notifier import smtp
from services.notifier.domain import (
    ProviderContacts,
    compose,
    delivery_record,
    fold,
    matters,
    recipients,
    should_send,
)
from services.runtime.clock import Clock, clock_from_settings
from services.runtime.deadletter import dead_letter
from services.runtime.faust_app import create_app
from services.runtime.settings import Settings
from services.runtime.streams import Outgoing, Received, batches, send_all

log = logging.getLogger(__name__)

SERVICE = "notifier"
BATCH_SIZE = 500
BATCH_WITHIN = 0.05  # seconds: a lone event waits at most this long for company
#: SMTP attempts per mail, and the pause before the second (doubling after each further failure).
SEND_ATTEMPTS = 4
SEND_BACKOFF = 1.0


def _reason(error: BaseException) -> str:
    # InvalidEvent names fields and reasons, never values; other errors are ours.
    return f"{type(error).__name__}: {error}"


def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    send: Callable[[EmailMessage], Awaitable[smtp.Sent]] | None = None,
    attempts: int = SEND_ATTEMPTS,
    backoff: float = SEND_BACKOFF,
    **app_options,
) -> faust.App:
    """The notifier's Faust app. ``send`` replaces SMTP (tests); ``app_options`` go to create_app."""
    started = time.monotonic()
    app = create_app(SERVICE, settings, **app_options)
    clock = clock or clock_from_settings(settings.clock_file, settings.timezone)
    send_once = send or (lambda message: smtp.send(message, settings))

    events_in = app.topic(EVENTS, key_serializer="raw", value_serializer="raw")
    requests_in = app.topic(NOTIFICATIONS, key_serializer="raw", value_serializer="raw")
    # Keyed by provider id like the events: use_partitioner puts each key's changelog record on
    # the partition that provider's events and notification requests use.
    # (key_type/value_type bytes: Faust stores them with the raw codec.)
    contacts = app.Table("contacts", key_type=bytes, value_type=bytes, use_partitioner=True)
    # Keyed by notification id but written while handling its request (keyed by provider id):
    # the changelog record goes to the request's partition, so it recovers where it is read.
    # It is written only in the per-message mail agent, where Faust knows the current event.
    sent = app.Table("sent", key_type=bytes, value_type=bytes)

    def known_contacts(provider_id: str) -> ProviderContacts | None:
        raw = contacts.get(provider_id.encode())
        return ProviderContacts.model_validate_json(raw) if raw else None

    def remember_contacts(received: Received) -> None:
        event = event_from_kafka(received.value, received.headers)
        if not matters(event):
            return
        known = known_contacts(event.provider_id)
        updated = fold(known, event)
        if updated is not None and updated != known:
            contacts[event.provider_id.encode()] = updated.model_dump_json().encode()

    @app.agent(events_in, concurrency=1, name="notifier-contacts")
    async def keep_contacts(stream):
        async for batch in batches(stream, BATCH_SIZE, BATCH_WITHIN):
            rejected: list[Outgoing] = []
            for received in batch:
                try:
                    remember_contacts(received)
                except Exception as error:  # noqa: BLE001 - recorded, and the agent goes on
                    log.warning("notifier: dead-lettering %s[%d]@%d: %s", received.topic, received.partition,
                                received.offset, type(error).__name__)
                    rejected.append(dead_letter(SERVICE, received, _reason(error)))
            await send_all(app, rejected)

    def record_message(record: DeliveryRecord, provider_id: str, correlation: str | None) -> Outgoing:
        return Outgoing(NOTIFICATIONS_SENT, *model_to_kafka(record, provider_id, correlation))

    async def deliver(received: Received) -> list[Outgoing]:
        """Everything one notification request leads to, as messages still to produce."""
        try:
            request = model_from_kafka(NotificationRequest, received.value)
        except Exception as error:  # noqa: BLE001
            return [dead_letter(SERVICE, received, f"not a NotificationRequest: {_reason(error)}")]
        correlation = correlation_id(received.headers) or request.correlation_id
        key = request.id.encode()
        raw = sent.get(key)
        previous = DeliveryRecord.model_validate_json(raw) if raw else None
        if not should_send(previous):
            assert previous is not None
            log.info("notifier: %s already sent as %s; not mailing again", request.id, previous.message_id)
            return [record_message(previous, request.provider_id, correlation)]

        known = known_contacts(request.provider_id)
        to = recipients(known.contacts if known else [], request, settings)
        message = compose(request, to, settings)
        outgoing: list[Outgoing] = []
        try:
            result, tries = await smtp.send_with_retries(send_once, message, attempts=attempts, backoff=backoff)
        except smtp.DeliveryError as error:
            kind = "temporary" if error.temporary else "permanent"
            tries = getattr(error, "attempts", 1)
            reason = f"{kind} SMTP failure after {tries} attempt(s): {error.reason}"
            log.warning("notifier: %s not delivered: %s", request.id, reason)
            record = delivery_record(request, message, to, "failed", clock.now(), reason)
            outgoing.append(dead_letter(SERVICE, received, reason))
        else:
            refused = "; ".join(f"{address}: {reply}" for address, reply in result.refused.items())
            record = delivery_record(request, message, to, "sent", clock.now(), f"refused: {refused}" if refused else None)
            log.info("notifier: sent %s (%s) after %d attempt(s)", request.id, request.kind, tries)
        # Record the outcome and wait until the changelog has it, before anything else happens.
        sent[key] = record.model_dump_json().encode()
        await app.producer.flush()
        return [record_message(record, request.provider_id, correlation), *outgoing]

    @app.agent(requests_in, concurrency=1, name="notifier-mail")
    async def mail(stream):
        # One request at a time: each send is recorded before the next one starts, and the
        # ``sent`` table's changelog goes to the partition of the request being handled.
        async for event in stream.events():
            received = Received.from_faust_event(event)
            try:
                outgoing = await deliver(received)
            except Exception as error:  # noqa: BLE001 - recorded, and the agent goes on
                log.exception("notifier: failed on %s[%d]@%d", received.topic, received.partition, received.offset)
                outgoing = [dead_letter(SERVICE, received, f"notifier failed: {_reason(error)}")]
            try:
                await send_all(app, outgoing)
            except Exception:  # noqa: BLE001 - the producer gave up; keep the agent alive
                log.exception("notifier: could not produce the outcome of %s[%d]@%d",
                              received.topic, received.partition, received.offset)

    @app.on_partitions_assigned.connect
    async def _assigned(sender: object, assigned: set, **_: object) -> None:
        log.info("notifier: assigned %d partition(s) %.2fs after start", len(assigned), time.monotonic() - started)

    app.service_agents = [keep_contacts, mail]
    return app
