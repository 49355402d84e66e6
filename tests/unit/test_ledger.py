"""The task ledger and reporting's handlers: pure, no broker."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.catalog import load_catalog
from schemas.status import TaskStatusChange
from schemas.topics import EVENTS, TASK_STATUS, task_topic
from schemas.wire import event_to_kafka, model_to_kafka
from services.domain.ledger import (
    IllegalMove,
    Ledger,
    UnknownTask,
    change_status,
    check_move,
    notifications_due,
    record_task,
)
from services.domain.planner import Planner
from services.domain.state import ProviderState, evolve, fact_changes
from services.reporting.handlers import Context, Effect, decode, handle
from services.reporting.store import TaskStore
from services.runtime.streams import Received
from services.runtime.tables import Table
from tests.unit import _events

CATALOG = load_catalog()
PLANNER = Planner(CATALOG)
NOW = dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.UTC)


def planned_ledger(provider_id: str = "p1") -> tuple[Ledger, list]:
    plan = PLANNER.plan(_events.provider_started(provider_id), ProviderState(provider_id=provider_id))
    ledger = Ledger(provider_id=provider_id)
    for task in plan.tasks:
        ledger, _ = record_task(ledger, task, NOW)
    return ledger, plan.tasks


def change(task_id: str, status: str, change_id: str = "c1", **kw) -> TaskStatusChange:
    return TaskStatusChange(id=change_id, task_id=task_id, provider_id="p1", status=status, by="karin", at=NOW, **kw)


def by_rule(tasks, rule: str):
    return next(task for task in tasks if task.rule == rule)


def test_a_task_is_recorded_once_with_its_planning_in_the_history():
    ledger, tasks = planned_ledger()
    again, added = record_task(ledger, tasks[0], NOW)
    assert not added and again is ledger
    assert ledger.tasks[tasks[0].id].history[0].by == "omboard"


def test_completing_a_prerequisite_opens_what_waited_and_asks_to_tell_its_party():
    ledger, tasks = planned_ledger()
    send = by_rule(tasks, "siebel-send-org-structure")
    create = by_rule(tasks, "siebel-create-org-structure")
    assert ledger.tasks[create.id].status == "blocked" and create.depends_on == [send.id]

    ledger, requests = change_status(ledger, change(send.id, "done"))

    assert ledger.tasks[send.id].status == "done"
    assert ledger.tasks[send.id].history[-1].by == "karin"
    assert ledger.tasks[create.id].status == "open"
    unblocked = [r for r in requests if r.responsible == "klk-it"]
    assert unblocked and unblocked[0].kind == "unblocked"
    assert create.id in [line.task_id for line in unblocked[0].tasks]


def test_a_cancelled_prerequisite_no_longer_holds_its_dependents_up():
    ledger, tasks = planned_ledger()
    send = by_rule(tasks, "siebel-send-org-structure")
    create = by_rule(tasks, "siebel-create-org-structure")
    ledger, _ = change_status(ledger, change(send.id, "cancelled", reason="structure exists already"))
    assert ledger.tasks[create.id].status == "open"


def test_repeated_and_replayed_changes_are_harmless():
    ledger, tasks = planned_ledger()
    send = by_rule(tasks, "siebel-send-org-structure")
    done, _ = change_status(ledger, change(send.id, "done"))
    again, requests = change_status(done, change(send.id, "done", change_id="c2"))
    assert again is done and requests == []


def test_unknown_tasks_and_illegal_moves_are_refused_with_the_reason():
    ledger, tasks = planned_ledger()
    create = by_rule(tasks, "siebel-create-org-structure")
    with pytest.raises(UnknownTask):
        check_move(ledger, "p1", "no-such-task", "done")
    with pytest.raises(UnknownTask):  # a task is found only under its own provider
        check_move(ledger, "p2", create.id, "open")
    with pytest.raises(IllegalMove, match="waits for"):
        check_move(ledger, "p1", create.id, "done")
    send = by_rule(tasks, "siebel-send-org-structure")
    done, _ = change_status(ledger, change(send.id, "done"))
    with pytest.raises(IllegalMove, match="cannot move to open"):
        check_move(done, "p1", send.id, "open")


def test_a_failed_task_needs_a_reason_and_can_be_reopened():
    ledger, tasks = planned_ledger()
    send = by_rule(tasks, "siebel-send-org-structure")
    with pytest.raises(ValueError, match="reason"):
        change(send.id, "failed")
    failed, _ = change_status(ledger, change(send.id, "failed", reason="it.support bounced the mail"))
    reopened, _ = change_status(failed, change(send.id, "open", change_id="c2"))
    assert [entry.status for entry in reopened.tasks[send.id].history][-2:] == ["failed", "open"]


def test_reminders_fire_once_per_date_in_one_digest_per_party():
    ledger, tasks = planned_ledger()
    open_provider_tasks = [t for t in tasks if t.status == "open" and t.responsible == "provider"]
    first = min(day for t in open_provider_tasks for day in t.remind_on)

    ledger, requests = notifications_due(ledger, first, NOW)
    reminders = [r for r in requests if r.kind == "reminder"]
    assert [r.responsible for r in reminders] == ["provider"]  # one digest for the party
    assert {line.task_id for line in reminders[0].tasks} == {t.id for t in open_provider_tasks if first in t.remind_on}

    again, repeated = notifications_due(ledger, first, NOW)
    assert repeated == [] and again == ledger


def test_missed_reminders_are_covered_by_the_newest_one():
    ledger, tasks = planned_ledger()
    task = next(t for t in tasks if t.status == "open" and len(t.remind_on) > 2)
    late_day = task.remind_on[-1]
    ledger, requests = notifications_due(ledger, late_day, NOW)
    assert sum(task.id in [line.task_id for line in r.tasks] for r in requests if r.kind == "reminder") == 1
    assert set(ledger.tasks[task.id].reminded) >= set(task.remind_on)


def test_an_unfinished_task_is_escalated_after_its_deadline_and_a_done_one_is_not():
    planned, tasks = planned_ledger()
    send = by_rule(tasks, "siebel-send-org-structure")
    assert send.escalate_on, "the catalog gives every rule an escalation"
    _ledger, requests = notifications_due(planned, send.escalate_on[0], NOW)
    escalated = [r for r in requests if r.kind == "escalation" and send.id in [line.task_id for line in r.tasks]]
    assert {r.responsible for r in escalated} == set(send.escalate_to or [send.responsible])

    finished, _ = change_status(planned, change(send.id, "done"))
    _, requests = notifications_due(finished, send.escalate_on[0], NOW)
    assert not any(send.id in [line.task_id for line in r.tasks] for r in requests if r.kind == "escalation")


def stored(*ledgers: Ledger) -> TaskStore:
    store = TaskStore(Table("tasks", "omboard-test-tasks-changelog"))  # the real table, no broker
    for partition, ledger in enumerate(ledgers):
        for record in ledger.tasks.values():
            store.put(record, partition)
    return store


def test_the_sweep_index_returns_only_the_tasks_with_something_due():
    ledger, _ = planned_ledger("p1")
    store = stored(ledger)
    first = ledger.next_date()
    assert store.due(first - dt.timedelta(days=1)) == {}
    taken = store.due_keys(first)
    due = store.read(taken)
    assert list(due) == ["p1"]
    assert {r.task.id for r in due["p1"]} == {r.task.id for r in ledger.tasks.values() if min(r.pending_dates(), default=None) == first}
    assert store.due(first) == {}  # popped: the next entry comes with the next write
    fired = due["p1"][0].model_copy(update={"reminded": [first]})
    store.put(fired, None)  # one of them fired and moved on; the others did not
    store.requeue(taken)  # what a sweep could not fire comes again
    assert {r.task.id for r in store.due(first)["p1"]} == {r.task.id for r in due["p1"]} - {fired.task.id}


def test_a_stale_sweep_entry_is_skipped_and_a_rebuild_derives_the_same_index():
    ledger, tasks = planned_ledger("p1")
    store = stored(ledger)
    first = ledger.next_date()
    early = next(r for r in ledger.tasks.values() if min(r.pending_dates(), default=None) == first)
    finished = early.model_copy(update={"status": "done"})
    store.put(finished, None)  # done since its entry was made
    assert early.task.id not in {r.task.id for r in store.due(first).get("p1", [])}

    rebuilt = stored(ledger)
    rebuilt.put(finished, None)
    rebuilt.table.apply_staged()
    rebuilt.rebuild()
    assert set(rebuilt.dependents(by_rule(tasks, "siebel-send-org-structure").id)) == set(
        store.dependents(by_rule(tasks, "siebel-send-org-structure").id))
    assert {r.task.id for r in rebuilt.due(first).get("p1", [])} == {
        r.task.id for r in ledger.tasks.values() if r.task.id != early.task.id and min(r.pending_dates(), default=None) == first}


def test_no_record_grows_with_a_providers_tasks():
    """Issue 9: each task is its own record, so the 2,000th costs what the first did."""
    ledger, _ = planned_ledger("p1")
    store = stored(ledger)
    sizes = [len(value) for _, value in store.table.items()]
    assert len(sizes) == len(ledger.tasks) and max(sizes) < 4_000


# -- reporting's handlers, routed by topic -----------------------------------------------------


def received(topic: str, key: bytes, value: bytes, headers) -> Received:
    return Received(topic=topic, partition=0, offset=0, key=key, value=value, headers=tuple(headers))


def context(ledger: Ledger | None, states: dict) -> Context:
    return Context(
        tasks=ledger or Ledger(provider_id="p1"),
        load_state=lambda pid: states.get(pid) or ProviderState(provider_id=pid),
        planner=PLANNER,
        now=NOW,
    )


def test_handlers_route_tasks_status_changes_and_events():
    ledger, tasks = planned_ledger()
    task = by_rule(tasks, "siebel-send-org-structure")
    effect = handle(decode(received(task_topic("siebel"), *model_to_kafka(task, "p1", None))), context(None, {}))
    assert list(effect.records) == [task.id] and effect.created == [task]

    moved = handle(decode(received(TASK_STATUS, *model_to_kafka(change(task.id, "done"), "p1", None))), context(ledger, {}))
    assert moved.records[task.id].status == "done" and moved.changes
    assert all(record.status == "open" for tid, record in moved.records.items() if tid != task.id)  # what it opened

    with pytest.raises(IllegalMove):
        blocked = by_rule(tasks, "siebel-create-org-structure")
        handle(decode(received(TASK_STATUS, *model_to_kafka(change(blocked.id, "done"), "p1", None))), context(ledger, {}))


def test_a_submitted_service_report_completes_its_month_even_before_the_month_was_opened():
    started = _events.provider_started("p1", services=("sarskilt_boende",), hsl=False)
    state = evolve(ProviderState(provider_id="p1"), started, PLANNER.plan(started, ProviderState(provider_id="p1")), CATALOG)
    report = _events.service_report("p1", unit_id="u1", month="2026-03", submitted_on="2026-04-02")

    effect = handle(decode(received(EVENTS, *event_to_kafka(report))), context(None, {"p1": state}))

    expected = [task.id for task in PLANNER.plan_monthly_reports(state, "2026-03") if task.id in PLANNER.completions(report, state)]
    assert expected, "SB3 applies to special housing"
    assert all(effect.records[task_id].status == "done" for task_id in expected)
    assert effect.state is not None and effect.state.facts.has_processed(report)
    # The month opened later adds nothing: the ids are the same.
    after = Ledger(provider_id="p1").with_records(effect.records)
    for task in PLANNER.plan_monthly_reports(state, "2026-03"):
        assert record_task(after, task, NOW)[1] is (task.id not in effect.records)


class PlansNothing(Planner):
    """Reporting's planner, proving it is not asked to plan: the planners plan, reporting keeps."""

    def plan(self, event, state):
        raise AssertionError(f"reporting planned a {event.type}")


