"""A plan's dates as a schedule over its dependency graph, and the verdict on the date. Pure.

Each task is due on the later of two dates:

* its **checklist date**: its rule's deadline (lead time) counted from its anchor (``Schedule.due``);
* the day it **can be done**: the later of the day its event arrived (``Schedule.earliest_start``)
  and the due date of every task it waits for, plus its own working time (``Rule.takes``).

So a task is never due before what it waits for, and nothing is dated before the event arrived.
When the second date is the later, the task keeps the first as ``checklist_due``, and the task
that decided its date is its *driver*: following drivers back from a task gives the chain of
tasks that decides it.

The **verdict**: when tasks the checklist needs before an event's date (a start, an effective
date, a closing date) cannot be done before it, the plan carries one ``date-at-risk`` warning
with that date, the earliest date they can all be done before (``earliest_feasible``: the plan
scheduled again for later dates until none is late) and the critical chain of the task that is
latest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from schemas.catalog.model import Catalog
from schemas.events import (
    Envelope,
    OrgChangeRequested,
    ProviderStarted,
    StaffJoined,
    StaffRoleChanged,
    SubcontractorEnded,
    SubcontractorStarted,
    UnitClosed,
    UnitOpened,
)
from schemas.identifiers import pseudonym
from schemas.tasks import ChainStep, DateVerdict, Plan, Task, Warning
from services.domain.schedule import Schedule

DATE_AT_RISK = "date-at-risk"

#: The events whose date is a plan: a start, an effective date, a closing date. A leaving (its
#: date is a fact, not a plan) and a roster (who is on the staff already) get no verdict.
PLANNED_DATES = (ProviderStarted, UnitOpened, OrgChangeRequested, UnitClosed, SubcontractorStarted, SubcontractorEnded,
                 StaffJoined, StaffRoleChanged)

#: How many later dates the verdict tries: each try starts past the latest task of the one before,
#: and a catalog whose working times fit its lead times (checked at load) needs two or three.
MAX_TRIES = 50

_ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Prerequisite:
    """A task an earlier plan made that a task of this plan waits for (``planned_key`` parts)."""

    rule: str
    unit_id: str | None
    due: dt.date | None  # None: planned before omboard kept due dates with the plan


@dataclass(frozen=True)
class Timing:
    checklist: dt.date  # the checklist's date (the rule's lead time from its anchor)
    due: dt.date  # the later of that and the day the task can be done
    driver: str | None = None  # the task waited for that decided ``due``, when one did


class Scheduler:
    def __init__(self, catalog: Catalog, schedule: Schedule):
        self.catalog = catalog
        self.schedule = schedule

    def timings(self, tasks: list[Task], event: Envelope, outside: Mapping[str, Prerequisite],
                at: dt.date | None = None) -> dict[str, Timing]:
        """The dates of ``tasks`` (linked: ``depends_on`` set), whose prerequisites outside the plan
        are due as ``outside`` says. ``tasks`` are dated by the checklist for ``event`` as they
        come; ``at``: their checklist dates counted from that date instead of the event's."""
        by_id = {task.id: task for task in tasks}
        start = self.schedule.earliest_start(event)
        found: dict[str, Timing] = {}

        def due_of(dependency: str) -> dt.date | None:
            if (in_plan := by_id.get(dependency)) is not None:
                return visit(in_plan).due
            earlier = outside.get(dependency)
            return earlier.due if earlier is not None else None

        def visit(task: Task) -> Timing:
            if (timed := found.get(task.id)) is not None:
                return timed
            rule = self.catalog.rule(task.rule)
            checklist = task.due if at is None else self.schedule.due(rule, self.schedule.anchor(rule, event, at))
            ready, driver = start, None
            for dependency in task.depends_on:
                due = due_of(dependency)
                if due is not None and due >= ready:  # on a tie, what it waits for decides, not the arrival
                    ready, driver = due, dependency
            done = self.schedule.after(ready, rule.takes)
            timing = Timing(checklist, done, driver) if done > checklist else Timing(checklist, checklist)
            found[task.id] = timing
            return timing

        for task in tasks:
            visit(task)
        return found

    def dated(self, tasks: list[Task], timings: Mapping[str, Timing], event: Envelope) -> list[Task]:
        """``tasks`` due when ``timings`` say, reminded from the day their event arrived, not before."""
        arrived = event.time.date()
        dated = []
        for task in tasks:
            timing, rule = timings[task.id], self.catalog.rule(task.rule)
            dated.append(task.model_copy(update={
                "due": timing.due,
                "checklist_due": timing.checklist if timing.due != timing.checklist else None,
                "remind_on": self.schedule.reminder_dates(rule, timing.due, not_before=arrived),
                "escalate_on": self.schedule.escalation_dates(rule, timing.due),
            }))
        return dated

    def verdict(self, tasks: list[Task], timings: Mapping[str, Timing], event: Envelope,
                outside: Mapping[str, Prerequisite]) -> Warning | None:
        """The ``date-at-risk`` warning when tasks needed before ``event``'s date cannot be done by
        then (``judges_date`` says when a plan is asked)."""
        at_risk = event.anchor_date
        late = _unmet(tasks, timings, at_risk)
        if not late:
            return None
        last = max(late, key=lambda task: (timings[task.id].due, len(_chain(task.id, timings)), task.id))
        by_id = {task.id: task for task in tasks}
        chain = [_step(by_id[task_id], timings[task_id]) for task_id in _chain(last.id, timings)]
        if (first := timings[chain[0].task_id].driver) is not None and (earlier := outside.get(first)) is not None:
            chain.insert(0, self._earlier_step(first, earlier))  # a task an earlier plan made decides it
        feasible = self.earliest_feasible(tasks, event, outside, late, timings)
        described = " → ".join(f"{step.action} in {step.system} ({step.due.isoformat()})" for step in chain)
        return Warning(
            code=DATE_AT_RISK,
            obligation=last.obligation,
            date=at_risk,
            earliest_feasible=feasible,
            chain=chain,
            message=(
                f"{event.type}: the work the checklist needs by {at_risk.isoformat()} cannot be done by then "
                f"({len(late)} of {len(tasks)} tasks); the earliest date it can is "
                f"{feasible.isoformat() if feasible else 'not found'}, decided by {described}"
            ),
        )

    def _earlier_step(self, task_id: str, earlier: Prerequisite) -> ChainStep:
        rule = self.catalog.rule(earlier.rule)
        return ChainStep(task_id=task_id, rule=rule.id, system=rule.system, action=rule.action, unit_id=earlier.unit_id,
                         due=earlier.due)

    def earliest_feasible(self, tasks: list[Task], event: Envelope, outside: Mapping[str, Prerequisite],
                          late: list[Task], timings: Mapping[str, Timing]) -> dt.date | None:
        """The first date by which every task the checklist needs before it can be done: tried
        from just past the latest task, scheduled again for each date tried."""
        tried = event.anchor_date
        for _ in range(MAX_TRIES):
            tried = max(tried + _ONE_DAY, *(_enough(timings[task.id], tried) for task in late))
            timings = self.timings(tasks, event, outside, at=tried)
            late = _unmet(tasks, timings, tried)
            if not late:
                return tried
        return None


