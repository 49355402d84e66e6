"""Reporting's tasks kept one record each (issue 9) end where one provider's ledger in memory
ends: tasks, status changes and sweeps in random order, batches settled and indexes rebuilt on
the way. Pure: a real table, no broker."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from schemas.catalog import load_catalog
from schemas.status import TaskStatusChange
from services.planning.planner import Planner
from services.planning.state import ProviderState
from services.reporting.ledger import (
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
from services.reporting.store import TaskStore
from services.runtime.tables import Table
from tests.unit import _events

PLANNER = Planner(load_catalog())
NOW = dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.UTC)


def restored(store: TaskStore) -> TaskStore:
    table = Table(store.table.name, store.table.changelog)
    for key, value in store.table.items():
        table.apply(store.table.partition_of(key) or 0, key, value)
    again = TaskStore(table)
    again.rebuild()
    return again


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_the_task_store_ends_where_the_ledger_in_memory_ends(seed: int):
    rng = random.Random(seed)
    tasks = PLANNER.plan(_events.provider_started("p1", units=[_events.unit(f"u{i}") for i in range(4)]),
                         ProviderState(provider_id="p1")).tasks
    pending = list(tasks)
    rng.shuffle(pending)
    ledger = Ledger(provider_id="p1")
    store = TaskStore(Table("tasks", "test-tasks-changelog"))
    batch: dict[str, TaskRecord] = {}
    requests_memory, requests_store = [], []
    days = sorted({day for task in tasks for day in [*task.remind_on, *task.escalate_on]})

    def settle() -> None:
        for task_id, record in batch.items():
            store.put(record, store.get(task_id), 0)
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
                for task_id, record in fired.items():
                    store.put(record, store.get(task_id), None)
            store.table.apply_staged()
        if step % 97 == 96:
            settle()
            store = restored(store)
    settle()
    assert {tid: store.get(tid) for tid in ledger.tasks} == ledger.tasks
    assert len(list(store.table.items())) == len(ledger.tasks)
    assert sorted(r.id for r in requests_store) == sorted(r.id for r in requests_memory)
    kinds = {r.kind for r in requests_memory}
    assert {"reminder", "escalation", "unblocked"} <= kinds, kinds  # the walk reached every kind of request
    assert {r.status for r in ledger.tasks.values()} >= {"done", "open"}
