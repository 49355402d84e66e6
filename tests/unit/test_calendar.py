"""The Swedish business calendar: weekends, public holidays and the de facto ones, and rolling."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.catalog import load_catalog
from services.domain.calendar import BusinessCalendar
from services.domain.planner import Planner
from services.domain.state import ProviderState, UnitState
from tests.unit import _events as ev

D = dt.date.fromisoformat
CAL = BusinessCalendar()


@pytest.mark.parametrize(
    "day, business",
    [
        ("2026-04-01", True),  # Wednesday before Easter
        ("2026-04-02", True),  # Maundy Thursday is a working day
        ("2026-04-03", False),  # Good Friday
        ("2026-04-04", False),  # Easter Saturday (a Saturday)
        ("2026-04-05", False),  # Easter Sunday
        ("2026-04-06", False),  # Easter Monday
        ("2026-04-07", True),
        ("2025-04-18", False),  # Good Friday 2025
        ("2025-04-21", False),  # Easter Monday 2025
        ("2026-06-19", False),  # Midsummer Eve (de facto holiday), a Friday
        ("2026-06-20", False),  # Midsummer Day
        ("2026-06-18", True),
        ("2026-05-14", False),  # Ascension Day
        ("2026-05-01", False),  # May Day
        ("2026-12-24", False),  # Christmas Eve (de facto)
        ("2026-12-31", False),  # New Year's Eve (de facto)
        ("2027-01-06", False),  # Epiphany
        ("2026-03-07", False),  # a Saturday
        ("2026-03-08", False),  # a Sunday
        ("2026-03-09", True),  # a Monday
    ],
)
def test_business_days(day, business):
    assert CAL.is_business_day(D(day)) is business


def test_midsummer_eve_is_a_business_day_when_only_public_holidays_count():
    public_only = BusinessCalendar(categories=("public",))
    assert public_only.is_business_day(D("2026-06-19"))
    assert not public_only.is_business_day(D("2026-06-20"))  # Midsummer Day is a public holiday


def test_adding_business_days_skips_easter():
    assert CAL.add_business_days(D("2026-04-02"), 1) == D("2026-04-07")
    assert CAL.add_business_days(D("2026-04-07"), -1) == D("2026-04-02")
    assert CAL.add_business_days(D("2026-04-07"), 0) == D("2026-04-07")


def test_adding_business_days_skips_midsummer_and_christmas():
    assert CAL.add_business_days(D("2026-06-18"), 1) == D("2026-06-22")
    assert CAL.add_business_days(D("2027-01-04"), -3) == D("2026-12-28")  # back over New Year's Day and Eve


def test_a_start_date_does_not_count_itself():
    # From a Monday, 5 business days back is the Monday before, whatever the anchor is.
    assert CAL.add_business_days(D("2026-03-02"), -5) == D("2026-02-23")
    assert CAL.add_business_days(D("2026-03-01"), -5) == D("2026-02-23")  # from a Sunday


@pytest.mark.parametrize(
    "day, direction, expected",
    [
        ("2026-07-05", "earlier", "2026-07-03"),  # a 5th on a Sunday rolls back to Friday
        ("2026-07-05", "later", "2026-07-06"),
        ("2026-07-05", "none", "2026-07-05"),
        ("2026-04-05", "earlier", "2026-04-02"),  # Easter Sunday: back over Easter Saturday and Good Friday
        ("2026-04-05", "later", "2026-04-07"),  # forward over Easter Monday
        ("2026-06-19", "earlier", "2026-06-18"),  # Midsummer Eve
        ("2026-06-19", "later", "2026-06-22"),
        ("2026-03-04", "earlier", "2026-03-04"),  # a business day stays
    ],
)
def test_roll(day, direction, expected):
    assert CAL.roll(D(day), direction) == D(expected)


def _monthly_due(month: str) -> dt.date:
    catalog = load_catalog()
    planner = Planner(catalog)
    started = ev.provider_started(services=("sarskilt_boende",), start_date="2025-01-01")
    state = ProviderState(
        provider_id="p1",
        provider=started.data.provider,
        start_date=D("2025-01-01"),
        units={"u1": UnitState(id="u1", name="Enhet", staff_count=10)},
    )
    (task,) = planner.plan_monthly_reports(state, month)
    return task.due


@pytest.mark.parametrize(
    "month, due",
    [
        ("2026-06", "2026-07-03"),  # 5 July 2026 is a Sunday: due Friday the 3rd
        ("2026-03", "2026-04-02"),  # 5 April 2026 is Easter Sunday: due Maundy Thursday
        ("2026-01", "2026-02-05"),  # a Thursday: the 5th itself
        ("2026-08", "2026-09-04"),  # 5 September 2026 is a Saturday
        ("2026-12", "2027-01-05"),  # across the year
    ],
)
def test_the_service_report_due_on_the_5th_rolls_earlier(month, due):
    assert _monthly_due(month) == D(due)


def test_reminders_fall_on_business_days():
    catalog = load_catalog()
    planner = Planner(catalog)
    rule = catalog.rule("siebel-monthly-service-report")  # reminders 3, 1 and 0 business days before
    assert planner.schedule.reminder_dates(rule, D("2026-04-02")) == [D("2026-03-30"), D("2026-04-01"), D("2026-04-02")]
    assert planner.schedule.escalation_dates(rule, D("2026-04-02")) == [D("2026-04-07"), D("2026-04-09")]
