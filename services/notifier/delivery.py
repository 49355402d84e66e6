"""The notifier's delivery protocol for one decoded notification request: for each mail of its
plan, check whether it was delivered already, else send it, and record the outcome for good
before the next mail starts.

The order is the at-least-once promise: a worker killed at any point re-sends at most the one mail
in flight, and a mail already delivered gives its stored record again instead of a second mail.
The ports are injected (``SentMail``, ``Mailer``), so the protocol is tested with fakes
(``tests/unit/test_delivery.py``) and run by the notifier's agent over its ``sent`` table and SMTP.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from schemas.notifications import DeliveryRecord, NotificationRequest
from services.domain.mail import MailPlan, PlannedMail, sent_key, should_send

log = logging.getLogger(__name__)


class SentMail(Protocol):
    """What was mailed, by request and recipient."""

    def get(self, key: bytes) -> DeliveryRecord | None: ...

    async def record(self, key: bytes, record: DeliveryRecord) -> None:
        """Keep ``record`` for good: returns once it survives a crash."""
        ...


#: Mails one recipient their part of a request: the delivery record, and why it failed (None: sent).
Mailer = Callable[[NotificationRequest, PlannedMail], Awaitable[tuple[DeliveryRecord, str | None]]]


@dataclass
class Delivery:
    """What one request led to: a record per mail of its plan (sent now, failed, or delivered
    before), and the failures to dead-letter the request with."""

    records: list[DeliveryRecord] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def deliver(request: NotificationRequest, plan: MailPlan, sent: SentMail, mail: Mailer) -> Delivery:
    delivery = Delivery()
    for planned in plan.mails:
        key = sent_key(request.id, planned.recipient)
        previous = sent.get(key)
        if not should_send(previous):
            assert previous is not None
            log.info("notifier: %s already sent as %s; not mailing again", request.id, previous.message_id)
            delivery.records.append(previous)
            continue
        record, failure = await mail(request, planned)
        await sent.record(key, record)
        delivery.records.append(record)
        if failure is not None:
            delivery.failures.append(f"{failure} (mail {record.message_id})")
    return delivery
