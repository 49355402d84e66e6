"""Notification requests (reporting -> notifier) and delivery records (notifier -> the world)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from schemas.events import Contract
from schemas.tasks import Responsible

NotificationKind = Literal["reminder", "escalation", "late-order", "unblocked"]


class TaskLine(Contract):
    """One task as a person reads it in a mail; carries no personal data."""

    task_id: str
    obligation: str
    system: str
    action: str
    due: dt.date
    channel: str
    instructions_sv: str
    instructions_en: str
    where: str | None = None
    unit_id: str | None = None
    quantity: int | None = None


class NotificationRequest(Contract):
    id: str  # deterministic: the same reminder of the same task always has the same id
    kind: NotificationKind
    provider_id: str
    provider_name: str | None = None
    responsible: Responsible
    system: str | None = None
    unit_id: str | None = None
    tasks: list[TaskLine] = Field(min_length=1)
    requested_at: dt.datetime
    correlation_id: str | None = None


class DeliveryRecord(Contract):
    notification_id: str
    message_id: str
    recipients: list[str]
    subject: str
    status: Literal["sent", "failed"]
    reason: str | None = None
    at: dt.datetime
