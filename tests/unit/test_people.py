"""Staff as people (issue 11): named at a start or in a new unit, made known by a roster, and what
they hold, from the order to its cancellation. Planned with ``Planner.plan`` and folded with
``evolve``, as the services do; the invariants of ``tests/support/access.py`` hold throughout."""

from __future__ import annotations

import pytest

from schemas.parsing import InvalidEvent, parse_event
from services.domain.planner import UNKNOWN_PERSON
from services.domain.roster import ROSTER_HELD, ROSTER_NOT_HELD
from services.domain.state import UnitAccess
from tests import factories
from tests.support.access import check_access
from tests.unit import _events as ev
from tests.unit.test_planning import CATALOG, PLANNER, History, one, rules

UNIT_ORDERS = {"siebel-order-accounts", "siths-order-cards", "prator-grant-unit-access", "phoniro-grant-unit-access"}
UNIT_CANCELS = {"closure-siebel-cancel-permissions", "closure-siths-cancel-cards", "closure-prator-end-permissions",
                "closure-phoniro-end-permissions"}
NURSE_SYSTEMS = {"siebel", "siths", "prator", "phoniro"}  # a nurse at the default provider: home care with HSL


def checked(history: History) -> History:
    check_access(history.plans, CATALOG, history.state)
    return history


def person_tasks(plan, person: str) -> dict[str, object]:
    return {task.system: task for task in plan.tasks if task.subject.person_id == ev.hsa(person)}


# -- named at the start ------------------------------------------------------------------------------


def test_staff_named_at_a_start_get_their_own_access_and_the_units_orders_count_the_others():
    history = History()
    plan = history.add(ev.provider_started(units=[ev.unit("u1", staff_count=10, staff=[
        ev.person("N1"), ev.person("A1", role="omvardnadspersonal", licensed=False)])]))
    assert set(person_tasks(plan, "N1")) == NURSE_SYSTEMS
    assert set(person_tasks(plan, "A1")) == {"siebel", "phoniro"}
    assert {rule: one(plan, rule).quantity for rule in UNIT_ORDERS} == dict.fromkeys(UNIT_ORDERS, 8)
    # Her account waits for the unit's structure, planned in the same plan.
    assert person_tasks(plan, "N1")["siebel"].depends_on == [one(plan, "siebel-create-org-structure").id]
    assert history.state.units["u1"].access == {
        CATALOG.rule(rule).access_for: UnitAccess(task_id=one(plan, rule).id, places=8) for rule in UNIT_ORDERS}
    checked(history)


def test_a_unit_whose_staff_are_all_named_orders_no_access_for_the_unit_but_keeps_what_is_the_units():
    history = History()
    plan = history.add(ev.provider_started(units=[ev.unit("u1", staff_count=1, staff=[ev.person("N1")])]))
    assert not UNIT_ORDERS & set(rules(plan))
    assert {"siths-order-card-readers", "siebel-appoint-expert-users", "siebel-book-training",
            "start-readiness-check"} <= set(rules(plan))
    closed = history.add(ev.unit_closed(unit_id="u1"))
    assert not UNIT_CANCELS & set(rules(closed)), "nothing the unit ordered is left to cancel"
    granted = person_tasks(history.plans[0], "N1")
    assert {system: task.revokes for system, task in person_tasks(closed, "N1").items()} == \
        {system: task.id for system, task in granted.items()}
    checked(history)


def test_a_closure_cancels_the_units_orders_for_the_unnamed_and_each_named_person_once():
    history = History()
    started = history.add(ev.provider_started(units=[ev.unit("u1", staff_count=10, staff=[ev.person("N1")])]))
    closed = history.add(ev.unit_closed(unit_id="u1"))
    for cancel in UNIT_CANCELS:
        ordered = one(started, CATALOG.rule(cancel).revokes)
        assert (one(closed, cancel).quantity, one(closed, cancel).revokes) == (9, ordered.id)
    # Per system: one cancellation for the unit's nine unnamed, one for her; no third row.
    per_system = {}
    for task in closed.tasks:
        if CATALOG.rule(task.rule).revokes:
            per_system.setdefault(task.system, []).append(task.subject.person_id)
    assert {system: sorted(map(str, people)) for system, people in per_system.items()} == \
        {system: sorted([str(None), ev.hsa("N1")]) for system in NURSE_SYSTEMS}
    checked(history)


