"""Injected time. Domain code takes ``now`` as an argument; processes get it from a Clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """For unit tests: now is what the test says it is."""

    def __init__(self, at: dt.datetime):
        self._at = at

    def now(self) -> dt.datetime:
        return self._at


class FileClock:
    """Reads "now" from a file holding one ISO timestamp, so a test or a demo can move the time
    of running worker processes without sleeping. Falls back to the wall clock while the file is
    absent or empty."""

    def __init__(self, path: Path, zone: str = "Europe/Stockholm"):
        self._path = path
        self._zone = ZoneInfo(zone)

    @property
    def path(self) -> Path:
        return self._path

    def now(self) -> dt.datetime:
        try:
            text = self._path.read_text().strip()
        except FileNotFoundError:
            text = ""
        if not text:
            return dt.datetime.now(dt.UTC)
        moment = dt.datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=self._zone)

    def set(self, moment: dt.datetime) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(moment.isoformat())
        tmp.replace(self._path)  # atomic: a reader never sees half a timestamp


def clock_from_settings(clock_file: Path | None, zone: str) -> Clock:
    return FileClock(clock_file, zone) if clock_file else SystemClock()
