"""Open and overdue task counts, kept up to date as ledgers change, so metrics never scan."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from services.reporting.ledger import Ledger
from services.runtime import metrics

Key = tuple[str, str, dt.date]  # system, responsible, due


class LedgerStats:
    def __init__(self) -> None:
        self._active: Counter[Key] = Counter()
        self._published: set[tuple[str, str]] = set()

    @staticmethod
    def _keys(ledger: Ledger | None) -> Counter[Key]:
        if ledger is None:
            return Counter()
        return Counter(
            (record.task.system, record.task.responsible, record.task.due)
            for record in ledger.tasks.values()
            if record.active
        )

    def replace(self, before: Ledger | None, after: Ledger) -> None:
        self._active.update(self._keys(after))
        self._active.subtract(self._keys(before))
        self._active = +self._active  # drop zero counts

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
