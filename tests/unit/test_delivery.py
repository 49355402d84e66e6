"""The notifier's delivery protocol over fakes: check sent, send, record, in that order per mail."""

from __future__ import annotations

import asyncio
import datetime as dt

from schemas.notifications import DeliveryRecord, NotificationRequest, TaskLine
from services.domain.mail import MailPlan, PlannedMail, sent_key
from services.notifier.delivery import deliver

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
LINE = TaskLine(task_id="t1", obligation="SB2", system="siebel", action="order-accounts-and-tokens",
                due=dt.date(2026, 12, 30), channel="sesam", where="Sesam", instructions_sv="Beställ konton.",
                instructions_en="Order accounts.", unit_id="u1", quantity=3)
REQUEST = NotificationRequest(id="reminder-0001", kind="reminder", provider_id="p1", provider_name="Omsorg AB",
                              responsible="provider", tasks=[LINE], requested_at=T0)
PLAN = MailPlan(notification_id=REQUEST.id, mails=[PlannedMail(recipient=address, task_ids=["t1"])
                                                    for address in ("a@x.se", "b@x.se", "c@x.se")])


def record(recipient: str, status: str = "sent", reason: str | None = None) -> DeliveryRecord:
    return DeliveryRecord(notification_id=REQUEST.id, message_id=f"<{recipient}>", recipients=[recipient],
                          subject="Påminnelse", status=status, reason=reason, at=T0)


class FakeSent:
    """The ``sent`` table, with the calls in the order they came (shared with the mailer's)."""

    def __init__(self, calls: list[str], **stored: DeliveryRecord):
        self.calls = calls
        self.stored = {sent_key(REQUEST.id, recipient): found for recipient, found in stored.items()}

    def get(self, key: bytes) -> DeliveryRecord | None:
        self.calls.append(f"check {key.decode().split('|')[1]}")
        return self.stored.get(key)

    async def record(self, key: bytes, found: DeliveryRecord) -> None:
        self.calls.append(f"record {key.decode().split('|')[1]}")
        self.stored[key] = found


def mailer(calls: list[str], failing: tuple[str, ...] = ()):
    async def mail(request: NotificationRequest, planned: PlannedMail) -> tuple[DeliveryRecord, str | None]:
        calls.append(f"send {planned.recipient}")
        if planned.recipient in failing:
            return record(planned.recipient, "failed", "550 no such user"), "permanent SMTP failure: 550 no such user"
        return record(planned.recipient), None
    return mail


def test_each_mail_is_recorded_before_the_next_is_sent():
    calls: list[str] = []
    delivery = asyncio.run(deliver(REQUEST, PLAN, FakeSent(calls), mailer(calls)))
    assert calls == ["check a@x.se", "send a@x.se", "record a@x.se",
                     "check b@x.se", "send b@x.se", "record b@x.se",
                     "check c@x.se", "send c@x.se", "record c@x.se"]
    assert [r.recipients for r in delivery.records] == [["a@x.se"], ["b@x.se"], ["c@x.se"]]
    assert delivery.failures == []


def test_a_mail_delivered_before_is_not_sent_again_but_its_record_is_given_again():
    calls: list[str] = []
    before = record("a@x.se")
    sent = FakeSent(calls, **{"a@x.se": before})
    delivery = asyncio.run(deliver(REQUEST, PLAN, sent, mailer(calls)))
    assert "send a@x.se" not in calls and calls[:2] == ["check a@x.se", "check b@x.se"]
    assert delivery.records[0] is before and len(delivery.records) == 3


def test_a_failed_mail_is_recorded_named_in_the_failures_and_tried_again_next_time():
    calls: list[str] = []
    sent = FakeSent(calls)
    delivery = asyncio.run(deliver(REQUEST, PLAN, sent, mailer(calls, failing=("b@x.se",))))
    assert delivery.failures == ["permanent SMTP failure: 550 no such user (mail <b@x.se>)"]
    assert [r.status for r in delivery.records] == ["sent", "failed", "sent"]

    again: list[str] = []
    sent.calls = again
    retried = asyncio.run(deliver(REQUEST, PLAN, sent, mailer(again)))
    assert [call for call in again if call.startswith("send")] == ["send b@x.se"], "only the failed mail again"
    assert retried.failures == [] and [r.status for r in retried.records] == ["sent"] * 3