def test_a_unit_recorded_before_omboard_kept_its_orders_still_has_them_cancelled():
    history = History()
    started = history.add(ev.provider_started(units=[ev.unit("u1", staff_count=7)]))
    units = history.state.units
    history.state = history.state.model_copy(update={"units": {**units, "u1": units["u1"].model_copy(update={"access": None})}})
    closed = history.add(ev.unit_closed(unit_id="u1"))
    assert {(one(closed, cancel).quantity, one(closed, cancel).revokes) for cancel in UNIT_CANCELS} == \
        {(7, one(started, CATALOG.rule(cancel).revokes).id) for cancel in UNIT_CANCELS}


def test_someone_already_on_the_staff_is_not_ordered_for_again():
    history = History()
    history.add(ev.provider_started(units=[ev.unit("u1", staff_count=3, staff=[ev.person("N1")])]))
    assert history.add(ev.staff_joined(person="N1")).tasks == [], "a StaffJoined for her plans nothing new"
    again = history.add(ev.provider_started(units=[ev.unit("u1", staff_count=3, staff=[ev.person("N1")])]))
    assert not person_tasks(again, "N1")
    assert set(history.state.staff[ev.hsa("N1")].grants) == {
        "siebel-grant-account", "siths-grant-card", "prator-grant-access", "phoniro-grant-access"}
    checked(history)


def test_a_unit_opened_with_named_staff_orders_theirs():
    history = History()
    history.add(ev.provider_started())
    opened = history.add(ev.unit_opened(unit_id="u2", staff_count=4, staff=[ev.person("N7")]))
    assert set(person_tasks(opened, "N7")) == NURSE_SYSTEMS
    assert one(opened, "siebel-order-accounts").quantity == 3
    checked(history)


# -- a roster --------------------------------------------------------------------------------------


def _counted(staff_count: int = 2) -> History:
    history = History()
    history.add(ev.provider_started(units=[ev.unit("u1", staff_count=staff_count), ev.unit("u2", staff_count=0)]))
    return history


def test_a_rosters_new_people_take_the_places_their_units_orders_made_before_anything_is_ordered():
    history = _counted(staff_count=2)
    plan = history.add(ev.roster(persons=[ev.person(f"N{i}", unit_id="u1") for i in range(3)]))
    assert {task.subject.person_id for task in plan.tasks} == {ev.hsa("N2")}, "two took places, the third is new"
    assert {(holding.person_id, holding.grant_rule) for holding in plan.holdings} == {
        (ev.hsa(f"N{i}"), rule) for i in range(2)
        for rule in ("siebel-grant-account", "siths-grant-card", "prator-grant-access", "phoniro-grant-access")}
    assert {access.places for access in history.state.units["u1"].access.values()} == {0}
    # Who holds a place loses it as a person: the cancellation names the unit's order.
    left = history.add(ev.staff_left(person="N0"))
    order = one(history.plans[0], "siebel-order-accounts")
    assert person_tasks(left, "N0")["siebel"].revokes == order.id
    # The unit's orders are all taken: its closure cancels person by person.
    closed = history.add(ev.unit_closed(unit_id="u1"))
    assert not UNIT_CANCELS & set(rules(closed))
    assert {task.subject.person_id for task in closed.tasks if task.subject.person_id} == {ev.hsa("N1"), ev.hsa("N2")}
    checked(history)


def test_a_place_taken_stands_for_the_persons_own_task_in_what_waits_for_it():
    history = _counted(staff_count=1)
    units = history.state.units
    access = dict(units["u1"].access)
    access["prator-grant-access"] = access["prator-grant-access"].model_copy(update={"places": 0})
    history.state = history.state.model_copy(update={"units": {**units, "u1": units["u1"].model_copy(update={"access": access})}})
    plan = history.add(ev.roster(persons=[ev.person("N1", unit_id="u1")]))
    assert [holding.grant_rule for holding in plan.holdings if holding.grant_rule == "siths-grant-card"]
    prator = person_tasks(plan, "N1")["prator"]
    assert access["siths-grant-card"].task_id in prator.depends_on, "Prator waits for the card ordered with the unit"


