"""The schedule over a plan's dependency graph (issue 12): checklist dates, working times, nothing
dated before the event, and the verdict on the date; Uppsala's catalog beside a second, small one
(``catalogs/testkoping.yaml``) whose lead and working times differ, so the dates come from data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from schemas.catalog import CatalogError, load_catalog
from schemas.catalog.model import Duration
from services.domain.calendar import BusinessCalendar
from services.domain.planner import Planner
from services.domain.schedule import LATE_ORDER, Schedule
from services.domain.scheduler import DATE_AT_RISK, date_verdict
from services.domain.state import ProviderState, evolve
from tests.unit import _events as ev
from tests.unit.test_catalog import load_raw, raw, rule_of

D = dt.date.fromisoformat
UPPSALA = load_catalog()
TESTKOPING = load_catalog(Path(__file__).parent / "catalogs" / "testkoping.yaml")
START = "2027-03-01"  # a Monday


def plan_start(catalog, sent: str):
    return Planner(catalog).plan(ev.provider_started(start_date=START, sent=sent), ProviderState(provider_id="p1"))


def dues(plan) -> dict[str, dt.date]:
    return {task.rule: task.due for task in plan.tasks}


def test_in_good_time_every_task_is_due_on_its_catalogs_date():
    plan = plan_start(TESTKOPING, "2026-12-01T09:00:00+01:00")
    assert dues(plan) == {"send-structure": D("2027-02-08"), "create-structure": D("2027-02-22"),
                          "order-accounts": D("2027-02-25"), "readiness": D("2027-02-26")}
    assert plan.warnings == [] and all(task.checklist_due is None for task in plan.tasks)


def test_a_late_start_is_due_as_each_catalog_says_work_takes_and_gets_its_verdict():
    sent = "2027-02-22T09:00:00+01:00"  # a Monday, a week before the start
    small, uppsala = plan_start(TESTKOPING, sent), plan_start(UPPSALA, sent)
    # Testköping: structure sent in 2 business days, the desk's 10, accounts 3, the check 1.
    assert dues(small) == {"send-structure": D("2027-02-24"), "create-structure": D("2027-03-10"),
                           "order-accounts": D("2027-03-15"), "readiness": D("2027-03-16")}
    (verdict,) = [warning for warning in small.warnings if warning.code == DATE_AT_RISK]
    assert (verdict.date, verdict.earliest_feasible) == (D(START), D("2027-03-17"))
    assert [step.rule for step in verdict.chain] == ["send-structure", "create-structure", "order-accounts", "readiness"]
    # Uppsala's KLK IT takes four weeks for the structure: a later date, from the same event.
    (uppsala_verdict,) = [warning for warning in uppsala.warnings if warning.code == DATE_AT_RISK]
    # Sent 1 March, + four weeks (29 March is Easter Monday) 30 March, + 5 business days accounts
    # 6 April, + 1 the check 7 April: a start the day after.
    assert uppsala_verdict.earliest_feasible == D("2027-04-08")
    # Every late order keeps the checklist's date and says when it is due now.
    late = [warning for warning in small.warnings if warning.code == LATE_ORDER]
    assert [warning.obligation for warning in late] == ["SB1"]
    assert "2027-02-08" in late[0].message and "2027-02-24" in late[0].message
    send = next(task for task in small.tasks if task.rule == "send-structure")
    assert send.checklist_due == D("2027-02-08") and send.remind_on == [D("2027-02-23"), D("2027-02-24")]


def test_a_joiner_before_the_start_waits_for_the_structure_an_earlier_plan_made():
    planner = Planner(UPPSALA)
    state = ProviderState(provider_id="p1")
    started = ev.provider_started(start_date=START, sent="2026-12-01T09:00:00+01:00")
    start_plan = planner.plan(started, state)
    state = evolve(state, started, start_plan, UPPSALA)
    structure = next(task for task in start_plan.tasks if task.rule == "siebel-create-org-structure")
    joined = planner.plan(ev.staff_joined(start_date="2027-02-15", sent="2026-12-02T09:00:00+01:00"), state)
    account = next(task for task in joined.tasks if task.rule == "siebel-grant-account")
    assert structure.id in account.depends_on
    # Not 8 February, before the structure it waits for (15 February): three business days after it.
    assert (account.due, account.checklist_due) == (D("2027-02-18"), D("2027-02-08"))
    (verdict,) = [warning for warning in joined.warnings if warning.code == DATE_AT_RISK]
    assert verdict.chain[0].rule == "siebel-create-org-structure" and verdict.chain[0].due == structure.due
    assert verdict.earliest_feasible == D("2027-02-19")


def test_a_working_time_the_lead_time_leaves_no_room_for_is_refused_naming_the_rule(tmp_path):
    data = raw()
    rule_of(data, "siebel-create-org-structure")["takes"] = {"offset": 25, "unit": "business_days"}
    with pytest.raises(CatalogError, match="siebel-create-org-structure.*takes 25 business days.*20 after"):
        load_raw(data, tmp_path)


def test_an_optional_step_is_never_reminded_and_nothing_waits_for_it(tmp_path):
    data = raw()
    rule_of(data, "closure-siebel-agree-extended-access")["reminders"] = [1]
    with pytest.raises(CatalogError, match="optional"):
        load_raw(data, tmp_path)
    data = raw()
    rule_of(data, "closure-siebel-cancel-permissions")["depends_on"] = ["closure-siebel-agree-extended-access"]
    with pytest.raises(CatalogError, match="optional: nothing waits for it"):
        load_raw(data, tmp_path)


@pytest.mark.parametrize(("day", "duration", "done"), [
    ("2027-03-01", Duration(offset=0), "2027-03-01"),  # nothing to do: the day itself
    ("2027-02-27", Duration(offset=0), "2027-03-01"),  # a Saturday: the next business day
    ("2027-03-24", Duration(offset=2), "2027-03-30"),  # past Good Friday and Easter Monday
    ("2027-01-04", Duration(offset=4, unit="weeks"), "2027-02-01"),
    ("2027-03-01", Duration(offset=4, unit="weeks"), "2027-03-30"),  # Easter Monday 29 March: the day after
])
def test_a_working_time_counts_on_the_business_calendar(day, duration, done):
    assert Schedule(BusinessCalendar()).after(D(day), duration) == D(done)


def test_a_start_sent_again_or_corrected_says_nothing_of_its_date_and_the_earlier_verdict_stands():
    planner = Planner(UPPSALA)
    state = ProviderState(provider_id="p1")
    late = ev.provider_started(start_date="2026-03-02", sent="2026-02-18T10:00:00+01:00")
    plan = planner.plan(late, state)
    assert plan.judged_date and date_verdict(late, plan).at_risk
    state = evolve(state, late, plan, UPPSALA)
    for again in (ev.provider_started(start_date="2026-03-02", sent="2026-02-19T10:00:00+01:00"),
                  ev.provider_started(start_date="2027-03-01", sent="2026-02-19T10:00:00+01:00")):
        replanned = planner.plan(again, state)
        assert replanned.tasks == [] and not replanned.judged_date and date_verdict(again, replanned) is None


def test_a_date_already_past_when_its_event_arrives_gets_no_verdict():
    planner = Planner(UPPSALA)
    state = ProviderState(provider_id="p1")
    started = ev.provider_started(start_date="2026-03-02")
    state = evolve(state, started, planner.plan(started, state), UPPSALA)
    closed_late = ev.unit_closed(closing_date="2026-06-30", sent="2026-07-03T09:00:00+02:00")
    plan = planner.plan(closed_late, state)
    assert not plan.judged_date and all(warning.code != DATE_AT_RISK for warning in plan.warnings)
    assert any(warning.code == LATE_ORDER for warning in plan.warnings), "what is late is still said, task by task"


def test_an_optional_step_makes_no_date_at_risk_and_no_late_order():
    planner = Planner(UPPSALA)
    state = ProviderState(provider_id="p1")
    started = ev.provider_started(start_date="2026-03-02")
    state = evolve(state, started, planner.plan(started, state), UPPSALA)
    # Closed the day it is reported: only the optional step (two business days before) is too late.
    plan = planner.plan(ev.unit_closed(closing_date="2026-06-30", sent="2026-06-30T08:00:00+02:00"), state)
    extended = next(task for task in plan.tasks if task.rule == "closure-siebel-agree-extended-access")
    assert extended.optional and extended.checklist_due == D("2026-06-26")
    assert plan.judged_date and plan.warnings == []


def test_a_role_change_ends_the_old_roles_access_from_its_first_day():
    planner = Planner(UPPSALA)
    state = ProviderState(provider_id="p1")
    for event in (ev.provider_started(start_date="2026-03-02"), ev.staff_joined(person="N1")):
        state = evolve(state, event, planner.plan(event, state), UPPSALA)
    changed = planner.plan(ev.staff_role_changed(person="N1", role="omvardnadspersonal", licensed=False,
                                                 effective_date="2026-06-01"), state)
    revoked = {task.rule: task.due for task in changed.tasks if UPPSALA.rule(task.rule).revokes}
    assert revoked and set(revoked.values()) == {D("2026-05-29")}  # ordered by the last day in the old role


def test_a_held_roster_of_long_ago_is_due_from_the_day_it_came():
    planner = Planner(UPPSALA)
    state = ProviderState(provider_id="p1")
    five = [ev.person(f"R{i}") for i in range(5)]
    started = ev.provider_started(start_date="2026-03-02", units=[ev.unit("u1", 5, staff=five)])
    state = evolve(state, started, planner.plan(started, state), UPPSALA)
    roster = ev.roster(persons=[ev.person("R0", unit_id="u1")], as_of="2026-05-04", sent="2026-06-15T09:00:00+02:00")
    state = evolve(state, roster, planner.plan(roster, state), UPPSALA)
    (task,) = planner.held_roster_tasks(state, roster)
    assert (task.checklist_due, task.due) == (D("2026-05-05"), D("2026-06-15"))
    assert task.remind_on == [D("2026-06-15")]
