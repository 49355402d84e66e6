"""The Swedish business calendar: weekends, public holidays and the de facto holidays
(Midsummer Eve, Christmas Eve, New Year's Eve) from the ``holidays`` package."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import holidays

Roll = Literal["earlier", "later", "none"]
_ONE_DAY = dt.timedelta(days=1)


class BusinessCalendar:
    def __init__(self, country: str = "SE", categories: Sequence[str] = ("public", "de_facto")):
        self._holidays = holidays.country_holidays(country, categories=tuple(categories))
        # Planning asks the same few dates over and over (every rule counts from the same start
        # date): stepping through ``holidays`` day by day was 40 % of a plan's CPU (make bench).
        self._business: dict[dt.date, bool] = {}
        self.add_business_days = lru_cache(maxsize=65_536)(self._add_business_days)  # type: ignore[method-assign]

    def is_business_day(self, day: dt.date) -> bool:
        known = self._business.get(day)
        if known is None:
            known = self._business[day] = day.weekday() < 5 and day not in self._holidays
        return known

    def add_business_days(self, day: dt.date, count: int) -> dt.date:  # replaced by a cached copy per instance
        return self._add_business_days(day, count)

    def _add_business_days(self, day: dt.date, count: int) -> dt.date:
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