def test_reporting_keeps_what_an_event_changes_without_planning_it_and_completes_a_closures_last_report():
    started = _events.provider_started("p1", services=("sarskilt_boende",), hsl=False)
    closed = _events.unit_closed("p1", unit_id="u1", closing_date="2026-06-15")
    planning = evolve(ProviderState(provider_id="p1"), started, PLANNER.plan(started, ProviderState(provider_id="p1")), CATALOG)
    last = next(task for task in PLANNER.plan(closed, planning).tasks if task.rule == "closure-siebel-last-service-report")
    ledger, _ = record_task(Ledger(provider_id="p1"), last, NOW)  # the planners' task, received as reporting receives it

    kept = ProviderState(provider_id="p1")
    for event in (started, closed):
        effect = handle(decode(received(EVENTS, *event_to_kafka(event))),
                        Context(ledger, lambda pid: kept, PlansNothing(CATALOG), NOW))
        assert effect.state == fact_changes(kept, event, CATALOG)
        kept = kept.applied(effect.state)
    assert kept.unit("u1").closed_on == dt.date(2026, 6, 15) and kept.facts.provider == planning.facts.provider

    report = _events.service_report("p1", unit_id="u1", month="2026-06", submitted_on="2026-07-02")
    effect = handle(decode(received(EVENTS, *event_to_kafka(report))), Context(ledger, lambda pid: kept, PlansNothing(CATALOG), NOW))
    assert effect.records[last.id].status == "done"


