"""The Swedish business calendar: weekends, public holidays and the de facto holidays
(Midsummer Eve, Christmas Eve, New Year's Eve) from the ``holidays`` package."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

import holidays

Roll = Literal["earlier", "later", "none"]
_ONE_DAY = dt.timedelta(days=1)


class BusinessCalendar:
    def __init__(self, country: str = "SE", categories: Sequence[str] = ("public", "de_facto")):
        self._holidays = holidays.country_holidays(country, categories=tuple(categories))

    def is_business_day(self, day: dt.date) -> bool:
        return day.weekday() < 5 and day not in self._holidays

    def add_business_days(self, day: dt.date, count: int) -> dt.date:
        """Move ``count`` business days from ``day`` (negative: back). ``day`` itself need not be one."""
        step = _ONE_DAY if count >= 0 else -_ONE_DAY
        remaining = abs(count)
        while remaining:
            day += step
            if self.is_business_day(day):
                remaining -= 1
        return day

    def roll(self, day: dt.date, direction: Roll) -> dt.date:
        """Move a deadline that falls on a non-business day to the nearest business day in ``direction``."""
        if direction == "none":
            return day
        step = -_ONE_DAY if direction == "earlier" else _ONE_DAY
        while not self.is_business_day(day):
            day += step
        return day
