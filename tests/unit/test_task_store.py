"""Reporting's tasks kept one record each (issue 9) end where one provider's ledger in memory
ends: tasks, status changes and sweeps in random order, batches settled and indexes rebuilt on
the way. Pure: a real table, no broker."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from schemas.catalog import load_catalog
from schemas.status import TaskStatusChange
from services.domain.ledger import (
    IllegalMove,
    Ledger,
    Overlay,
    TaskRecord,
    UnknownTask,
    change_status,
    fire_due,
    moved,
    new_record,
    notifications_due,
    record_task,
)
from services.domain.planner import Planner
from services.domain.state import ProviderState
from services.reporting.store import INDEX_HEADER, TaskStore
from services.runtime.tables import Table
from tests.support.tables import reloaded
from tests.unit import _events

PLANNER = Planner(load_catalog())
NOW = dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.UTC)


def restored(store: TaskStore) -> TaskStore:
    """A new worker's store, its indexes rebuilt from the records."""
    again = TaskStore(reloaded(store.table))
    again.rebuild()
    return again


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_the_task_store_ends_where_the_ledger_in_memory_ends(seed: int):
    rng = random.Random(seed)
    # A fixed event id: the task ids, and so the walk, are the same whatever ran before.
    tasks = PLANNER.plan(_events.provider_started("p1", units=[_events.unit(f"u{i}") for i in range(4)],
                                                  event_id="walk-start"), ProviderState(provider_id="p1")).tasks
    pending = list(tasks)
    seen: set[str] = set()
    rng.shuffle(pending)
    ledger = Ledger(provider_id="p1")
    store = TaskStore(Table("tasks", "test-tasks-changelog"))
    batch: dict[str, TaskRecord] = {}
    requests_memory, requests_store = [], []
    days = sorted({day for task in tasks for day in [*task.remind_on, *task.escalate_on]})

    def settle() -> None:
        for record in batch.values():
            store.put(record, 0)
        batch.clear()
        store.table.apply_staged()

    for step in range(400):
        view = Overlay(store, batch)
        roll = rng.random()
        if pending and roll < 0.4:
            task = pending.pop()
            ledger, added = record_task(ledger, task, NOW)
            record = new_record(view, task, NOW)
            assert (record is not None) == added
            if record is not None:
                batch[task.id] = record
        elif roll < 0.85 and ledger.tasks:
            task_id = rng.choice(sorted(ledger.tasks))
            status = rng.choice(["done", "cancelled", "failed", "open"])
            change = TaskStatusChange(id=f"c{step}", task_id=task_id, provider_id="p1", status=status, by="karin",
                                      at=NOW, reason="because" if status == "failed" else None)
            try:
                ledger, asked = change_status(ledger, change)
            except (IllegalMove, UnknownTask) as refused:
                with pytest.raises(type(refused)):
                    moved(view, change)
                continue
            changed, asked_too = moved(view, change)
            batch.update(changed)
            requests_memory += asked
            requests_store += asked_too
        else:
            settle()
            today = rng.choice(days)
            ledger, asked = notifications_due(ledger, today, NOW)
            requests_memory += asked
            for provider_id, records in store.due(today).items():
                fired, asked_too = fire_due(provider_id, records, today, NOW)
                requests_store += asked_too
                for record in fired.values():
                    store.put(record, None)
            store.table.apply_staged()
        seen |= {record.status for record in ledger.tasks.values()}
        if step % 97 == 96:
            settle()
            store = restored(store)
    settle()
    assert {tid: store.get(tid) for tid in ledger.tasks} == ledger.tasks
    assert len(list(store.table.items())) == len(ledger.tasks)
    assert sorted(r.id for r in requests_store) == sorted(r.id for r in requests_memory)
    kinds = {r.kind for r in requests_memory}
    assert {"reminder", "escalation", "unblocked"} <= kinds, kinds  # the walk reached every kind of request
    assert seen >= {"done", "open", "blocked"}, seen  # the walk went through them


