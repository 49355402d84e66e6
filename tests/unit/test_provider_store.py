"""The planners' state kept one record per entity (issue 9) plans exactly what the whole state in
memory plans, through settled batches and rebuilt indexes alike. Pure: a real table, no broker."""

from __future__ import annotations

import random

import pytest

from schemas.catalog import load_catalog
from schemas.parsing import parse_event
from services.adapters.provider_store import ProviderStore
from services.domain.planner import Planner
from services.domain.state import ProviderState, changes, evolve
from services.runtime.tables import Table
from tests.chaos.crash import chaos_events
from tests.support.tables import reloaded
from tests.unit import _events

PLANNER = Planner(load_catalog())


def restored(store: ProviderStore) -> ProviderStore:
    """A new worker's store: the changelog's records read into a fresh table, indexes rebuilt."""
    again = ProviderStore(reloaded(store.table))
    again.rebuild()
    return again


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_stored_state_plans_what_the_state_in_memory_plans(seed: int):
    events = [parse_event(raw) for raw in chaos_events(random.Random(seed), 300)]
    memory: dict[str, ProviderState] = {}
    store = ProviderStore(Table("provider-state", "test-provider-state-changelog"))
    for n, event in enumerate(events):
        state = memory.get(event.provider_id) or ProviderState(provider_id=event.provider_id)
        stored = store.state(event.provider_id)
        assert stored.facts.has_processed(event) == state.has_processed(event)
        if state.has_processed(event):
            continue
        plan = PLANNER.plan(event, state)
        assert PLANNER.plan(event, stored) == plan, f"event {n} ({event.type}) planned differently"
        memory[event.provider_id] = evolve(state, event, plan, PLANNER.catalog)
        store.write(changes(stored, event, plan, PLANNER.catalog), partition=hash(event.provider_id) % 4)
        if n % 7 == 0:
            store.table.apply_staged()  # a batch settled
        if n % 50 == 49:
            store.table.apply_staged()
            store = restored(store)  # partitions moved: a new worker takes over
    for provider_id, state in memory.items():
        assert list(PLANNER.plan_monthly_reports(store.state(provider_id), "2026-05")) == \
            PLANNER.plan_monthly_reports(state, "2026-05")


def test_a_provider_with_thousands_of_staff_has_no_large_record():
    store = ProviderStore(Table("provider-state", "test-provider-state-changelog"))
    started = _events.provider_started("p1", units=[_events.unit(f"u{i}") for i in range(50)])
    joined = [_events.staff_joined("p1", person=f"N{i}", unit_id=f"u{i % 50}", event_id=f"j{i}") for i in range(3000)]
    for event in [started, *joined]:
        stored = store.state("p1")
        store.write(changes(stored, event, PLANNER.plan(event, stored), PLANNER.catalog), partition=0)
        store.table.apply_staged()
    sizes = sorted(len(value) for _, value in store.table.items())
    assert len(sizes) > 3000 and sizes[-1] < 64_000
    assert len(store.state("p1").staff_in("u7")) == 60


def test_a_planned_task_keeps_its_due_date_and_one_recorded_before_reads_without_it():
    store = ProviderStore(Table("provider-state", "test-provider-state-changelog"))
    started = _events.provider_started()
    state = ProviderState(provider_id="p1")
    plan = PLANNER.plan(started, state)
    store.write(changes(state, started, plan, PLANNER.catalog), partition=0)
    structure = next(task for task in plan.tasks if task.rule == "siebel-create-org-structure")
    key = f"{structure.rule}||"
    stored = restored(store).state("p1")
    assert (stored.planned_task(key), stored.planned_due(key)) == (structure.id, structure.due)
    # A record of catalog 2026.12.7 or earlier holds the task id alone: a prerequisite with no date.
    store.table.set(b'["planned","p1","siebel-create-org-structure||"]', structure.id.encode(), 0)
    legacy = store.state("p1")
    assert (legacy.planned_task(key), legacy.planned_due(key)) == (structure.id, None)
    joined = PLANNER.plan(_events.staff_joined(), legacy)
    assert structure.id in next(task for task in joined.tasks if task.rule == "siebel-grant-account").depends_on
