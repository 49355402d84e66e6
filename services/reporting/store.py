"""The reporting worker's tasks: one table record per task, and indexes derived from them.

The ``tasks`` table maps a task id to its ``TaskRecord``, on the partition of the task's provider
(the key of every task topic), so the task recovers with the provider's messages. A write stages
the records that changed, nothing else: a provider's 50,000th task costs what its first did.

The indexes live in memory and are derived again from the table after partitions move
(``rebuild``), record by record:

* which tasks may wait for a task (to open them when it is done);
* when each task next has a reminder or escalation due: a heap the sweep pops, so a sweep costs
  what is due, not what is open, and the date each task's newest entry stands for;
* open and overdue counts for metrics (``TaskStats``).

An index entry may be stale (a task done since, an entry of a batch rolled back): each is checked
against the record it names, so entries are only ever added, and a stale one costs one lookup.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator

from services.reporting.ledger import TaskRecord, next_date
from services.reporting.stats import TaskStats
from services.runtime.streams import check_fits
from services.runtime.tables import Table


class TaskStore:
    def __init__(self, table: Table):
        self.table = table
        # The sweep's index trusts its newest entry per task, and the counts their last change: a
        # rolled-back write leaves both wrong, so they are derived again.
        table.on_discard.append(self.rebuild)
        self.stats = TaskStats()
        self._dependents: dict[str, set[str]] = defaultdict(set)  # prerequisite -> tasks that may wait for it
        self._heap: list[tuple[int, str, bytes]] = []  # (date ordinal, provider, task key) of next sweep dates
        self._next: dict[bytes, int] = {}  # task key -> the date ordinal its newest heap entry stands for

    # -- reads (TaskLookup) ------------------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord | None:
        raw = self.table.get(task_id.encode())
        return TaskRecord.model_validate_json(raw) if raw else None

    def dependents(self, task_id: str) -> Iterable[str]:
        return self._dependents.get(task_id, ())

    def __contains__(self, task_id: str) -> bool:
        return task_id.encode() in self.table

    # -- writes ------------------------------------------------------------------------------------

    @staticmethod
    def encode(record: TaskRecord) -> bytes:
        """The record as stored; RecordTooLarge when it would not fit in a Kafka record."""
        key = record.task.id.encode()
        return check_fits(f"the record of task {record.task.id}", key, record.model_dump_json().encode())

    def put(self, record: TaskRecord, before: TaskRecord | None, partition: int | None,
            encoded: bytes | None = None) -> None:
        """Stage ``record`` (which was ``before``) on ``partition``: its provider's (None: where it is)."""
        key = record.task.id.encode()
        self.table.set(key, encoded if encoded is not None else self.encode(record), partition)
        self.stats.replace(before, record)
        self._index(key, record)

    def _index(self, key: bytes, record: TaskRecord) -> None:
        for prerequisite in record.task.depends_on:
            self._dependents[prerequisite].add(record.task.id)
        upcoming = next_date(record)
        if upcoming is None:
            self._next.pop(key, None)
        elif self._next.get(key) != (day := upcoming.toordinal()):
            self._next[key] = day
            heapq.heappush(self._heap, (day, record.task.subject.provider_id, key))

    def rebuild(self) -> None:
        """After partitions moved: every index again from the table, one record at a time."""
        self.stats = TaskStats()
        self._dependents.clear()
        self._next.clear()
        heap: list[tuple[int, str, bytes]] = []
        providers: dict[str, str] = {}  # one string per provider, shared by its entries
        for key, raw in self.table.items():
            record = TaskRecord.model_validate_json(raw)
            self.stats.replace(None, record)
            for prerequisite in record.task.depends_on:
                self._dependents[prerequisite].add(record.task.id)
            upcoming = next_date(record)
            if upcoming is not None:
                provider_id = providers.setdefault(record.task.subject.provider_id, record.task.subject.provider_id)
                self._next[key] = upcoming.toordinal()
                heap.append((upcoming.toordinal(), provider_id, key))
        heapq.heapify(heap)
        self._heap = heap

    # -- the sweep ---------------------------------------------------------------------------------

    def due_keys(self, today: dt.date) -> dict[str, list[bytes]]:
        """The keys of the tasks with a reminder or escalation reached by ``today``, by provider,
        taken off the index. Costs what is due (and what went stale), not what is open."""
        limit = today.toordinal()
        found: dict[str, list[bytes]] = defaultdict(list)
        while self._heap and self._heap[0][0] <= limit:
            day, provider_id, key = heapq.heappop(self._heap)
            if self._next.get(key) == day:  # else done, or moved on: a newer entry stands for it
                del self._next[key]
                found[provider_id].append(key)
        return dict(found)

    def due(self, today: dt.date) -> dict[str, list[TaskRecord]]:
        """The tasks ``due_keys`` finds, read."""
        found: dict[str, list[TaskRecord]] = {}
        for provider_id, keys in self.due_keys(today).items():
            records = [TaskRecord.model_validate_json(raw) for key in keys if (raw := self.table.get(key)) is not None]
            if records:
                found[provider_id] = records
        return found

    def requeue(self, records: Iterable[TaskRecord]) -> None:
        """Put back what ``due`` found and the sweep could not fire, for the next sweep."""
        for record in records:
            self._index(record.task.id.encode(), record)

    def records(self) -> Iterator[TaskRecord]:
        for _, raw in self.table.items():
            yield TaskRecord.model_validate_json(raw)
