"""notifier: keeps providers' contacts, and mails each notification request once.

Two agents, each ``concurrency=1``, each catching per message so one bad message never stops it:

- ``notifier-contacts`` reads ``omboard.events`` in batches and folds ProviderStarted and
  ContactAssigned into the ``contacts`` table (provider id -> ProviderContacts JSON).
- ``notifier-mail`` reads ``omboard.notifications`` one request at a time: decode, route each
  task line to its recipients (``services.domain.mail.route``: one mail per distinct recipient
  with that recipient's lines), and for each mail (``services.notifier.delivery.deliver``): skip
  it if the ``sent`` table says it was delivered, else compose it from the templates, send it over
  SMTP with retries, record it in ``sent``; and publish each DeliveryRecord on ``omboard.notifications.sent``. Undecodable requests and
  undeliverable mail are dead-lettered (one dead letter per request, naming every failed mail).

The ``sent`` table holds each mail's DeliveryRecord under ``<notification id>|<recipient>``.
A request that comes again is routed again: recipients already mailed are skipped, so nothing
is sent twice while the contacts stay the same; a recipient the contacts name now (e.g. after an
operator replaced an address that bounced, and re-published the dead letter) gets their mail.

At-least-once: each mail's record is in the changelog (awaited) right after the SMTP server took
the mail, before the next mail, so a worker killed at any point re-sends at most the one mail in
flight (with the same Message-ID), and a request cut off between recipients is completed without
duplicates when it comes again. A mail already delivered publishes its stored DeliveryRecord
again instead of mailing: a crash between recording and publishing loses no record.

Requests wait for the contacts: a request on partition N is routed only once this worker has
folded the events on partition N up to where they ended when the request was read (every event a
request follows from was there by then), so no mail goes to the fallback address by a race. A
request that carries the provider's contacts (a late-order notice, asked by planning while it
handled the event that named them) is routed by those.

``build(settings)`` returns the app; ``omboard worker notifier`` runs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage

from aiokafka import TopicPartition

from schemas.notifications import DeliveryRecord, NotificationRequest
from schemas.topics import EVENTS, NOTIFICATIONS, NOTIFICATIONS_SENT
from schemas.wire import correlation_id, event_from_kafka, model_from_kafka, model_to_kafka
from services.domain.mail import (
    KINDS,
    LANGUAGES,
    PlannedMail,
    ProviderContacts,
    compose,
    delivery_record,
    fold,
    for_mail,
    mail_templates,
    matters,
    route,
)
from services.notifier import smtp
from services.notifier.delivery import deliver as deliver_request
from services.runtime import metrics
from services.runtime.clock import Clock, clock_from_settings
from services.runtime.deadletter import dead_letter, handle_each, reason_of
from services.runtime.settings import Settings
from services.runtime.stream_app import StreamApp
from services.runtime.streams import Outgoing, Received, check_fits, mark_stalled
from services.runtime.tables import Table

log = logging.getLogger(__name__)

SERVICE = "notifier"
#: SMTP attempts per mail, and the pause before the second (doubling after each further failure).
SEND_ATTEMPTS = 4
SEND_BACKOFF = 1.0
#: While the SMTP server is unreachable or answers "try later": seconds between rounds of attempts,
#: doubling up to the last. The request's partition waits; nothing is marked failed.
OUTAGE_FIRST, OUTAGE_MAX = 2.0, 60.0


#: The EVENTS_CONSUMED/EVENTS_FAILED type of a notification request.
NOTIFICATION_TYPE = "notification"


@dataclass
class SentTable:
    """The ``sent`` table as the delivery protocol's ``SentMail``, for a request on ``partition``:
    a record is in the changelog (awaited) before the next mail starts."""

    app: StreamApp
    table: Table
    partition: int

    def get(self, key: bytes) -> DeliveryRecord | None:
        raw = self.table.get(key)
        return DeliveryRecord.model_validate_json(raw) if raw else None

    async def record(self, key: bytes, record: DeliveryRecord) -> None:
        self.table.set(key, record.model_dump_json().encode(), self.partition)
        await self.app.flush_writes()


def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    send: Callable[[EmailMessage], Awaitable[smtp.Sent]] | None = None,
    attempts: int = SEND_ATTEMPTS,
    backoff: float = SEND_BACKOFF,
    **app_options,
) -> StreamApp:
    """The notifier's app. ``send`` replaces SMTP (tests); ``app_options`` go to StreamApp."""
    app = StreamApp(SERVICE, settings, **app_options)
    clock = clock or clock_from_settings(settings.clock_file, settings.timezone)
    send_once = send or (lambda message: smtp.send(message, settings))
    library = mail_templates(settings)
    library.check(KINDS, LANGUAGES)  # a missing or broken template stops the worker at start

    # Keyed by provider id, on the partition of the provider's events and requests.
    contacts = app.table("contacts")
    # Keyed by notification id and recipient, on the partition of the request, where it is read.
    sent = app.table("sent")

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
            key = event.provider_id.encode()
            contacts.set(key, check_fits(f"the contacts of provider {event.provider_id}", key,
                                         updated.model_dump_json().encode()), received.partition)

    # Declared first: in a batch holding both, events are folded before requests are routed.
    @app.agent(EVENTS, name="notifier-contacts")
    async def keep_contacts(batch: list[Received]) -> list[Outgoing]:
        rejected: list[Outgoing] = []
        async for _ in handle_each(SERVICE, batch, remember_contacts, metrics.metric_event_type, rejected):
            pass  # folded into the contacts table
        return rejected

    def record_message(record: DeliveryRecord, provider_id: str, correlation: str | None) -> Outgoing:
        return Outgoing(NOTIFICATIONS_SENT, *model_to_kafka(record, provider_id, correlation))

    async def send_mail(request: NotificationRequest, planned: PlannedMail) -> tuple[DeliveryRecord, str | None]:
        """Mail one recipient their part of ``request``; the record, and why it failed (or None)."""
        part = for_mail(request, planned)
        to = planned.to
        message = compose(part, to, settings, library)
        pause = OUTAGE_FIRST
        while True:
            try:
                result, tries = await smtp.send_with_retries(send_once, message, attempts=attempts, backoff=backoff)
            except smtp.DeliveryError as error:
                tries = getattr(error, "attempts", 1)
                metrics.EMAIL_RETRIES.labels(request.kind).inc(tries - 1)
                if error.temporary:
                    # The server is down or busy, not refusing this mail: hold the partition and
                    # try again later, so that an outage of minutes loses and doubles nothing.
                    metrics.EMAILS_FAILED.labels(request.kind, "temporary").inc()
                    mark_stalled(app, f"SMTP unavailable: {error.reason}")
                    log.warning("notifier: %s waits for the SMTP server (%s); trying again in %.0fs",
                                message["Message-ID"], error.reason, pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, OUTAGE_MAX)
                    continue
                mark_stalled(app, None)
                metrics.EMAILS_FAILED.labels(request.kind, "permanent").inc()
                reason = f"permanent SMTP failure after {tries} attempt(s): {error.reason}"
                log.warning("notifier: %s to %s not delivered: %s", request.id, message["Message-ID"], reason)
                return delivery_record(part, message, to, "failed", clock.now(), reason), reason
            mark_stalled(app, None)
            break
        metrics.EMAIL_RETRIES.labels(request.kind).inc(tries - 1)
        metrics.EMAILS_SENT.labels(request.kind).inc()
        refused = "; ".join(f"{address}: {reply}" for address, reply in result.refused.items())
        log.info("notifier: sent %s (%s) as %s after %d attempt(s)", request.id, request.kind, message["Message-ID"], tries)
        return delivery_record(part, message, to, "sent", clock.now(), f"refused: {refused}" if refused else None), None

    async def deliver(received: Received) -> tuple[list[Outgoing], bool]:
        """Everything one notification request leads to, as messages still to produce, and
        whether it failed (was dead-lettered)."""
        try:
            request = model_from_kafka(NotificationRequest, received.value)
        except Exception as error:  # noqa: BLE001
            return [dead_letter(SERVICE, received, f"not a NotificationRequest: {reason_of(error)}")], True
        correlation = correlation_id(received.headers) or request.correlation_id
        if request.contacts is not None:
            addressed_by = request.contacts
        else:
            known = known_contacts(request.provider_id)
            addressed_by = known.contacts if known else []
        delivery = await deliver_request(request, route(addressed_by, request, settings),
                                         SentTable(app, sent, received.partition), send_mail)
        outgoing = [record_message(record, request.provider_id, correlation) for record in delivery.records]
        if delivery.failures:
            outgoing.append(dead_letter(SERVICE, received, "; ".join(delivery.failures)))
        return outgoing, bool(delivery.failures)

    @app.agent(NOTIFICATIONS, name="notifier-mail")
    async def mail(batch: list[Received]) -> list[Outgoing]:
        # One request at a time, and each mail recorded before the next one starts.
        outgoing: list[Outgoing] = []
        behind = await contacts_behind({received.partition for received in batch})
        for received in batch:
            if received.partition in behind:
                events = TopicPartition(EVENTS, received.partition)
                app.hold(received, until=lambda events=events, end=behind[received.partition]:
                         app.handled.get(events, 0) >= end)
                continue
            outgoing += await mail_one(received)
        return outgoing

    async def contacts_behind(partitions: set[int]) -> dict[int, int]:
        """Partitions whose events this worker has not folded up to where they end now, and that end.

        A request is asked after the event that named its contacts was on the events topic (the
        planners and reporting consumed it first), but the two topics reach this worker in no
        order: routed now, a reminder asked right after a provider started could find no contacts
        yet and go to the fallback address (seen once in 22 crash-test rounds, with no kill).
        """
        tps = [tp for tp in (TopicPartition(EVENTS, p) for p in partitions) if tp in app.assigned]
        if not tps:
            return {}
        ends = await app.consumer.end_offsets(tps)
        return {tp.partition: end for tp, end in ends.items() if app.handled.get(tp, 0) < end}

    async def mail_one(received: Received) -> list[Outgoing]:
        began = time.perf_counter()
        metrics.observe_age(SERVICE, received.topic, received.timestamp, time.time())
        try:
            outgoing, failed = await deliver(received)
        except Exception as error:
            log.exception("notifier: failed on %s[%d]@%d", received.topic, received.partition, received.offset)
            outgoing, failed = [dead_letter(SERVICE, received, f"notifier failed: {reason_of(error)}")], True
        if failed:
            metrics.EVENTS_FAILED.labels(SERVICE, NOTIFICATION_TYPE).inc()
            metrics.DEAD_LETTERS.labels(SERVICE, received.topic).inc()
        else:
            metrics.EVENTS_CONSUMED.labels(SERVICE, NOTIFICATION_TYPE).inc()
        metrics.PROCESSING_SECONDS.labels(SERVICE).observe(time.perf_counter() - began)
        return outgoing

    return app