def test_restoring_builds_the_indexes_from_the_records_headers_as_a_rebuild_would():
    from types import SimpleNamespace

    tasks = PLANNER.plan(_events.provider_started("p1", units=[_events.unit(f"u{i}") for i in range(3)]),
                         ProviderState(provider_id="p1")).tasks
    written = TaskStore(Table("tasks", "test-tasks-changelog"))
    changelog = []  # what the runtime would have produced, headers and all
    for task in tasks:
        written.put(new_record(written, task, NOW), 0)
        changelog += written.table.staged_records()
        written.table.apply_staged()
    done = written.get(tasks[0].id).model_copy(update={"status": "done"})
    written.put(done, None)
    changelog += written.table.staged_records()
    written.table.apply_staged()
    gone = tasks[1].id.encode()
    changelog.append(SimpleNamespace(key=gone, value=None, headers=()))  # a tombstone
    written.table.apply(0, gone, None)
    written.rebuild()

    restored = TaskStore(Table("tasks", "test-tasks-changelog"))
    restored.table.restored(0, [SimpleNamespace(key=r.key, value=r.value, headers=r.headers) for r in changelog])
    assert all(any(name == INDEX_HEADER for name, _ in r.headers) for r in changelog if r.value is not None)
    assert restored._facts == written._facts
    assert restored.stats._active == written.stats._active
    assert all(restored.dependents(task.id) == written.dependents(task.id) for task in tasks)
    counted_as = [facts[2] for facts in restored._facts.values() if facts[2] is not None]
    assert len({id(key) for key in counted_as}) == len(set(counted_as)), "one object per value, kept once"
    day = max(day for *_, day in written._facts.values() if day is not None)
    assert restored.due_keys(dt.date.fromordinal(day)) == written.due_keys(dt.date.fromordinal(day))

    restored.table.keep_only(set())  # the partition moved away: nothing of it is counted any more
    assert restored._facts == {} and not restored.stats._active


def test_a_record_without_this_versions_header_is_indexed_from_its_value():
    from types import SimpleNamespace

    tasks = PLANNER.plan(_events.provider_started("p1"), ProviderState(provider_id="p1")).tasks
    written = TaskStore(Table("tasks", "test-tasks-changelog"))
    for task in tasks:
        written.put(new_record(written, task, NOW), 0)
    changelog = written.table.staged_records()
    written.table.apply_staged()

    earlier = [SimpleNamespace(key=r.key, value=r.value, headers=[("omboard-index", b"p1 siebel provider 1 - x")])
               for r in changelog]  # the first version's header, which this one does not read
    restored = TaskStore(Table("tasks", "test-tasks-changelog"))
    restored.table.restored(0, earlier)
    assert restored._facts == written._facts and restored.stats._active == written.stats._active


def test_a_rolled_back_batch_puts_the_indexes_back_without_reading_the_table():
    tasks = PLANNER.plan(_events.provider_started("p1"), ProviderState(provider_id="p1")).tasks
    store = TaskStore(Table("tasks", "test-tasks-changelog"))
    for task in tasks:
        store.put(new_record(store, task, NOW), 0)
    store.table.apply_staged()
    facts, counts = dict(store._facts), dict(store.stats._active)
    first = store.get(tasks[0].id)
    store.put(first.model_copy(update={"status": "done"}), None)  # a batch that raises later
    store.put(TaskRecord(task=tasks[0].model_copy(update={"id": "new-task"}), status="open"), 0)
    assert store._facts != facts
    store.table.discard_staged()
    assert store._facts == facts and dict(store.stats._active) == counts
    day = store._facts[tasks[0].id.encode()][3]
    assert tasks[0].id.encode() in [key for entries in store.due_keys(dt.date.fromordinal(day)).values()
                                    for _, key in entries]


def test_partitions_moved_away_leave_no_entry_behind():
    store = TaskStore(Table("tasks", "test-tasks-changelog"))
    for partition, provider in enumerate(("p1", "p2")):
        for task in PLANNER.plan(_events.provider_started(provider), ProviderState(provider_id=provider)).tasks:
            store.put(new_record(store, task, NOW), partition)
    store.table.apply_staged()
    store.table.keep_only({1})
    assert {facts[1] for facts in store._facts.values()} == {"p2"}
    assert {provider for _, provider, _ in store._heap} == {"p2"}
    assert all(set(keys) <= store._facts.keys() for keys in store._dependents.values())
