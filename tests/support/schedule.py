"""The schedule invariants of issue 12, checked over a provider's plans in order.

* A task is never due before a task it waits for (in its plan, or one an earlier plan made).
* Nothing is dated before its event arrived: no due date, no reminder (an organisation change's
  work not before its decision either).
* A task whose date is not the checklist's keeps the checklist's, and is due later than it.
* A plan carries at most one ``date-at-risk`` warning; it names the date, a later date that can be
  met, and a chain of tasks in due order that ends in a task due on or after the date at risk.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from schemas.events import Envelope
from schemas.tasks import Plan
from services.domain.schedule import Schedule
from services.domain.scheduler import DATE_AT_RISK


def check_schedule(planned: Iterable[tuple[Envelope, Plan | None]]) -> None:
    due: dict[str, dt.date] = {}
    for event, plan in planned:
        if plan is None:
            continue
        arrived, earliest = event.time.date(), Schedule.earliest_start(event)
        here = {task.id: task.due for task in plan.tasks}
        for task in plan.tasks:
            for prerequisite in task.depends_on:
                before = here.get(prerequisite, due.get(prerequisite))
                assert before is None or task.due >= before, (
                    f"{task.rule} due {task.due} before {prerequisite} it waits for, due {before} ({plan.event_id})")
            assert task.due >= earliest, f"{task.rule} due {task.due}, before {earliest} ({plan.event_id})"
            assert all(day >= arrived for day in task.remind_on), f"{task.rule} reminded before its event arrived"
            assert task.checklist_due is None or task.checklist_due < task.due, task
        verdicts = [warning for warning in plan.warnings if warning.code == DATE_AT_RISK]
        assert len(verdicts) <= 1, f"{len(verdicts)} date-at-risk warnings in one plan ({plan.event_id})"
        for verdict in verdicts:
            assert verdict.date == event.anchor_date
            assert verdict.earliest_feasible is not None and verdict.earliest_feasible > verdict.date
            assert verdict.chain, "a verdict names the chain that decides it"
            dues = [step.due for step in verdict.chain]
            assert dues == sorted(dues), f"a chain out of order: {verdict.chain}"
            assert dues[-1] >= verdict.date
        due.update(here)
