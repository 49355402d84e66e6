"""Open and overdue task counts, kept up to date as tasks change, so metrics never scan."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from services.runtime import metrics

StatsKey = tuple[str, str, int]  # system, responsible, the due date's ordinal


class TaskStats:
    """How many active tasks each (system, responsible, due date) has."""

    def __init__(self) -> None:
        self._active: Counter[StatsKey] = Counter()
        self._published: set[tuple[str, str]] = set()

    def clear(self) -> None:
        """Forget every count; label sets published before read 0 at the next publish."""
        self._active.clear()

    def add(self, key: StatsKey) -> None:
        self._active[key] += 1

    def remove(self, key: StatsKey) -> None:
        self._active[key] -= 1
        if self._active[key] <= 0:
            del self._active[key]

    def publish(self, today: dt.date) -> None:
        opened: Counter[tuple[str, str]] = Counter()
        overdue: Counter[tuple[str, str]] = Counter()
        for (system, responsible, due), count in self._active.items():
            opened[(system, responsible)] += count
            if due < today.toordinal():
                overdue[(system, responsible)] += count
        # A label set that had tasks and has none now must read 0, not its last value.
        self._published |= set(opened)
        for key in self._published:
            metrics.TASKS_OPEN.labels(*key).set(opened[key])
            metrics.TASKS_OVERDUE.labels(*key).set(overdue[key])
