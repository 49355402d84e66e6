"""The access invariants of issue 11, checked over a provider's plans in order.

* No double orders: for one person and one system, never more than one open grant (a person's own
  grant task, or a place they took in their unit's order).
* One path to the end: a revocation names an open grant of that person in that system, a person
  who left holds nothing, and a closed unit's orders cover nobody.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from schemas.catalog.model import Catalog
from schemas.tasks import Plan
from services.domain.state import ProviderState


def check_access(plans: Iterable[Plan | None], catalog: Catalog, state: ProviderState | None = None) -> None:
    held: dict[tuple[str, str], set[str]] = defaultdict(set)  # (person, system) -> open grants
    for plan in plans:
        if plan is None:
            continue
        for task in plan.tasks:
            rule, person = catalog.rule(task.rule), task.subject.person_id
            if person is None or task.subject.provider_id != (state.provider_id if state else task.subject.provider_id):
                continue
            key = (person, task.system)
            if rule.is_grant:
                assert not held[key], f"{task.rule} ordered again for a person who holds {task.system} ({plan.event_id})"
                held[key].add(task.id)
            elif rule.revokes and task.revokes is not None:
                assert task.revokes in held[key], f"{task.rule} cancels what the person does not hold ({plan.event_id})"
                held[key].discard(task.revokes)
        for holding in plan.holdings:
            key = (holding.person_id, catalog.rule(holding.grant_rule).system)
            assert not held[key], f"a place taken by a person who holds {key[1]} ({plan.event_id})"
            held[key].add(holding.task_id)
    if state is None:
        return
    for unit in state.units.values():
        if not unit.active:  # a closed unit's orders ended: cancelled, or every place taken by someone named
            assert all(access.places == 0 for access in (unit.access or {}).values()), f"unit {unit.id} still orders"
    for person_id, person in state.staff.items():
        still = {system for (pid, system), grants in held.items() if pid == person_id and grants}
        if not person.active:
            assert not still, f"a person who left still holds {sorted(still)}"
        else:
            assert still == {catalog.rule(rule).system for rule in person.grants}, "the state and the plans disagree"