def test_a_roster_changes_roles_and_moves_people_between_units():
    history = _counted(staff_count=0)
    history.add(ev.roster(persons=[ev.person("N1", unit_id="u1"), ev.person("N2", unit_id="u1"),
                                   *(ev.person(f"A{i}", role="omvardnadspersonal", licensed=False, unit_id="u1")
                                     for i in range(4))]))
    plan = history.add(ev.roster(as_of="2026-06-01", persons=[
        ev.person("N1", role="omvardnadspersonal", licensed=False, unit_id="u1"), ev.person("N2", unit_id="u2"),
        *(ev.person(f"A{i}", role="omvardnadspersonal", licensed=False, unit_id="u1") for i in range(4))]))
    assert {task.rule for task in person_tasks(plan, "N1").values()} == {"siths-revoke-card", "prator-revoke-access"}
    moved = [task for task in plan.tasks if task.subject.person_id == ev.hsa("N2")]
    assert {(task.subject.unit_id, task.system) for task in moved if CATALOG.rule(task.rule).revokes} == \
        {("u1", system) for system in NURSE_SYSTEMS}
    assert {(task.subject.unit_id, task.system) for task in moved if CATALOG.rule(task.rule).is_grant} == \
        {("u2", system) for system in NURSE_SYSTEMS}
    assert history.state.staff[ev.hsa("N2")].unit_id == "u2"
    checked(history)


def five_named() -> History:
    history = History()
    history.add(ev.provider_started(units=[ev.unit("u1", staff_count=5, staff=[ev.person(f"N{i}") for i in range(5)])]))
    return history


def test_a_roster_may_take_away_a_fifth_of_the_staff_unconfirmed():
    history = five_named()
    plan = history.add(ev.roster(persons=[ev.person(f"N{i}", unit_id="u1") for i in range(4)]))
    assert {task.subject.person_id for task in plan.tasks} == {ev.hsa("N4")} and not plan.warnings
    assert not history.state.staff[ev.hsa("N4")].active
    checked(history)


def test_a_roster_that_takes_away_more_is_held_until_an_operator_confirms_it():
    history = five_named()
    held = history.add(ev.roster(as_of="2026-06-01", persons=[ev.person(f"N{i}", unit_id="u1") for i in range(3)]))
    assert held.tasks == [] and [warning.code for warning in held.warnings] == [ROSTER_HELD]
    assert "2 of the 5" in held.warnings[0].message and ev.hsa("N3") not in held.warnings[0].message
    assert history.state.staff[ev.hsa("N3")].active
    wrong = history.add(ev.roster_confirmed(as_of="2026-05-31"))
    assert wrong.tasks == [] and [warning.code for warning in wrong.warnings] == [ROSTER_NOT_HELD]
    confirmed = history.add(ev.roster_confirmed(as_of="2026-06-01"))
    assert {task.subject.person_id for task in confirmed.tasks} == {ev.hsa("N3"), ev.hsa("N4")}
    assert all(task.due.isoformat() == "2026-06-01" for task in confirmed.tasks)
    assert history.state.held_roster is None and not history.state.staff[ev.hsa("N4")].active
    assert history.add(ev.roster_confirmed(as_of="2026-06-01")).tasks == [], "confirmed once"
    checked(history)


def test_a_later_roster_supersedes_a_held_one():
    history = five_named()
    history.add(ev.roster(as_of="2026-06-01", persons=[ev.person("N0", unit_id="u1")]))
    assert history.state.held_roster is not None
    complete = history.add(ev.roster(as_of="2026-06-08", persons=[ev.person(f"N{i}", unit_id="u1") for i in range(5)]))
    assert complete.tasks == [] and complete.warnings == [] and history.state.held_roster is None
    assert history.add(ev.roster_confirmed(as_of="2026-06-01")).tasks == [], "nothing held to confirm"
    checked(history)


# -- someone omboard never knew --------------------------------------------------------------------


