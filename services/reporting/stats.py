"""Open and overdue task counts, kept up to date as tasks change, so metrics never scan."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from services.reporting.ledger import TaskRecord
from services.runtime import metrics

Key = tuple[str, str, dt.date]  # system, responsible, due


class TaskStats:
    def __init__(self) -> None:
        self._active: Counter[Key] = Counter()
        self._published: set[tuple[str, str]] = set()

    def replace(self, before: TaskRecord | None, after: TaskRecord) -> None:
        if before is not None and before.active:
            key = (before.task.system, before.task.responsible, before.task.due)
            self._active[key] -= 1
            if self._active[key] <= 0:
                del self._active[key]
        if after.active:
            self._active[(after.task.system, after.task.responsible, after.task.due)] += 1

    def publish(self, today: dt.date) -> None:
        opened: Counter[tuple[str, str]] = Counter()
        overdue: Counter[tuple[str, str]] = Counter()
        for (system, responsible, due), count in self._active.items():
            opened[(system, responsible)] += count
            if due < today:
                overdue[(system, responsible)] += count
        # A label set that had tasks and has none now must read 0, not its last value.
        self._published |= set(opened)
        for key in self._published:
            metrics.TASKS_OPEN.labels(*key).set(opened[key])
            metrics.TASKS_OVERDUE.labels(*key).set(overdue[key])
