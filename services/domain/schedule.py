"""When a task is due: a rule's deadline counted from its anchor on the business calendar, its
reminder and escalation dates, and whether the order already comes too late. Pure."""

from __future__ import annotations

import datetime as dt

from schemas.catalog.model import Rule
from schemas.events import Envelope, OrgChangeRequested
from schemas.tasks import Task, Warning
from services.domain.calendar import BusinessCalendar
from services.domain.ids import last_day_of_month

LATE_ORDER = "late-order"


class Schedule:
    def __init__(self, calendar: BusinessCalendar):
        self.calendar = calendar

    def anchor(self, rule: Rule, event: Envelope) -> dt.date:
        """The date a rule's deadline counts from, for ``event`` (``month_end``: the last day of the
        month of the event's date)."""
        anchor = rule.deadline.anchor
        if anchor == "decided_on" and isinstance(event.data, OrgChangeRequested):
            return event.data.decided_on
        if anchor == "month_end":
            return last_day_of_month(event.anchor_date)
        return event.anchor_date

    def due(self, rule: Rule, anchor: dt.date) -> dt.date:
        """The rule's deadline counted from ``anchor`` on the business calendar."""
        deadline = rule.deadline
        if deadline.unit == "business_days":
            due = self.calendar.add_business_days(anchor, deadline.offset)
        else:
            days = deadline.offset * (7 if deadline.unit == "weeks" else 1)
            due = anchor + dt.timedelta(days=days)
        return self.calendar.roll(due, deadline.roll)

    def reminder_dates(self, rule: Rule, due: dt.date) -> list[dt.date]:
        return sorted({self.calendar.add_business_days(due, -days) for days in rule.reminders})

    def escalation_dates(self, rule: Rule, due: dt.date) -> list[dt.date]:
        """The business days after ``due`` on which an unfinished task is escalated (``rule.escalation.to``)."""
        return sorted({self.calendar.add_business_days(due, days) for days in rule.escalation.after})

    @staticmethod
    def earliest_start(event: Envelope) -> dt.date:
        """The first day the work could be ordered: the decision for an organisation change,
        otherwise the day the event was published."""
        data = event.data
        return data.decided_on if isinstance(data, OrgChangeRequested) else event.time.date()

    def is_late(self, event: Envelope, task: Task) -> bool:
        return task.due < self.earliest_start(event)

    def late_warning(self, rule: Rule, event: Envelope, task: Task) -> Warning | None:
        """A task due before it could possibly be done: the order comes too late."""
        if not self.is_late(event, task):
            return None
        return Warning(
            code=LATE_ORDER,
            obligation=task.obligation,
            message=(
                f"{rule.action} in {rule.system} should have been done by {task.due.isoformat()}, "
                f"before {self.earliest_start(event).isoformat()} when it could first be ordered"
            ),
        )