@pytest.mark.parametrize("event", [ev.staff_left(person="X9"), ev.staff_role_changed(person="X9")])
def test_someone_never_known_loses_whatever_the_providers_staff_can_hold(event):
    history = History()
    history.add(ev.provider_started(uses_flexite=True))
    plan = history.add(event)
    assert {task.system for task in plan.tasks} == NURSE_SYSTEMS | {"flexite"}
    assert all(task.subject.person_id == ev.hsa("X9") and task.subject.unit_id is None and task.revokes is None
               for task in plan.tasks)
    (warning,) = plan.warnings
    assert warning.code == UNKNOWN_PERSON and ev.hsa("X9") not in warning.message


def test_at_a_provider_without_health_care_nobody_holds_siths_or_prator():
    history = History()
    history.add(ev.provider_started(hsl=False))
    assert {task.system for task in history.add(ev.staff_left(person="X9")).tasks} == {"siebel", "phoniro"}


# -- the contract -----------------------------------------------------------------------------------


def _errors(raw: dict) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    return {error.field: error.reason for error in caught.value.errors}


def test_a_unit_cannot_name_more_staff_than_it_counts_or_anyone_twice():
    person = factories.person(factories.hsa_id("N1"))
    too_many = factories.provider_started(units=[factories.unit("u1", staff_count=0, staff=[person])])
    assert _errors(too_many) == {"data.units.0.staff": "names 1 persons, more than staff_count 0"}
    twice = factories.provider_started(units=[factories.unit("u1", staff=[person]), factories.unit("u2", staff=[person])])
    assert _errors(twice) == {"data.units.1.staff.0.id": "names a person another unit lists"}
    roster = factories.staff_roster_reported(persons=[factories.roster_person(person["id"])] * 2)
    assert _errors(roster) == {"data.persons.1.id": "names a person listed before"}


# -- what the review found (issue 11) -------------------------------------------------------------


def test_someone_on_a_unit_omboard_never_opened_is_still_someone_the_roster_knows():
    history = _counted(staff_count=0)
    history.add(ev.staff_joined(person="N9", unit_id="elsewhere"))
    four = [ev.person(f"A{i}", unit_id="u1") for i in range(4)]
    again = history.add(ev.roster(persons=[ev.person("N9", unit_id="elsewhere"), *four]))
    assert not person_tasks(again, "N9") and not again.holdings, "known already: nothing is ordered again"
    left = history.add(ev.roster(as_of="2026-06-01", persons=four))  # one of five: not held
    assert {task.subject.person_id for task in left.tasks if CATALOG.rule(task.rule).revokes} == {ev.hsa("N9")}
    checked(history)


def test_a_subcontractor_started_again_keeps_its_orders():
    history = History()
    history.add(ev.provider_started())
    first = history.add(ev.subcontractor_started(staff_count=8))
    again = history.add(ev.subcontractor_started(staff_count=8))
    orders = {task.rule for task in first.tasks if CATALOG.rule(task.rule).access_for}
    assert orders and not {task.rule for task in again.tasks} & orders
    ended = history.add(ev.subcontractor_ended())
    assert {task.revokes for task in ended.tasks if CATALOG.rule(task.rule).revokes} == \
        {task.id for task in first.tasks if CATALOG.rule(task.rule).access_for}


def test_a_correction_that_names_staff_counts_them_among_the_units_orders():
    history = History()
    history.add(ev.provider_started(units=[ev.unit("u1", staff_count=10)]))
    corrected = history.add(ev.provider_started(units=[ev.unit("u1", staff_count=10, staff=[ev.person("N1")])]))
    assert not person_tasks(corrected, "N1") and {holding.person_id for holding in corrected.holdings} == {ev.hsa("N1")}
    assert {access.places for access in history.state.units["u1"].access.values()} == {9}
    checked(history)


def test_a_units_orders_are_cancelled_whatever_the_providers_facts_are_now():
    history = History()
    history.add(ev.provider_started(units=[ev.unit("u1", staff_count=5)]))
    history.add(ev.provider_started(hsl=False, units=[ev.unit("u1", staff_count=5)]))  # a correction: no HSL
    closed = history.add(ev.unit_closed(unit_id="u1"))
    assert {"closure-siths-cancel-cards", "closure-prator-end-permissions"} <= set(rules(closed)), \
        "the cards and Prator access ordered are still cancelled"