def _reporting_folds(events) -> tuple[Ledger, ProviderState, list]:
    """``events`` through reporting's handler one by one, as its agent folds them."""
    ledger, state, effects = Ledger(provider_id="p1"), ProviderState(provider_id="p1"), []
    for event in events:
        effect = handle(decode(received(EVENTS, *event_to_kafka(event))), context(ledger, {"p1": state}))
        effects.append(effect)
        ledger = ledger.with_records(effect.records)
        state = state.applied(effect.state)
    return ledger, state, effects


def _five_named():
    return _events.provider_started("p1", units=[_events.unit("u1", staff_count=5, staff=[
        _events.person(f"N{i}") for i in range(5)])])


def test_reporting_opens_a_held_rosters_task_for_klk_it_and_its_confirmation_completes_it():
    held = _events.roster(as_of="2026-06-01", persons=[_events.person(f"N{i}", unit_id="u1") for i in range(3)])
    ledger, state, (_, opened, confirmed) = _reporting_folds(
        [_five_named(), held, _events.roster_confirmed(as_of="2026-06-01")])
    (task,) = opened.created
    assert (task.rule, task.responsible, task.due, opened.records[task.id].status) == (
        "roster-confirm-held", "klk-it", dt.date(2026, 6, 2), "open")
    assert state.held_roster is None and not state.staff[_events.hsa("N4")].active
    (change,) = confirmed.changes
    assert (change.task_id, change.status, change.by) == (task.id, "done", "Olle Operatör")
    assert ledger.get(task.id).status == "done"


