"""When a task is due by the checklist: a rule's deadline counted from its anchor on the business
calendar (the textbook date), a working time counted on from a day, its reminder and escalation
dates, and whether the order already comes too late. Pure.

``services.domain.scheduler`` puts these together over a plan's dependency graph.
"""

from __future__ import annotations

import datetime as dt

from schemas.catalog.model import Duration, Rule
from schemas.events import Envelope, OrgChangeRequested, StaffRoleChanged
from schemas.tasks import Task, Warning
from services.domain.calendar import BusinessCalendar
from services.domain.ids import last_day_of_month

LATE_ORDER = "late-order"


class Schedule:
    def __init__(self, calendar: BusinessCalendar):
        self.calendar = calendar

    def anchor(self, rule: Rule, event: Envelope, at: dt.date | None = None) -> dt.date:
        """The date a rule's deadline counts from, for ``event`` (``month_end``: the last day of the
        month of the event's date; ``decided_on``: an organisation change's decision, or for a
        move of responsibility, which has none, the day it was reported). ``at``: the event's
        date taken to be another (the verdict tries later dates); a decision stays when it was."""
        anchor = rule.deadline.anchor
        if anchor == "decided_on":
            return event.data.decided_on if isinstance(event.data, OrgChangeRequested) else event.time.date()
        day = at or event.anchor_date
        if rule.revokes and isinstance(event.data, StaffRoleChanged):
            # The effective date is the first day in the new role: the last in the old one, whose
            # access ends the day after, is the day before.
            day -= dt.timedelta(days=1)
        if anchor == "month_end":
            return last_day_of_month(day)
        return day

    def due(self, rule: Rule, anchor: dt.date) -> dt.date:
        """The rule's deadline counted from ``anchor`` on the business calendar: the textbook date."""
        deadline = rule.deadline
        if deadline.unit == "business_days":
            due = self.calendar.add_business_days(anchor, deadline.offset)
        else:
            days = deadline.offset * (7 if deadline.unit == "weeks" else 1)
            due = anchor + dt.timedelta(days=days)
        return self.calendar.roll(due, deadline.roll)

    def after(self, day: dt.date, duration: Duration) -> dt.date:
        """The business day by which work of ``duration`` begun on ``day`` is done (a working
        time of 0: ``day`` itself, or the next business day)."""
        if duration.unit == "business_days":
            return self.calendar.add_business_days(self.calendar.roll(day, "later"), duration.offset)
        days = duration.offset * (7 if duration.unit == "weeks" else 1)
        return self.calendar.roll(day + dt.timedelta(days=days), "later")

    def reminder_dates(self, rule: Rule, due: dt.date, not_before: dt.date | None = None) -> list[dt.date]:
        """The business days before ``due`` on which the responsible party is reminded; none
        before ``not_before`` (the day the event arrived: nobody is reminded before they were told)."""
        dates = {self.calendar.add_business_days(due, -days) for days in rule.reminders}
        return sorted(day for day in dates if not_before is None or day >= not_before)

    def escalation_dates(self, rule: Rule, due: dt.date) -> list[dt.date]:
        """The business days after ``due`` on which an unfinished task is escalated (``rule.escalation.to``)."""
        return sorted({self.calendar.add_business_days(due, days) for days in rule.escalation.after})

    @staticmethod
    def earliest_start(event: Envelope) -> dt.date:
        """The first day the work could be ordered: the day the event was published, and for an
        organisation change not before its decision."""
        data, arrived = event.data, event.time.date()
        return max(arrived, data.decided_on) if isinstance(data, OrgChangeRequested) else arrived

    def is_late(self, event: Envelope, task: Task) -> bool:
        """Whether the checklist's date for ``task`` had passed before it could be ordered (an
        optional step is never late: nobody needs it)."""
        return not task.optional and (task.checklist_due or task.due) < self.earliest_start(event)

    def late_warning(self, rule: Rule, event: Envelope, task: Task) -> Warning | None:
        """A task the checklist wanted done before it could possibly be ordered: the order comes too late."""
        if not self.is_late(event, task):
            return None
        return Warning(
            code=LATE_ORDER,
            obligation=task.obligation,
            message=(
                f"{rule.action} in {rule.system} should have been done by {(task.checklist_due or task.due).isoformat()}, "
                f"before {self.earliest_start(event).isoformat()} when it could first be ordered; "
                f"it is due as soon as it can be done, {task.due.isoformat()}"
            ),
        )
