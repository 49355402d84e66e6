"""Provisioning tasks: what one party must do in one system, by when, and why (the obligation)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Literal

from pydantic import Field

from schemas.events import Contract, SystemId

TaskStatus = Literal["blocked", "open", "done", "cancelled", "failed"]
Channel = Literal[
    "it-support", "iris", "sesam", "web-form", "boka", "local-admin", "authorization-admin", "provider", "night-care"
]
Responsible = Literal["klk-it", "provider", "main-provider", "handing-over-provider", "taking-over-provider"]


class Subject(Contract):
    """Whom a task is about. ``person_id`` is an HSA-id: never log it, never mail it."""

    provider_id: str
    unit_id: str | None = None
    person_id: str | None = None


class Instructions(Contract):
    sv: str
    en: str
    where: str | None = None  # the address or entry point: it.support mailbox, Iris, Sesam, a form, BOKA


class Task(Contract):
    id: str
    plan_id: str  # the id of the event that produced the task
    catalog_version: str
    rule: str
    obligation: str
    system: SystemId
    action: str
    channel: Channel
    responsible: Responsible
    subject: Subject
    due: dt.date
    #: The date the checklist's lead time gave, when the schedule could not meet it: the event came
    #: too late (``late-order``) or what the task waits for is due later. None: ``due`` is that date.
    checklist_due: dt.date | None = None
    status: TaskStatus
    depends_on: list[str] = Field(default_factory=list)
    instructions: Instructions
    quantity: int | None = None  # e.g. how many expert users a unit needs; a unit's access order: for how many
    #: A revocation: the task that gave the access it takes away (a person's own, or the unit's
    #: order that covered them); None when omboard never saw that access given (``unknown-person``).
    revokes: str | None = None
    remind_on: list[dt.date] = Field(default_factory=list)  # oldest first; the deadline engine fires each once
    escalate_on: list[dt.date] = Field(default_factory=list)  # after the due date, while still not done
    escalate_to: list[Responsible] = Field(default_factory=list)  # empty: the responsible party itself
    provider_name: str | None = None
    correlation_id: str | None = None
    #: A step the responsible party may take or leave: not reminded, not escalated, waited for by nothing.
    optional: bool = False


class ChainStep(Contract):
    """One task of a critical chain, as anyone may read it: no person's id."""

    task_id: str
    rule: str
    system: SystemId
    action: str
    unit_id: str | None = None
    due: dt.date
    checklist_due: dt.date | None = None


class Warning(Contract):  # noqa: A001 - the plan's vocabulary
    code: str
    obligation: str
    message: str
    #: ``date-at-risk``: the start, effective or closing date the plan's tasks cannot be done before,
    #: the first such date they can be done before, and the chain of tasks that decides it.
    date: dt.date | None = None
    earliest_feasible: dt.date | None = None
    chain: list[ChainStep] = Field(default_factory=list)


class DateVerdict(Contract):
    """A plan's verdict on its date, as the status page shows it: kept per subject (``key``), the
    latest plan's word. ``at_risk`` false: the latest plan can meet its date (what was at risk no
    longer is). Names people by pseudonym only."""

    provider_id: str
    #: What the date is of: ``start``, ``unit-opened:u1``, ``org-change:chg-1``, ``unit-closed:u1``,
    #: ``subcontractor-started:s1``, ``staff-joined:person-…`` (a pseudonym, never an HSA-id) ...
    subject: str
    event_id: str
    event_type: str
    date: dt.date
    at_risk: bool
    earliest_feasible: dt.date | None = None
    chain: list[ChainStep] = Field(default_factory=list)
    message: str | None = None
    planned_at: dt.datetime

    @property
    def key(self) -> str:
        """One record per provider and subject (``omboard.verdicts`` is compacted)."""
        return hashlib.sha256(f"{self.provider_id}|{self.subject}".encode()).hexdigest()[:32]


class Holding(Contract):
    """An access a person is recorded to hold with no task of their own: one of the places their
    unit's order made for staff not yet known by name (``task_id``), taken when a roster names them."""

    person_id: str
    unit_id: str
    grant_rule: str  # the person rule whose access it is (e.g. siebel-grant-account)
    task_id: str  # the unit's order that gave it
    provider_id: str | None = None  # whose unit (set when published on omboard.holdings)

    @property
    def key(self) -> str:
        """What identifies the place, without the person's HSA-id in it (a digest)."""
        return hashlib.sha256("|".join((self.task_id, self.person_id, self.grant_rule)).encode()).hexdigest()[:32]


class Plan(Contract):
    event_id: str
    catalog_version: str
    tasks: list[Task]
    warnings: list[Warning] = Field(default_factory=list)
    holdings: list[Holding] = Field(default_factory=list)
    #: Whether the plan says whether its event's date can be met (a ``date-at-risk`` warning, or
    #: none because it can): false for an event whose date is not a plan or had passed, a
    #: correction of a running provider's start, and a plan with nothing in it.
    judged_date: bool = False