def test_a_later_roster_supersedes_the_held_one_and_completes_its_task():
    held = _events.roster(as_of="2026-06-01", persons=[_events.person("N0", unit_id="u1")])
    complete = _events.roster(as_of="2026-06-08", persons=[_events.person(f"N{i}", unit_id="u1") for i in range(5)])
    ledger, state, (_, opened, again, superseded) = _reporting_folds([_five_named(), held, held.model_copy(
        update={"id": "the-same-roster-again"}), complete])
    (task,) = opened.created
    # Sent again as another event, it is another roster of that date: it supersedes the first, and
    # is held in its turn under a task of its own.
    (held_again,) = again.created
    assert held_again.id != task.id and [change.task_id for change in again.changes] == [task.id]
    assert [change.reason for change in superseded.changes] == ["superseded by the roster of 2026-06-08"]
    assert [change.task_id for change in superseded.changes] == [held_again.id]
    assert ledger.get(held_again.id).status == "done" and not superseded.created and state.held_roster is None


def test_reporting_keeps_nothing_of_an_event_for_a_provider_the_planners_do_not_know():
    early = _events.roster(as_of="2026-06-01", persons=[_events.person("N0", unit_id="u1")])
    effect = handle(decode(received(EVENTS, *event_to_kafka(early))), context(None, {}))
    assert effect == Effect(), "the planners dead-letter it; reporting holds no roster they never saw"


def test_a_service_report_submitted_after_its_due_date_is_recorded_late():
    started = _events.provider_started("p1", services=("sarskilt_boende",), hsl=False)
    state = evolve(ProviderState(provider_id="p1"), started, PLANNER.plan(started, ProviderState(provider_id="p1")), CATALOG)
    (monthly,) = PLANNER.plan_monthly_reports(state, "2026-03")  # due 2026-04-03, the business day before the 5th
    ledger, _ = record_task(Ledger(provider_id="p1"), monthly, NOW)
    late = _events.service_report("p1", unit_id="u1", month="2026-03", submitted_on="2026-04-09")
    effect = handle(decode(received(EVENTS, *event_to_kafka(late))), context(ledger, {"p1": state}))
    record = effect.records[monthly.id]
    assert record.status == "done" and record.late_by_days == (dt.date(2026, 4, 9) - monthly.due).days > 0
    on_time = _events.service_report("p1", unit_id="u1", month="2026-03", submitted_on="2026-04-02")
    effect = handle(decode(received(EVENTS, *event_to_kafka(on_time))), context(ledger, {"p1": state}))
    assert effect.records[monthly.id].late_by_days is None
