"""What a planned task waits for: the prerequisites its rule names (``depends_on``), found in the
same plan, in the places people took in their unit's orders, or among the tasks earlier plans made.
Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.catalog.model import Catalog
from schemas.tasks import Holding, Task
from services.domain.state import StateView, planned_key


@dataclass(frozen=True)
class Linked:
    """A plan's tasks with what each waits for, and where each prerequisite outside the plan was
    found: its ``planned_key`` in the state (whose record has its due date)."""

    tasks: list[Task]
    outside: dict[str, str]  # task id -> planned key


def link(tasks: list[Task], state: StateView, holdings: Iterable[Holding], catalog: Catalog) -> Linked:
    """``tasks`` with what each waits for: a prerequisite in the same plan, a place its person took in
    their unit's order, or a task an earlier plan made; blocked while it waits."""
    # The first task of each (rule, provider, unit, person) in plan order: finding a
    # prerequisite is then a few lookups, not a scan of the plan (that scan made planning
    # quadratic: minutes for a start with thousands of units).
    first: dict[tuple[str, str, str | None, str | None], tuple[int, str]] = {}
    for index, task in enumerate(tasks):
        subject = task.subject
        first.setdefault((task.rule, subject.provider_id, subject.unit_id, subject.person_id), (index, task.id))
    # A place a person took in their unit's order stands for the person's own task of that rule.
    outside: dict[str, str] = {}
    for holding in holdings:
        first.setdefault((holding.grant_rule, state.provider_id, holding.unit_id, holding.person_id), (-1, holding.task_id))
        for order in catalog.ordering(holding.grant_rule):
            if state.planned_task(key := planned_key(order.id, holding.unit_id, None)) == holding.task_id:
                outside[holding.task_id] = key
    linked = []
    for task in tasks:
        rule = catalog.rule(task.rule)
        in_plan = {dependency: _in_plan(dependency, task, first) for dependency in rule.depends_on}
        # Alternatives for one obligation (the small or the large ticket, both OC1): the one
        # this plan made is the one waited for, not another an earlier change left open.
        answered = {catalog.rule(dependency).obligation for dependency, found in in_plan.items() if found}
        depends_on = []
        for dependency, planned in in_plan.items():
            if planned is not None:
                depends_on.append(planned)
            elif (not (prerequisite := catalog.rule(dependency)).of_one_closure and prerequisite.obligation not in answered
                  and (before := _planned_before(dependency, task, state)) is not None):
                depends_on.append(before[0])
                outside[before[0]] = before[1]
        linked.append(task.model_copy(update={"depends_on": depends_on, "status": "blocked" if depends_on else "open"}))
    return Linked(linked, outside)


def _in_plan(rule_id: str, task: Task, first: dict[tuple[str, str, str | None, str | None], tuple[int, str]]) -> str | None:
    """The task of ``rule_id`` that ``task`` waits for in the same plan: the first one for the same
    unit or person or for the whole provider."""
    subject = task.subject
    in_plan = [
        found
        for unit_id in {None, subject.unit_id}
        for person_id in {None, subject.person_id}
        if (found := first.get((rule_id, subject.provider_id, unit_id, person_id)))
    ]
    return min(in_plan)[1] if in_plan else None


def _planned_before(rule_id: str, task: Task, state: StateView) -> tuple[str, str] | None:
    """The task of ``rule_id`` an earlier plan made that ``task`` waits for, and its planned key.
    None when that prerequisite does not apply to this provider (e.g. no SITHS card without health care)."""
    subject = task.subject
    if subject.provider_id != state.provider_id:
        return None  # the taking-over party's earlier tasks are in its own state, not this one
    for unit_id, person_id in ((subject.unit_id, subject.person_id), (subject.unit_id, None), (None, None)):
        key = planned_key(rule_id, unit_id, person_id)
        if found := state.planned_task(key):
            return found, key
    return None
