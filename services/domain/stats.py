"""Open and overdue task counts, kept up to date as tasks change, so metrics never scan."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable

StatsKey = tuple[str, str, int]  # system, responsible, the due date's ordinal


class TaskStats:
    """How many active tasks each (system, responsible, due date) has."""

    def __init__(self) -> None:
        self._active: Counter[StatsKey] = Counter()
        self._counted: set[tuple[str, str]] = set()  # every pair counted so far, to read 0 once empty

    def clear(self) -> None:
        """Forget every count; pairs counted before read (0, 0) in the next ``counts``."""
        self._active.clear()

    def add(self, key: StatsKey) -> None:
        self._active[key] += 1

    def add_all(self, keys: Iterable[StatsKey]) -> None:
        """``add`` for each of ``keys``, counted at C speed (a restored batch)."""
        self._active.update(keys)

    def remove(self, key: StatsKey) -> None:
        self._active[key] -= 1
        if self._active[key] <= 0:
            del self._active[key]

    def counts(self, today: dt.date) -> dict[tuple[str, str], tuple[int, int]]:
        """Per (system, responsible): how many tasks are open and how many of those overdue on
        ``today``; a pair that had tasks before and has none now reads (0, 0), not its last
        counts."""
        opened: Counter[tuple[str, str]] = Counter()
        overdue: Counter[tuple[str, str]] = Counter()
        for (system, responsible, due), count in self._active.items():
            opened[(system, responsible)] += count
            if due < today.toordinal():
                overdue[(system, responsible)] += count
        self._counted |= set(opened)
        return {key: (opened[key], overdue[key]) for key in sorted(self._counted)}
