"""The reporting worker's tasks: one table record per task, and indexes derived from them.

The ``tasks`` table maps a task id to its ``TaskRecord``, on the partition of the task's provider
(the key of every task topic), so the task recovers with the provider's messages. A write stages
the records that changed, nothing else: a provider's 50,000th task costs what its first did. The
table is on disk (``StreamApp.table(on_disk=True)``): a million records held in memory took
1.7-1.8 GB of the worker (``make bench-scale``).

The indexes live in memory:

* what each task counts as (open and overdue counts for metrics, ``TaskStats``) and when it next
  has a reminder or escalation due, with a heap of those dates that the sweep pops: a sweep costs
  what is due, not what is open;
* which tasks may wait for a task (to open them when it is done).

Each changelog record carries its task's index entry in a header (``INDEX_HEADER``), so restoring
a partition builds the indexes from a few dozen bytes a record instead of parsing each record:
parsing took 15 us a record, twice what reading it from Kafka costs. A heap entry or a dependent
may be stale (a date since moved, a task since revoked): each is checked against the facts or the
record it names, and a stale one costs one lookup. The facts of the batch in flight are journalled,
so a rolled-back batch puts back what it changed (rebuilding from the table would block the worker
for seconds at a million tasks).
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import defaultdict
from collections.abc import Iterable, Sequence

from services.domain.ledger import TaskRecord, next_date
from services.domain.stats import StatsKey, TaskStats
from services.runtime.streams import Header, check_fits
from services.runtime.tables import Table

#: Version 2 writes what a task counts as as one field. A record carrying another version's header
#: (or none) is parsed instead.
INDEX_HEADER = "omboard-index-2"
#: What the index keeps of a task: its provider, what it counts as (None: finished), the
#: ordinal of its next sweep date (None: nothing more to fire), and the tasks it waits for.
IndexEntry = tuple[str, StatsKey | None, int | None, list[str]]
Facts = tuple[int, str, StatsKey | None, int | None]  # partition, provider, counted as, next sweep date


def index_entry(record: TaskRecord) -> IndexEntry:
    task = record.task
    upcoming = next_date(record)
    counted = (task.system, task.responsible, task.due.toordinal()) if record.active else None
    return task.subject.provider_id, counted, upcoming.toordinal() if upcoming else None, list(task.depends_on)


def index_header(record: TaskRecord) -> Header:
    """The entry as a header, space-separated: provider, what it counts as (``system/responsible/due
    ordinal``), the next sweep date's ordinal ("-" for none of either), and the tasks it waits for.
    No id holds a space or a slash (``schemas.events``: ids are ``[A-Za-z0-9._:-]``; systems and
    responsible parties are names from a list), and splitting took a tenth of the time JSON did.
    What a task counts as is one field so that restoring looks it up whole: a few thousand distinct
    values over a million tasks, and building and hashing a tuple for each record was a quarter of
    the indexing (``make bench-scale``)."""
    provider, counted, upcoming, waits = index_entry(record)
    fields = [provider, "/".join(map(str, counted)) if counted else "-", str(upcoming) if upcoming is not None else "-",
              *waits]
    return INDEX_HEADER, " ".join(fields).encode()


def _counted_as(field: str) -> StatsKey:
    system, responsible, due = field.split("/")
    return system, responsible, int(due)


def _entry_from(headers: Sequence[Header], value: bytes) -> IndexEntry:
    for name, raw in headers:
        if name == INDEX_HEADER and raw:
            provider, counted, upcoming, *waits = raw.decode().split(" ")
            return (provider, _counted_as(counted) if counted != "-" else None,
                    int(upcoming) if upcoming != "-" else None, waits)
    return index_entry(TaskRecord.model_validate_json(value))  # written without this version's header


class TaskStore:
    def __init__(self, table: Table):
        self.table = table
        self.stats = TaskStats()
        #: task key -> (partition, provider, what it counts as, next sweep date ordinal)
        self._facts: dict[bytes, Facts] = {}
        #: prerequisite -> keys of tasks that may wait for it. Lists, not sets: a million tasks wait
        #: for 750,000 prerequisites, and sets cost restoring a seventh more (``make bench-scale``). A
        #: task's prerequisites never change, so a key is added when it is new to the facts (a key
        #: deleted and written again in one changelog may be listed twice; ``dependents`` reads it once).
        self._dependents: dict[str, list[bytes]] = defaultdict(list)
        self._heap: list[tuple[int, str, bytes]] = []  # (date ordinal, provider, task key)
        #: one object per provider id and per counted-as key, found by the key and by its header field
        self._shared: dict = {}
        self._undo: dict[bytes, Facts | None] = {}  # the facts before the staged writes, by key
        table.on_restore.append(self._restored)
        table.on_forget.append(self._forget)
        table.on_discard.append(self._roll_back)
        table.on_settled.append(self._undo.clear)

    # -- reads (TaskLookup) ------------------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord | None:
        raw = self.table.get(task_id.encode())
        return TaskRecord.model_validate_json(raw) if raw else None

    def dependents(self, task_id: str) -> Iterable[str]:
        return [key.decode() for key in dict.fromkeys(self._dependents.get(task_id, ()))]

    def __contains__(self, task_id: str) -> bool:
        return task_id.encode() in self.table

    # -- writes ------------------------------------------------------------------------------------

    @staticmethod
    def encode(record: TaskRecord) -> bytes:
        """The record as stored; RecordTooLarge when it would not fit in a Kafka record."""
        key = record.task.id.encode()
        return check_fits(f"the record of task {record.task.id}", key, record.model_dump_json().encode(),
                          [index_header(record)])

    def put(self, record: TaskRecord, partition: int | None, encoded: bytes | None = None) -> None:
        """Stage ``record`` on ``partition``: its provider's (None: where it is)."""
        key = record.task.id.encode()
        self.table.set(key, encoded if encoded is not None else self.encode(record), partition, [index_header(record)])
        if key not in self._undo:
            self._undo[key] = self._facts.get(key)
        self._index(self.table.partition_of(key) or 0, key, index_entry(record))

    def _index(self, partition: int, key: bytes, entry: IndexEntry) -> None:
        provider, counted, upcoming, waits = entry
        provider = self._shared.setdefault(provider, provider)
        counted = self._shared.setdefault(counted, counted) if counted else None
        before = self._facts.get(key)
        self._set_facts(key, (partition, provider, counted, upcoming))
        if before is None:  # a scan for the key instead: 2.4 s for 20,000 staff waiting for one structure
            for prerequisite in waits:
                self._dependents[prerequisite].append(key)
        if upcoming is not None and (before is None or before[3] != upcoming):
            heapq.heappush(self._heap, (upcoming, provider, key))

    def _set_facts(self, key: bytes, facts: Facts | None) -> None:
        before = self._facts.pop(key, None)
        if before is not None and before[2] is not None:
            self.stats.remove(before[2])
        if facts is not None:
            self._facts[key] = facts
            if facts[2] is not None:
                self.stats.add(facts[2])

    def _restored(self, partition: int, records: Sequence) -> None:
        """``_index`` for each record of a fetched batch, written out (at a million records the calls
        and lookups it saves were a tenth of a recovery), the counts taken once at its end."""
        facts, shared, dependents, heap = self._facts, self._shared, self._dependents, self._heap
        push = heapq.heappush
        counted_now: list[StatsKey] = []
        counted_before: list[StatsKey] = []
        for record in records:
            key = record.key
            if key is None:
                continue
            before = facts.pop(key, None)
            if before is not None and before[2] is not None:
                counted_before.append(before[2])
            if record.value is None:
                continue
            headers = record.headers
            if headers and headers[0][0] == INDEX_HEADER:  # the only header the store writes
                provider, counted, upcoming, *waits = headers[0][1].decode().split(" ")
                if counted == "-":
                    counted = None
                elif (known := shared.get(counted)) is not None:
                    counted = known
                else:
                    field, counted = counted, _counted_as(counted)
                    counted = shared.setdefault(counted, counted)
                    shared[field] = counted
                upcoming = int(upcoming) if upcoming != "-" else None
            else:
                provider, counted, upcoming, waits = _entry_from(headers or (), record.value)
                if counted is not None:
                    counted = shared.setdefault(counted, counted)
            provider = shared.setdefault(provider, provider)
            if counted is not None:
                counted_now.append(counted)
            facts[key] = (partition, provider, counted, upcoming)
            if before is None:
                for prerequisite in waits:
                    dependents[prerequisite].append(key)
            if upcoming is not None and (before is None or before[3] != upcoming):
                push(heap, (upcoming, provider, key))
        self.stats.add_all(counted_now)
        for counted in counted_before:
            self.stats.remove(counted)

    def _roll_back(self) -> None:
        for key, before in self._undo.items():
            self._set_facts(key, before)
            if before is not None and before[3] is not None:
                heapq.heappush(self._heap, (before[3], before[1], key))
        self._undo.clear()

    def _forget(self, kept: set[int]) -> None:
        """Partitions moved away: their tasks leave the facts, the counts, the heap and the dependents."""
        for key in [key for key, facts in self._facts.items() if facts[0] not in kept]:
            self._set_facts(key, None)
        self._heap = [entry for entry in self._heap if entry[2] in self._facts]
        heapq.heapify(self._heap)
        for prerequisite, waiting in list(self._dependents.items()):
            waiting[:] = [key for key in waiting if key in self._facts]
            if not waiting:
                del self._dependents[prerequisite]

    def rebuild(self) -> None:
        """Every index again from the table, one record at a time."""
        self.stats.clear()
        self._facts.clear()
        self._dependents.clear()
        self._heap.clear()
        self._undo.clear()
        for key, raw in self.table.items():
            self._index(self.table.partition_of(key) or 0, key, index_entry(TaskRecord.model_validate_json(raw)))

    # -- the sweep ---------------------------------------------------------------------------------

    def due_keys(self, today: dt.date) -> dict[str, list[tuple[int, bytes]]]:
        """The tasks with a reminder or escalation reached by ``today``, by provider, as (date
        ordinal, key), taken off the heap: ``requeue`` puts back what was not fired. Costs what is
        due (and what went stale), not what is open."""
        limit = today.toordinal()
        found: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
        seen: set[bytes] = set()
        while self._heap and self._heap[0][0] <= limit:
            day, provider_id, key = heapq.heappop(self._heap)
            facts = self._facts.get(key)
            if facts is not None and facts[3] == day and key not in seen:  # else finished, moved on or gone
                seen.add(key)
                found[provider_id].append((day, key))
        return dict(found)

    def read(self, taken: dict[str, list[tuple[int, bytes]]]) -> dict[str, list[TaskRecord]]:
        """The records of what ``due_keys`` took."""
        found: dict[str, list[TaskRecord]] = {}
        for provider_id, entries in taken.items():
            records = [TaskRecord.model_validate_json(raw) for _, key in entries if (raw := self.table.get(key)) is not None]
            if records:
                found[provider_id] = records
        return found

    def due(self, today: dt.date) -> dict[str, list[TaskRecord]]:
        return self.read(self.due_keys(today))

    def requeue(self, taken: dict[str, list[tuple[int, bytes]]]) -> None:
        """Put back what ``due_keys`` took and what fired since did not move on: the next sweep
        takes it again."""
        for provider_id, entries in taken.items():
            for day, key in entries:
                facts = self._facts.get(key)
                if facts is not None and facts[3] == day:
                    heapq.heappush(self._heap, (day, provider_id, key))

    def upcoming(self) -> int:
        """How many tasks have a sweep date ahead."""
        return sum(1 for facts in self._facts.values() if facts[3] is not None)
