"""The schedule invariants of issue 12, checked over a provider's plans in order.

* A task is never due before a task it waits for (in its plan, or one an earlier plan made) plus
  its own working time, nor before the day its event arrived plus that time (an organisation
  change's work not before its decision either).
* No reminder falls before the event arrived.
* A task whose date is not the checklist's keeps the checklist's, and is due later than it.
* A plan that judges its date carries a ``date-at-risk`` warning exactly when a task the
  checklist needs by that date (an optional step aside) is due after it; the warning names the
  date, a later date that can be met, and a chain of tasks in due order that ends on or after it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from schemas.catalog.model import Catalog
from schemas.events import Envelope
from schemas.tasks import Plan, Task
from services.domain.calendar import BusinessCalendar
from services.domain.schedule import Schedule
from services.domain.scheduler import DATE_AT_RISK


def check_schedule(planned: Iterable[tuple[Envelope, Plan | None]], catalog: Catalog) -> None:
    schedule = Schedule(BusinessCalendar(catalog.calendar.country, catalog.calendar.categories))
    due: dict[str, dt.date] = {}
    for event, plan in planned:
        if plan is None:
            continue
        arrived, earliest = event.time.date(), Schedule.earliest_start(event)
        here = {task.id: task.due for task in plan.tasks}
        for task in plan.tasks:
            takes = catalog.rule(task.rule).takes
            assert task.due >= schedule.after(earliest, takes), f"{task.rule} due {task.due}, before it can be done"
            for prerequisite in task.depends_on:
                before = here.get(prerequisite, due.get(prerequisite))
                assert before is None or task.due >= schedule.after(before, takes), (
                    f"{task.rule} due {task.due}, before {prerequisite} it waits for (due {before}) and its "
                    f"working time ({plan.event_id})")
            assert all(day >= arrived for day in task.remind_on), f"{task.rule} reminded before its event arrived"
            assert task.checklist_due is None or task.checklist_due < task.due, task
        verdicts = [warning for warning in plan.warnings if warning.code == DATE_AT_RISK]
        late = plan.judged_date and any(_needed_and_late(task, event.anchor_date) for task in plan.tasks)
        assert len(verdicts) == (1 if late else 0), (
            f"{len(verdicts)} date-at-risk warnings in a plan whose date is {'not ' if not late else ''}at risk "
            f"({plan.event_id})")
        for verdict in verdicts:
            assert verdict.date == event.anchor_date
            assert verdict.earliest_feasible is not None and verdict.earliest_feasible > verdict.date
            assert verdict.chain, "a verdict names the chain that decides it"
            dues = [step.due for step in verdict.chain]
            assert dues == sorted(dues), f"a chain out of order: {verdict.chain}"
            assert dues[-1] >= verdict.date
        due.update(here)


def _needed_and_late(task: Task, day: dt.date) -> bool:
    """Needed before ``day`` and due on or after it, or needed on ``day`` and due after it."""
    checklist = task.checklist_due or task.due
    return not task.optional and (checklist < day <= task.due or checklist == day < task.due)