def test_a_joiner_already_on_another_unit_moves_there():
    history = _counted(staff_count=0)
    history.add(ev.staff_joined(person="N1", unit_id="u1"))
    moved = history.add(ev.staff_joined(person="N1", unit_id="u2", role="omvardnadspersonal", licensed=False))
    cancelled = {task.system for task in moved.tasks if CATALOG.rule(task.rule).revokes}
    ordered = {task.system for task in moved.tasks if CATALOG.rule(task.rule).is_grant}
    assert cancelled == NURSE_SYSTEMS and ordered == {"siebel", "phoniro"}
    assert all(task.subject.unit_id == "u1" for task in moved.tasks if CATALOG.rule(task.rule).revokes)
    assert set(history.state.staff[ev.hsa("N1")].grants) == {"siebel-grant-account", "phoniro-grant-access"}
    checked(history)


def test_two_rosters_held_on_one_date_are_each_confirmed():
    history = five_named()
    first = history.add(ev.roster(as_of="2026-06-01", persons=[ev.person("N0", unit_id="u1")]))
    second = history.add(ev.roster(as_of="2026-06-01", persons=[ev.person(f"N{i}", unit_id="u1") for i in range(2)]))
    assert [w.code for w in first.warnings] == [w.code for w in second.warnings] == [ROSTER_HELD]
    assert history.state.held_roster.leavers == [ev.hsa(f"N{i}") for i in range(2, 5)]
    confirmed = history.add(ev.roster_confirmed(as_of="2026-06-01"))
    assert {task.subject.person_id for task in confirmed.tasks} == {ev.hsa(f"N{i}") for i in range(2, 5)}
    checked(history)


def test_a_unit_cannot_be_taken_over_by_its_own_provider():
    closure = factories.unit_closed(factories.PROVIDER_ID, taken_over_by=factories.PROVIDER_ID)
    assert _errors(closure) == {"data.taken_over_by": "a provider cannot take a unit over from itself"}


def test_a_confirmation_that_names_its_roster_confirms_that_one_only():
    history = five_named()
    history.add(ev.roster(as_of="2026-06-01", persons=[ev.person("N0", unit_id="u1")]))
    first = history.state.held_roster.roster
    history.add(ev.roster(as_of="2026-06-01", persons=[ev.person(f"N{i}", unit_id="u1") for i in range(2)]))
    held = history.state.held_roster
    assert held.roster != first and held.roster in history.plans[-1].warnings[0].message
    stale = history.add(ev.roster_confirmed(as_of="2026-06-01", roster=first))
    assert stale.tasks == [] and [w.code for w in stale.warnings] == [ROSTER_NOT_HELD]
    confirmed = history.add(ev.roster_confirmed(as_of="2026-06-01", roster=held.roster))
    assert {task.subject.person_id for task in confirmed.tasks} == {ev.hsa(f"N{i}") for i in range(2, 5)}


def test_someone_who_left_and_comes_back_on_a_roster_is_ordered_for_not_given_a_place():
    history = _counted(staff_count=3)
    first = [ev.person(f"N{i}", unit_id="u1") for i in range(5)]
    history.add(ev.roster(persons=first))  # three take the places, two are ordered for
    history.add(ev.roster(as_of="2026-06-01", persons=first[1:]))  # N0 leaves (one of five)
    back = history.add(ev.roster(as_of="2026-07-01", persons=first))
    assert not back.holdings and set(person_tasks(back, "N0")) == NURSE_SYSTEMS
    checked(history)


def test_a_held_roster_seen_again_does_not_answer_itself():
    history = five_named()
    roster = ev.roster(as_of="2026-06-01", persons=[ev.person("N0", unit_id="u1")])
    history.add(roster)
    assert PLANNER.completions(roster, history.state) == [], "its own task stays open"
    assert PLANNER.completions(ev.roster(as_of="2026-06-08", persons=[ev.person("N0", unit_id="u1")]), history.state)
