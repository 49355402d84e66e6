"""Notification requests (reporting -> notifier) and delivery records (notifier -> the world)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from schemas.events import MAX_CONTACTS, Contact, Contract
from schemas.tasks import Responsible, Warning

NotificationKind = Literal["reminder", "escalation", "late-order", "unblocked", "date-at-risk"]


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
    checklist_due: dt.date | None = None  # the checklist's date, when the task is due later than it
    #: Whose task it is, when a request lists tasks of several parties (a date-at-risk notice);
    #: None: the request's ``responsible``.
    responsible: Responsible | None = None


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
    # The provider's contacts as the event that caused this request left them. Set on late-order
    # notices: planning asks them while handling that event, so they can reach the notifier
    # before it has folded the event's contacts. None: the notifier's own contacts decide.
    contacts: list[Contact] | None = Field(default=None, max_length=MAX_CONTACTS)
    #: A ``date-at-risk`` notice: the plan's verdict (the date, the earliest feasible one, the
    #: critical chain); its task lines are the chain's tasks. One mail, to the provider's
    #: contacts for those tasks and KLK IT together.
    verdict: Warning | None = None


class DeliveryRecord(Contract):
    notification_id: str
    message_id: str
    recipients: list[str]
    subject: str
    status: Literal["sent", "failed"]
    reason: str | None = None
    at: dt.datetime
