"""Issue 3's scenarios (``tests/support/scenarios.py``) through the services' own handlers in
memory (``tests/support/memory_system.py``): every history published at once, the planners' tasks
exactly the dry run's and right for the scenario. The same histories on the real broker:
``tests/e2e/test_scenarios.py``."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from schemas.parsing import parse_event
from schemas.topics import DEAD_LETTER_TOPICS, NOTIFICATIONS, TASK_TOPICS
from schemas.wire import headers_dict
from services.domain.planner import Planner
from tests import factories as f
from tests.support.access import check_access
from tests.support.memory_system import MemorySystem
from tests.support.scenarios import (
    CATALOG,
    NURSE,
    SCENARIOS,
    dry_run,
    planned_events,
    plans_of,
    scenario_events,
    tasks_for,
)
from tests.support.schedule import check_schedule

NOW = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def published() -> dict[str, list[dict]]:
    return {name: scenario_events(name) for name in SCENARIOS}


@pytest.fixture(scope="module")
def system(published) -> MemorySystem:
    running = MemorySystem(Planner(CATALOG), NOW)
    for events in published.values():
        for raw in events:
            running.publish(parse_event(raw))
    running.run()
    return running


@pytest.fixture(scope="module")
def emitted(system) -> dict[str, dict]:
    """Task id -> task, of everything the planners emitted."""
    return {task["id"]: task for topic in TASK_TOPICS for task in (json.loads(r.value) for r in system.topics[topic])}


def test_the_services_emit_exactly_the_dry_run(published, emitted):
    planned = {task["id"]: task for events in published.values() for task in dry_run(events)}
    assert set(emitted) == set(planned)
    for task_id, task in planned.items():
        assert {k: v for k, v in emitted[task_id].items() if k != "correlation_id"} == \
            {k: v for k, v in task.items() if k != "correlation_id"}


@pytest.mark.parametrize("name", SCENARIOS)
def test_no_scenario_orders_an_access_twice_or_leaves_one_held(name):
    plans, states = plans_of(scenario_events(name))
    for state in states.values():
        check_access(plans, CATALOG, state)


@pytest.mark.parametrize("name", SCENARIOS)
def test_no_scenario_dates_a_task_before_what_it_waits_for_or_before_its_event(name):
    planned, states = planned_events(scenario_events(name))
    for provider_id in states:
        check_schedule(((event, plan) for event, plan in planned if event.provider_id == provider_id), CATALOG)


def test_a_private_home_care_provider_with_health_care_taking_over(emitted):
    tasks = tasks_for(emitted, "scn-takeover")
    systems = {t["system"] for t in tasks}
    assert {"siebel", "siths", "prator", "phoniro"} <= systems and "flexite" not in systems
    assert any(t["obligation"] == "PH6" for t in tasks), "the taking-over company is registered in Phoniro"
    assert all(t["due"] < "2026-04-01" for t in tasks), "everything is in place before the start (ST1)"


def test_an_egen_regi_special_housing_provider_has_no_phoniro_and_orders_in_iris(emitted):
    tasks = tasks_for(emitted, "scn-egen-special-housing")
    assert not any(t["system"] == "phoniro" for t in tasks)
    assert {t["channel"] for t in tasks if t["obligation"] == "SB2"} == {"iris"}


def test_a_closure_that_ceases_returns_the_tokens_and_cancels_everything(emitted, published):
    tasks = tasks_for(emitted, "scn-ceases")
    _, joined_id, closed_id = [e["id"] for e in published["ceases"]]
    tokens = [t for t in tasks if t["obligation"] == "HO-SB4"]
    assert tokens and all("Verkstadsgatan 3B" in t["instructions"]["sv"] + t["instructions"]["en"] for t in tokens)
    granted = {t["system"] for t in tasks if t["subject"]["person_id"] == NURSE and t["plan_id"] == joined_id}
    cancelled = {t["system"] for t in tasks if t["subject"]["person_id"] == NURSE and t["plan_id"] == closed_id}
    assert granted and cancelled == granted, "every access the nurse got is cancelled with the unit"
    closes_flexite = [t for t in tasks if t["obligation"] == "HO-FX1"]
    deviations = [t for t in tasks if t["obligation"] == "HO-FX2"]
    assert closes_flexite and all(set(d["id"] for d in deviations) & set(t["depends_on"]) for t in closes_flexite), \
        "the Flexite unit closes after its deviations are closed"


def test_a_closure_taken_over_leaves_the_tokens_and_gives_both_parties_tasks(emitted, published):
    closed_id = published["taken-over"][-1]["id"]
    handing = [t for t in tasks_for(emitted, "scn-taken-over") if t["plan_id"] == closed_id]
    taking = tasks_for(emitted, "scn-newcomer")
    assert handing and {t["responsible"] for t in handing} == {"handing-over-provider"}
    assert taking and {t["responsible"] for t in taking} == {"taking-over-provider"}
    tokens = [t for t in handing if t["obligation"] == "HO-SB4"]
    assert tokens and not any("Verkstadsgatan" in t["instructions"]["sv"] for t in tokens), "the tokens stay at the unit"


def test_a_subcontractor_from_start_to_end(emitted):
    tasks = tasks_for(emitted, "scn-subcontractor")
    obligations = {t["obligation"] for t in tasks}
    assert {"SC1", "SC2", "SC3"} <= obligations
    assert {t["responsible"] for t in tasks if t["obligation"] in ("SC2", "SC3") and t["subject"]["person_id"]} == {"main-provider"}


def test_an_organisation_change_ordered_too_late_warns_and_notifies_at_once(emitted, system):
    tasks = tasks_for(emitted, "scn-late-org-change")
    ticket = next(t for t in tasks if t["obligation"] == "OC1")
    assert (ticket["checklist_due"], ticket["due"]) == ("2026-05-04", "2026-05-11"), "due as the change arrives, not before"
    late = [json.loads(r.value) for r in system.topics[NOTIFICATIONS]]
    parties = {request["responsible"] for request in late
               if request["provider_id"] == "scn-late-org-change" and request["kind"] == "late-order"
               and ticket["id"] in [line["task_id"] for line in request["tasks"]]}
    assert parties >= {"provider", "klk-it"}, "late-order notices to the provider and KLK IT"


def test_a_nurse_joins_changes_role_and_leaves_with_nothing_left_behind(emitted, published):
    tasks = tasks_for(emitted, "scn-nurse")
    plan_ids = [e["id"] for e in published["nurse"]]
    joined = [t for t in tasks if t["plan_id"] == plan_ids[1]]
    changed = [t for t in tasks if t["plan_id"] == plan_ids[2]]
    left = [t for t in tasks if t["plan_id"] == plan_ids[3]]
    by_system = {t["system"]: t for t in joined}
    assert {"siebel", "siths", "prator", "flexite"} <= set(by_system)
    assert by_system["siths"]["id"] in by_system["prator"]["depends_on"], "the SITHS card before Prator access"
    assert {t["system"] for t in changed} >= {"siths", "prator", "flexite"} and "siebel" not in {t["system"] for t in changed}
    assert {t["system"] for t in left} == set(by_system) - {t["system"] for t in changed}


def test_a_unit_opened_after_the_start_gets_its_own_structures_and_readiness_check(emitted, published):
    opened_id = published["unit-opened"][-1]["id"]
    tasks = [t for t in tasks_for(emitted, "scn-unit-opened") if t["plan_id"] == opened_id]
    assert tasks and {t["subject"]["unit_id"] for t in tasks} == {"scn-unit-opened-u2"}
    assert {"SB1", "SB2", "SB5", "ST1"} <= {t["obligation"] for t in tasks}
    assert all(t["due"] < "2026-08-03" for t in tasks), "in place before the unit opens"


def test_staff_named_at_the_start_get_their_own_access_and_are_cancelled_one_by_one(emitted, published):
    started_id, closed_id = (e["id"] for e in published["named-staff"])
    tasks = tasks_for(emitted, "scn-named-staff")
    started = [t for t in tasks if t["plan_id"] == started_id]
    order = next(t for t in started if t["rule"] == "siebel-order-accounts")
    assert order["quantity"] == 10, "the unit's order is for the ten not named"
    nurse = {t["system"]: t for t in started if t["subject"]["person_id"] == NURSE}
    assert {"siebel", "siths", "prator", "phoniro"} <= set(nurse)
    closed = [t for t in tasks if t["plan_id"] == closed_id]
    cancel = next(t for t in closed if t["rule"] == "closure-siebel-cancel-permissions")
    assert cancel["quantity"] == 10 and cancel["revokes"] == order["id"]
    hers = {t["system"]: t for t in closed if t["subject"]["person_id"] == NURSE}
    assert {system: t["revokes"] for system, t in hers.items()} == {system: t["id"] for system, t in nurse.items()}


def test_a_roster_fills_the_units_places_before_ordering_and_cancels_a_leavers_place(emitted, published):
    _, first_id, second_id = (e["id"] for e in published["roster"])
    tasks = tasks_for(emitted, "scn-roster")
    first = [t for t in tasks if t["plan_id"] == first_id]
    assert {t["subject"]["person_id"] for t in first} == {f.hsa_id("SCN1004")}, "four took places; only the fifth is ordered for"
    order = next(t for t in tasks if t["rule"] == "siebel-order-accounts")
    second = [t for t in tasks if t["plan_id"] == second_id]
    siebel = next(t for t in second if t["system"] == "siebel")
    assert siebel["subject"]["person_id"] == f.hsa_id("SCN1000") and siebel["revokes"] == order["id"]


def test_a_roster_that_leaves_out_too_many_is_held_until_confirmed(emitted, published):
    _, roster_id, confirmed_id = (e["id"] for e in published["roster-held"])
    tasks = tasks_for(emitted, "scn-roster-held")
    assert not [t for t in tasks if t["plan_id"] == roster_id]
    confirmed = [t for t in tasks if t["plan_id"] == confirmed_id]
    assert {t["subject"]["person_id"] for t in confirmed} == {f.hsa_id("SCN2003"), f.hsa_id("SCN2004")}
    assert all(t["revokes"] for t in confirmed)


def test_someone_never_known_who_leaves_loses_whatever_the_staff_can_hold(emitted):
    tasks = [t for t in tasks_for(emitted, "scn-unknown-leaver") if t["subject"]["person_id"]]
    assert {t["system"] for t in tasks} == {"siebel", "siths", "prator", "phoniro"}
    assert all(t["revokes"] is None and t["subject"]["unit_id"] is None for t in tasks)


def test_a_provider_omboard_knows_that_takes_over_a_unit_gets_its_side_planned(emitted, published):
    taker, unit = "scn-taken-over-by-known-taker", "scn-taken-over-by-known-u1"
    handing_start = published["taken-over-by-known"][1]["id"]
    theirs = [t for t in tasks_for(emitted, taker) if t["subject"]["unit_id"] == unit]
    rules = {t["rule"] for t in theirs}
    assert {"phoniro-register-takeover", "siebel-send-org-structure", "nightcare-contact-head",
            "start-readiness-check", "siebel-order-accounts", "closure-taking-over-receive-tokens"} <= rules
    assert all(t["due"] <= "2026-10-01" for t in theirs if t["rule"] != "closure-taking-over-receive-tokens")
    everyone = [*theirs, *(t for t in tasks_for(emitted, "scn-taken-over-by-known") if t["plan_id"] != handing_start)]
    assert not [t for t in everyone if t["action"] == "order-accounts-and-tokens" and t["subject"]["unit_id"] == unit], \
        "the tokens stay with the unit: nobody orders new ones"


def test_a_unit_taken_over_by_a_provider_omboard_does_not_know_is_dead_lettered_naming_it(system):
    reasons = {(headers_dict(r.headers)["dlq_service"], headers_dict(r.headers)["dlq_reason"])
               for topic in DEAD_LETTER_TOPICS for r in system.topics.get(topic, [])}
    assert {service for service, reason in reasons if "scn-newcomer" in reason} == {"orgstructure", "permissions"}


def test_a_planner_who_becomes_the_units_manager_is_an_organisation_change(emitted, published):
    changed_id = published["manager-move"][-1]["id"]
    changed = [t for t in tasks_for(emitted, "scn-manager-move") if t["plan_id"] == changed_id]
    assert {"OC1", "OC2"} <= {t["obligation"] for t in changed}, "the ticket to KLK IT and its work"
    assert {t["rule"] for t in changed if t["subject"]["person_id"]} >= {"flexite-grant-access", "siths-grant-card"}, \
        "the manager's Flexite SoL/LSS role, and the SITHS card health care needs"
    assert "siebel-book-manager-training" not in {t["rule"] for t in changed}, "the course, taken as planner, stays taken"


def test_home_care_without_health_care_that_chose_pratos_category(emitted):
    tasks = tasks_for(emitted, "scn-home-care-without-hsl")
    coordinator = {t["system"] for t in tasks if t["subject"]["person_id"]}
    assert {"prator", "siths"} <= coordinator, "Prator's home-care category, and the card to log in"
    assert "flexite" not in coordinator, "Flexite for HSL only: nothing for an unlicensed coordinator"