def judges_date(event: Envelope, tasks: list[Task], *, correcting: bool) -> bool:
    """Whether a plan of ``event`` says whether its date can be met: an event whose date is a plan
    and had not passed when it arrived, whose plan has work to judge. A correction of a running
    provider's start plans only what no earlier plan made, and re-dates nothing: it says nothing
    either way (the earlier verdict stands)."""
    return (isinstance(event.data, PLANNED_DATES) and bool(tasks) and not correcting
            and event.anchor_date >= event.time.date())


def verdict_in(plan: Plan) -> Warning | None:
    """The plan's ``date-at-risk`` warning, if it has one."""
    return next((warning for warning in plan.warnings if warning.code == DATE_AT_RISK), None)


def _unmet(tasks: list[Task], timings: Mapping[str, Timing], day: dt.date) -> list[Task]:
    """The tasks the checklist needs by ``day`` that cannot be done by then: one needed before it
    (a start's work) must be done before it; one needed on it (a closure's last day) by it. An
    optional step is needed by nobody."""
    late = []
    for task in tasks:
        timing = timings[task.id]
        if not task.optional and (timing.checklist < day <= timing.due or timing.checklist == day < timing.due):
            late.append(task)
    return late


def _enough(timing: Timing, day: dt.date) -> dt.date:
    """The first date a task dated ``timing`` (needed by ``day``) no longer makes late."""
    return timing.due + _ONE_DAY if timing.checklist < day else timing.due


def _chain(task_id: str, timings: Mapping[str, Timing]) -> list[str]:
    """The tasks that decide ``task_id``'s date, first to last: its driver's chain, then itself."""
    chain = [task_id]
    while (driver := timings[chain[-1]].driver) is not None and driver in timings and driver not in chain:
        chain.append(driver)
    return chain[::-1]


def _step(task: Task, timing: Timing) -> ChainStep:
    return ChainStep(task_id=task.id, rule=task.rule, system=task.system, action=task.action,
                     unit_id=task.subject.unit_id, due=timing.due,
                     checklist_due=timing.checklist if timing.due != timing.checklist else None)


def subject_of(event: Envelope) -> str:
    """What ``event``'s date is of, for the verdict kept per subject: a later plan of the same
    subject (a corrected start, a change sent again) has the last word. People by pseudonym."""
    data = event.data
    match data:
        case ProviderStarted():
            return "start"
        case UnitOpened():
            return f"unit-opened:{data.unit.id}"
        case UnitClosed():
            return f"unit-closed:{data.unit_id}"
        case OrgChangeRequested():
            return f"org-change:{data.change_id}"
        case SubcontractorStarted():
            return f"subcontractor-started:{data.subcontractor.id}"
        case SubcontractorEnded():
            return f"subcontractor-ended:{data.subcontractor_id}"
        case StaffJoined():
            return f"staff-joined:{pseudonym(data.person.id)}"
        case StaffRoleChanged():
            return f"staff-role-changed:{pseudonym(data.person_id)}"
    raise ValueError(f"{event.type} has no planned date")


def date_verdict(event: Envelope, plan: Plan) -> DateVerdict | None:
    """The verdict of ``event``'s plan on its date: at risk (its ``date-at-risk`` warning), or met;
    None when the plan did not judge its date (``judges_date``: a leaving, a roster, a report, a
    date already past, a correction, nothing planned)."""
    if not plan.judged_date:
        return None
    warning = verdict_in(plan)
    common = {"provider_id": event.provider_id, "subject": subject_of(event), "event_id": event.id,
              "event_type": event.type, "date": event.anchor_date, "planned_at": event.time}
    if warning is None:
        return DateVerdict(**common, at_risk=False)
    return DateVerdict(**common, at_risk=True, earliest_feasible=warning.earliest_feasible, chain=warning.chain,
                       message=warning.message)
