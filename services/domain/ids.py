"""The ids omboard derives: of tasks (from the event, the rule and the subject, so that a replay
yields the same ones), of the tasks a later event names (a month's report, a held roster's), and
the months they are keyed by. Pure."""

from __future__ import annotations

import calendar as _calendar
import datetime as dt
import re
import uuid

from schemas.catalog.model import HELD_ROSTER_TRIGGER, MONTHLY_SERVICE_REPORT

#: Namespace of every task id: uuid5 of the event, the rule and the subject.
TASK_NAMESPACE = uuid.UUID("6f1c1f3e-3b0a-5e55-9a51-0b0a4d0e1a11")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def task_id(*parts: str | None) -> str:
    return str(uuid.uuid5(TASK_NAMESPACE, "|".join(part or "" for part in parts)))


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """The first and the last day of a ``YYYY-MM`` month; ValueError for anything else."""
    if not _MONTH.match(month):
        raise ValueError(f"month must be written YYYY-MM, not {month!r}")
    year, number = (int(part) for part in month.split("-"))
    return dt.date(year, number, 1), dt.date(year, number, _calendar.monthrange(year, number)[1])


def last_day_of_month(day: dt.date) -> dt.date:
    return month_bounds(month_of(day))[1]


def monthly_report_task_id(rule_id: str, provider_id: str, unit_id: str, month: str) -> str:
    """The id of a month-keyed task (a monthly service report, or the last one at a closure).

    It depends on nothing but the rule, the provider, the unit and the month, so reporting can open
    the task any number of times and a ServiceReportSubmitted can name the task it completes.
    """
    return task_id(MONTHLY_SERVICE_REPORT, rule_id, provider_id, unit_id, month)


def roster_task_id(rule_id: str, provider_id: str, roster: str) -> str:
    """The id of the task of a held roster (``HeldRoster.roster``): its confirmation and a later
    roster can name it."""
    return task_id(HELD_ROSTER_TRIGGER, rule_id, provider_id, roster)


def monthly_plan_id(month: str) -> str:
    """The ``plan_id`` of the tasks opened for a month (there is no event behind them)."""
    return f"{MONTHLY_SERVICE_REPORT}/{month}"
