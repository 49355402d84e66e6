"""The whole pipeline in memory (``tests/support/memory_system.py``): the services' handlers,
chained through topics in lists, agree with the dry run, open what waited, and mail what is due."""

from __future__ import annotations

import datetime as dt
import json

from schemas.catalog import load_catalog
from schemas.status import TaskStatusChange
from services.domain.ledger import Ledger, record_task
from services.domain.planner import Planner
from services.domain.state import ProviderState, evolve
from tests.support.memory_system import MemorySystem
from tests.unit import _events

PLANNER = Planner(load_catalog())
NOW = dt.datetime(2025, 11, 3, 10, 0, tzinfo=dt.UTC)


def dry_run(*events) -> Ledger:
    """What ``omboard plan`` says: every event planned over the state folded so far."""
    state, ledger = ProviderState(provider_id="p1"), Ledger(provider_id="p1")
    for event in events:
        plan = PLANNER.plan(event, state)
        state = evolve(state, event, plan, PLANNER.catalog)
        for task in plan.tasks:
            ledger, _ = record_task(ledger, task, NOW)
    return ledger


def started_system(*events) -> MemorySystem:
    system = MemorySystem(PLANNER, NOW)
    for event in events:
        system.publish(event)
    system.run()
    return system


EVENTS = (_events.provider_started("p1"), _events.staff_joined("p1", person="N1"))


def test_the_pipeline_records_what_the_dry_run_plans():
    system = started_system(*EVENTS)
    expected = dry_run(*EVENTS)
    recorded = system.records("p1")
    assert {task_id: record.status for task_id, record in recorded.items()} == \
        {task_id: record.status for task_id, record in expected.tasks.items()}
    assert any(record.task.subject.person_id for record in recorded.values()), "the joiner's tasks are there"
    assert len(system.topics["omboard.events"]) == 2 and system.mails == []  # nothing late, nothing due yet


def test_a_done_prerequisite_opens_what_waited_and_its_party_is_mailed():
    system = started_system(*EVENTS)
    records = system.records("p1")
    send = next(r for r in records.values() if r.task.rule == "siebel-send-org-structure")
    create = next(r for r in records.values() if r.task.rule == "siebel-create-org-structure")
    assert create.status == "blocked" and create.task.depends_on == [send.task.id]

    system.change_status(TaskStatusChange(id="c1", task_id=send.task.id, provider_id="p1", status="done",
                                          by="karin", at=NOW))
    system.run()

    after = system.records("p1")
    assert after[send.task.id].status == "done" and after[create.task.id].status == "open"
    ((request, plan),) = [(r, p) for r, p in system.mails if r.kind == "unblocked"]
    assert request.responsible == "klk-it" and create.task.id in [line.task_id for line in request.tasks]
    assert [mail.recipient for mail in plan.mails], "routed to someone (a contact or the fallback address)"


def test_the_sweep_mails_reminders_and_escalations_once_their_dates_come():
    system = started_system(*EVENTS)
    last = max(record.task.due for record in system.records("p1").values())
    system.sweep(dt.datetime.combine(last + dt.timedelta(days=30), dt.time(8, 0), tzinfo=dt.UTC))
    system.run()
    kinds = {request.kind for request, _ in system.mails}
    assert kinds == {"reminder", "escalation"}
    assert all(plan.mails for _, plan in system.mails)

    mailed = len(system.mails)
    system.sweep(system.now + dt.timedelta(hours=1))  # the same day again: each fired once
    system.run()
    assert len(system.mails) == mailed


def test_a_start_that_cannot_be_met_is_mailed_once_to_the_provider_and_klk_it_together_and_its_verdict_kept():
    late = _events.provider_started("p1", start_date="2025-11-17", sent="2025-11-03T09:00:00+01:00")  # two weeks
    system = started_system(late, _events.staff_joined("p1", person="N1", start_date="2026-06-01"))
    at_risk = [(request, plan) for request, plan in system.mails if request.kind == "date-at-risk"]
    ((request, plan),) = at_risk  # once, though both planners planned the start
    (mail,) = plan.mails
    assert system.settings.klk_it_email in mail.to and len(set(mail.to)) == len(mail.to)
    assert request.verdict is not None and request.verdict.date.isoformat() == "2025-11-17"
    assert [line.task_id for line in request.tasks] == [step.task_id for step in request.verdict.chain]
    # One verdict a planned date, from one planner: at risk for the start, met for the joiner.
    verdicts = [json.loads(record.value) for record in system.topics["omboard.verdicts"]]
    assert [(v["subject"].split(":")[0], v["at_risk"]) for v in verdicts] == [("start", True), ("staff-joined", False)]
    assert _events.hsa("N1") not in json.dumps(verdicts), "people by pseudonym only"
