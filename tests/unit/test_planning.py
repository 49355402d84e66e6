"""Planning scenarios: histories folded with ``Planner.plan`` and ``evolve``, as the services do."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.catalog import load_catalog
from schemas.events import Envelope
from schemas.tasks import Plan, Task
from services.domain.ids import monthly_plan_id, monthly_report_task_id
from services.domain.planner import Planner, UnknownProvider
from services.domain.schedule import LATE_ORDER
from services.domain.scheduler import DATE_AT_RISK
from services.domain.state import ProviderState, evolve, planned_key
from tests.unit import _events as ev

D = dt.date.fromisoformat
CATALOG = load_catalog()
PLANNER = Planner(CATALOG)


class History:
    """A provider's history folded event by event; ``plans`` keeps every plan in order."""

    def __init__(self, provider_id: str = "p1"):
        self.state = ProviderState(provider_id=provider_id)
        self.plans: list[Plan] = []

    def add(self, event: Envelope) -> Plan:
        plan = PLANNER.plan(event, self.state)
        self.state = evolve(self.state, event, plan, CATALOG)
        self.plans.append(plan)
        return plan


def rules(plan: Plan | list[Task]) -> dict[str, list[Task]]:
    tasks = plan.tasks if isinstance(plan, Plan) else plan
    out: dict[str, list[Task]] = {}
    for task in tasks:
        out.setdefault(task.rule, []).append(task)
    return out


def one(plan: Plan | list[Task], rule: str) -> Task:
    (task,) = rules(plan)[rule]
    return task


def systems(plan: Plan) -> set[str]:
    return {task.system for task in plan.tasks}


# -- a private home-care provider with health care taking over a running business --------------------


def test_private_home_care_with_health_care_taking_over():
    history = History()
    started = ev.provider_started(
        regi="privat", services=("hemtjanst",), hsl=True, uses_flexite=False, takeover_from="p0",
        units=[ev.unit("u1", 25, ("Norr", "Söder")), ev.unit("u2", 12)],
    )  # fmt: skip
    plan = history.add(started)
    start = started.data.start_date
    by_rule = rules(plan)

    assert plan.warnings == []
    assert systems(plan) == {"klk-it", "siebel", "boka", "natthemsjukvard", "siths", "prator", "phoniro"}
    assert "flexite" not in systems(plan)
    assert "phoniro-register-takeover" in by_rule  # PH6: only for a takeover
    assert all(task.due < start for task in plan.tasks), "everything before the start (ST1)"
    # Private channels: Sesam for Siebel, the authorization administrator for SITHS.
    assert {task.channel for task in by_rule["siebel-order-accounts"]} == {"sesam"}
    assert {task.channel for task in by_rule["siths-order-cards"]} == {"authorization-admin"}
    # The tokens come with the business taken over: accounts are ordered, tokens are not.
    assert {task.action for task in by_rule["siebel-order-accounts"]} == {"order-accounts"}
    assert "lämnas" not in by_rule["siebel-order-accounts"][0].instructions.sv and "inga nya" in by_rule["siebel-order-accounts"][0].instructions.sv
    # Unit-scoped rules once per unit, provider-scoped once.
    assert len(by_rule["siebel-order-accounts"]) == 2 and len(by_rule["siebel-send-org-structure"]) == 1
    assert {t.subject.unit_id: t.quantity for t in by_rule["siebel-appoint-expert-users"]} == {"u1": 3, "u2": 2}

    # Order: structures sent first (KLK IT takes four weeks), people appointed, structures created,
    # permissions, readiness last.
    def due(rule: str) -> dt.date:
        return by_rule[rule][0].due

    assert due("siebel-send-org-structure") < due("general-appoint-contacts") < due("siebel-create-org-structure")
    assert due("siebel-create-org-structure") < due("siebel-order-accounts") < due("start-readiness-check")
    assert due("siths-order-cards") < due("prator-grant-unit-access")
    assert due("start-readiness-check") == D("2026-02-27")  # the last business day before Monday 2 March
    for task in plan.tasks:
        assert task.status == ("blocked" if task.depends_on else "open")
        assert task.provider_name == "Omsorg p1 AB"
        assert task.plan_id == started.id
        assert task.remind_on and task.remind_on[-1] == task.due
        assert task.escalate_on and task.escalate_on[0] > task.due
        assert task.escalate_to == list(CATALOG.rule(task.rule).escalation.to)
    create = one(plan, "siebel-create-org-structure")
    assert create.escalate_to == ["klk-it"]
    assert create.escalate_on == [D("2026-02-17"), D("2026-02-19")]  # 1 and 3 business days after 16 February
    # The dependencies resolve within the unit: u2's Prator access waits for u2's SITHS cards.
    prator_u2 = next(t for t in by_rule["prator-grant-unit-access"] if t.subject.unit_id == "u2")
    siths_u2 = next(t for t in by_rule["siths-order-cards"] if t.subject.unit_id == "u2")
    assert siths_u2.id in prator_u2.depends_on
    readiness = next(t for t in by_rule["start-readiness-check"] if t.subject.unit_id == "u1")
    assert one(plan, "phoniro-register-takeover").id in readiness.depends_on
    assert history.state.takeover_from == "p0"


def test_a_start_announced_late_warns_for_every_step_already_overdue_and_says_which_date_can_be_met():
    started = ev.provider_started(sent="2026-02-18T10:00:00+01:00")  # a Wednesday; the start Monday 2 March
    plan = History().add(started)
    late = {warning.obligation for warning in plan.warnings if warning.code == LATE_ORDER}
    overdue = {task.obligation for task in plan.tasks if task.checklist_due is not None and task.checklist_due < D("2026-02-18")}
    assert late == overdue and "SB1" in late and "G3" in late
    assert "ST1" not in late  # due 27 February by the checklist: it could still be ordered in time
    # Nothing is dated in the past: what is overdue is due as soon as it can be done.
    assert min(task.due for task in plan.tasks) >= D("2026-02-18")
    assert min(day for task in plan.tasks for day in task.remind_on) >= D("2026-02-18")
    send = one(plan, "siebel-send-org-structure")
    assert (send.checklist_due, send.due) == (D("2026-01-19"), D("2026-02-25"))  # arrival + its five business days
    (verdict,) = [warning for warning in plan.warnings if warning.code == DATE_AT_RISK]
    assert verdict.date == D("2026-03-02") and verdict.obligation == "ST1"
    # 25 Feb structure sent, + 20 business days KLK IT, + 5 accounts and tokens, + 1 the readiness check:
    # 2 April; the first start that leaves it a day before is Friday 3 April.
    assert [(step.rule, step.due) for step in verdict.chain] == [
        ("siebel-send-org-structure", D("2026-02-25")), ("siebel-create-org-structure", D("2026-03-25")),
        ("siebel-order-accounts", D("2026-04-01")), ("start-readiness-check", D("2026-04-02"))]
    assert verdict.earliest_feasible == D("2026-04-03")
    assert "2026-04-03" in verdict.message and "2026-03-02" in verdict.message


# -- an egen-regi special-housing provider without home care -------------------------------------------


def test_egen_regi_special_housing_without_home_care():
    history = History("e1")
    plan = history.add(
        ev.provider_started("e1", regi="egen", services=("sarskilt_boende", "korttid"), hsl=True, uses_flexite=True)
    )
    assert "phoniro" not in systems(plan)
    assert not [task for task in plan.tasks if task.obligation.startswith("PH")]
    assert one(plan, "siebel-order-accounts").channel == "iris"
    assert one(plan, "siths-order-cards").channel == "iris"
    assert one(plan, "flexite-order-unit-permissions").channel == "iris"
    assert one(plan, "flexite-create-org-structure").id in one(plan, "flexite-order-unit-permissions").depends_on

    # A nurse joining: no Phoniro either, Iris for everything ordered.
    nurse = history.add(ev.staff_joined("e1"))
    assert set(rules(nurse)) == {"siebel-grant-account", "siths-grant-card", "prator-grant-access", "flexite-grant-access"}
    assert {task.channel for task in nurse.tasks} == {"iris", "local-admin"}
    # Prator's home-care roles do not apply without home care.
    coordinator = history.add(ev.staff_joined("e1", person="C1", role="samordnare", licensed=False))
    assert set(rules(coordinator)) == {"siebel-grant-account"}
    # Monthly service report for special housing and short-term places.
    (report,) = PLANNER.plan_monthly_reports(history.state, "2026-03")
    assert report.obligation == "SB3" and report.due == D("2026-04-02")
    # Opened once March is over: its reminder of 30 March (three business days before) never comes.
    assert report.remind_on == [D("2026-04-01"), D("2026-04-02")]


# -- closures --------------------------------------------------------------------------------------------


def _staffed(provider_id: str = "p1", **kw) -> History:
    history = History(provider_id)
    history.add(ev.provider_started(provider_id, units=[ev.unit("u1"), ev.unit("u2")], **kw))
    history.add(ev.staff_joined(provider_id, person="N1", unit_id="u1"))
    history.add(ev.staff_joined(provider_id, person="A1", unit_id="u1", role="omvardnadspersonal", licensed=False))
    history.add(ev.staff_joined(provider_id, person="N2", unit_id="u2"))
    return history


def test_a_closure_that_ceases_entirely():
    history = _staffed(uses_flexite=True)
    plan = history.add(ev.unit_closed(unit_id="u1", closing_date="2026-06-30"))
    by_rule = rules(plan)

    tokens = one(plan, "closure-siebel-return-tokens")
    assert tokens.instructions.where == "KLK IT, Verkstadsgatan 3B, Uppsala"
    assert "Verkstadsgatan 3B" in tokens.instructions.sv and tokens.due == D("2026-07-14")
    assert "closure-siebel-leave-tokens" not in by_rule
    assert not [task for task in plan.tasks if task.responsible == "taking-over-provider"]
    assert {task.subject.provider_id for task in plan.tasks} == {"p1"}
    # Every system's closure for the handing-over party, with private channels.
    assert {task.obligation for task in plan.tasks} >= {
        "HO-SB1", "HO-SB2", "HO-SB3", "HO-SB4", "HO-SI1", "HO-PR1", "HO-PR2", "HO-FX1", "HO-FX2", "HO-FX3",
        "HO-PH1", "HO-PH2",
    }  # fmt: skip
    assert one(plan, "closure-flexite-cancel-permissions").channel == "web-form"
    assert one(plan, "closure-siebel-cancel-permissions").channel == "sesam"
    # Deviations closed before the Flexite unit is closed.
    deviations, close = one(plan, "closure-flexite-close-deviations"), one(plan, "closure-flexite-close-unit")
    assert close.depends_on == [deviations.id] and close.status == "blocked" and deviations.due <= close.due
    # The journals are closed while Siebel access still works: the cancellation waits for them.
    journals, cancel = one(plan, "closure-siebel-archive-journals"), one(plan, "closure-siebel-cancel-permissions")
    assert cancel.depends_on == [journals.id] and journals.due <= cancel.due
    # Everyone on the unit loses what they were granted; u2's nurse keeps hers.
    revoked = {(task.subject.person_id, task.rule) for task in plan.tasks if task.subject.person_id}
    assert revoked == {
        (ev.hsa("N1"), "siebel-revoke-account"), (ev.hsa("N1"), "siths-revoke-card"),
        (ev.hsa("N1"), "prator-revoke-access"), (ev.hsa("N1"), "flexite-revoke-access"),
        (ev.hsa("N1"), "phoniro-revoke-access"),
        (ev.hsa("A1"), "siebel-revoke-account"), (ev.hsa("A1"), "phoniro-revoke-access"),
    }  # fmt: skip
    state = history.state
    assert not state.units["u1"].active and state.units["u1"].closed_on == D("2026-06-30")
    assert not state.staff[ev.hsa("N1")].active and state.staff[ev.hsa("N1")].grants == {}
    assert state.staff[ev.hsa("N2")].grants
    # The month it closed is reported by the closure's task; the monthly reports skip the unit after.
    assert [task.subject.unit_id for task in PLANNER.plan_monthly_reports(state, "2026-06")] == ["u2"]
    assert [task.subject.unit_id for task in PLANNER.plan_monthly_reports(state, "2026-05")] == ["u1", "u2"]


def test_a_closure_taken_over_leaves_the_tokens_and_gives_both_parties_tasks():
    history = _staffed(regi="egen")
    plan = history.add(ev.unit_closed(unit_id="u1", closing_date="2026-06-30", taken_over_by="p9"))
    by_rule = rules(plan)

    assert "closure-siebel-return-tokens" not in by_rule
    assert one(plan, "closure-siebel-leave-tokens").subject.provider_id == "p1"
    taking_over = [task for task in plan.tasks if task.responsible == "taking-over-provider"]
    # The taker orders its staff's access in its own plan (services.domain.handover); here it is told
    # only to take over the tokens left at the unit.
    assert {task.rule for task in taking_over} == {"closure-taking-over-receive-tokens"}
    for task in taking_over:
        assert task.subject.provider_id == "p9" and task.subject.unit_id == "u1"
        assert task.provider_name is None  # the planner does not know the taking-over provider's name
        assert task.channel == "provider"  # the taking-over provider's regi is not known here
    handing_over = {task.obligation for task in plan.tasks if task.responsible == "handing-over-provider"}
    assert {"HO1", "HO-SB1", "HO-SB2", "HO-SB3", "HO-SB4", "HO-SI1", "HO-PR1", "HO-PR2"} <= handing_over
    # Egen regi cancels in Iris.
    assert one(plan, "closure-siebel-cancel-permissions").channel == "iris"
    assert one(plan, "closure-siths-cancel-cards").channel == "iris"
    assert {t.channel for t in plan.tasks if t.rule == "siths-revoke-card"} == {"iris"}
    # The taking-over party's tasks stay out of the handing-over party's state.
    assert planned_key("closure-taking-over-receive-tokens", "u1", None) not in history.state.planned
    assert planned_key("closure-siebel-leave-tokens", "u1", None) in history.state.planned


def test_the_last_service_report_is_completed_by_the_report_for_the_closing_month():
    history = _staffed()
    plan = history.add(ev.unit_closed(unit_id="u1", closing_date="2026-06-15"))
    last = one(plan, "closure-siebel-last-service-report")
    assert last.due == D("2026-07-03")
    completes = PLANNER.completions(ev.service_report(unit_id="u1", month="2026-06"), history.state)
    monthly = monthly_report_task_id("siebel-monthly-service-report", "p1", "u1", "2026-06")
    assert set(completes) == {last.id, monthly}
    # A report for an earlier month names that month's tasks only: its monthly one, and an id the
    # closure's task does not have (it is June's), so the ledger completes the monthly one alone.
    earlier = PLANNER.completions(ev.service_report(unit_id="u1", month="2026-05"), history.state)
    assert monthly_report_task_id("siebel-monthly-service-report", "p1", "u1", "2026-05") in earlier
    assert last.id not in earlier
    # The event itself plans nothing.
    assert PLANNER.plan(ev.service_report(unit_id="u2"), history.state).tasks == []


# -- monthly service reports ------------------------------------------------------------------------------


def test_monthly_reports_are_deterministic_and_complete_by_unit_and_month():
    history = History()
    history.add(ev.provider_started(units=[ev.unit("u1"), ev.unit("u2")]))
    march = PLANNER.plan_monthly_reports(history.state, "2026-03")
    assert [task.id for task in march] == [task.id for task in PLANNER.plan_monthly_reports(history.state, "2026-03")]
    assert {task.id for task in march} == {
        monthly_report_task_id("siebel-monthly-service-report", "p1", unit, "2026-03") for unit in ("u1", "u2")
    }
    assert PLANNER.monthly_report_task_id("siebel-monthly-service-report", "p1", "u1", "2026-03") == march[0].id
    for task in march:
        assert task.plan_id == monthly_plan_id("2026-03")
        assert task.obligation == "SB3" and task.status == "open" and task.due == D("2026-04-02")
        assert task.catalog_version == CATALOG.version
    april = PLANNER.plan_monthly_reports(history.state, "2026-04")
    assert not {task.id for task in april} & {task.id for task in march}
    report = ev.service_report(unit_id="u2", month="2026-03")
    assert monthly_report_task_id("siebel-monthly-service-report", "p1", "u2", "2026-03") in PLANNER.completions(report, history.state)
    assert not {task.id for task in march if task.subject.unit_id == "u1"} & set(PLANNER.completions(report, history.state))
    assert PLANNER.completions(ev.staff_left(), history.state) == []


def test_no_monthly_report_before_the_start_for_lss_or_for_a_subcontractors_organisation():
    history = History()
    history.add(ev.provider_started(start_date="2026-03-02"))
    assert PLANNER.plan_monthly_reports(history.state, "2026-02") == []
    assert len(PLANNER.plan_monthly_reports(history.state, "2026-03")) == 1
    history.add(ev.subcontractor_started())
    assert [t.subject.unit_id for t in PLANNER.plan_monthly_reports(history.state, "2026-06")] == ["u1"]

    lss = History("l1")
    lss.add(ev.provider_started("l1", services=("lss",)))
    assert PLANNER.plan_monthly_reports(lss.state, "2026-03") == []
    assert PLANNER.plan_monthly_reports(ProviderState(provider_id="nobody"), "2026-03") == []
    with pytest.raises(ValueError, match="YYYY-MM"):
        PLANNER.plan_monthly_reports(history.state, "2026-3")


# -- a subcontractor from start to end --------------------------------------------------------------------


def test_a_subcontractor_from_start_to_end():
    history = History()
    history.add(ev.provider_started(regi="privat", uses_flexite=True))
    started = history.add(ev.subcontractor_started(sub_id="sub1", start_date="2026-05-04", staff_count=8))
    order, create = one(started, "subcontractor-order-org"), one(started, "subcontractor-create-org")
    permissions = one(started, "subcontractor-order-siebel-accounts")
    assert order.responsible == "main-provider" and order.subject.unit_id == "sub1"
    assert create.depends_on == [order.id] and permissions.depends_on == [create.id]
    assert order.due < create.due < permissions.due < D("2026-05-04")
    # The existing staff's access: one order per system through that system's channel, as for own units.
    assert {(task.system, task.channel) for task in started.tasks if task.obligation == "SC2"} == {
        ("siebel", "sesam"), ("siths", "authorization-admin"), ("prator", "local-admin"), ("flexite", "web-form"),
        ("phoniro", "local-admin")}  # fmt: skip
    assert one(started, "subcontractor-order-siths-cards").id in one(started, "subcontractor-grant-prator-access").depends_on
    assert history.state.units["sub1"].subcontractor_id == "sub1"

    # Subcontractor staff: the main provider orders their access (SC2), after the organisation exists.
    joined = history.add(ev.staff_joined(person="S1", unit_id="sub1", start_date="2026-05-04"))
    assert {task.obligation for task in joined.tasks} == {"SC2"}
    assert {task.responsible for task in joined.tasks} == {"main-provider"}
    assert set(rules(joined)) == {
        "siebel-grant-account", "siths-grant-card", "prator-grant-access", "flexite-grant-access", "phoniro-grant-access",
    }  # fmt: skip
    for task in joined.tasks:
        if task.rule != "siths-grant-card":
            assert create.id in task.depends_on, task.rule
    # Own staff of the same provider are the provider's own (SB2 ...).
    own = history.add(ev.staff_joined(person="N1", unit_id="u1"))
    assert one(own, "siebel-grant-account").obligation == "SB2"
    assert one(own, "siebel-grant-account").responsible == "provider"

    ended = history.add(ev.subcontractor_ended(sub_id="sub1", end_date="2026-09-30"))
    assert one(ended, "subcontractor-cancel-org").channel == "it-support"
    assert one(ended, "subcontractor-cancel-org").due == D("2026-09-30")
    person_tasks = [task for task in ended.tasks if task.subject.person_id]
    assert {task.subject.person_id for task in person_tasks} == {ev.hsa("S1")}, "own staff keep their access"
    assert {task.rule for task in person_tasks} == {
        "siebel-revoke-account", "siths-revoke-card", "prator-revoke-access", "flexite-revoke-access", "phoniro-revoke-access",
    }  # fmt: skip
    assert {task.obligation for task in ended.tasks} == {"SC3"}
    assert {task.responsible for task in ended.tasks} == {"main-provider"}
    # Every system's access ends through its channel, and the tokens go back to KLK IT.
    assert {(task.system, task.channel) for task in ended.tasks if not task.subject.person_id} == {
        ("klk-it", "it-support"), ("siebel", "sesam"), ("siebel", "provider"), ("siths", "authorization-admin"),
        ("prator", "local-admin"), ("flexite", "web-form"), ("phoniro", "local-admin")}  # fmt: skip
    tokens = one(ended, "subcontractor-return-tokens")
    assert "Verkstadsgatan 3B" in tokens.instructions.sv and tokens.due > D("2026-09-30")
    state = history.state
    assert not state.subcontractors["sub1"].active and not state.units["sub1"].active
    assert not state.staff[ev.hsa("S1")].active and state.staff[ev.hsa("N1")].active


# -- an organisation change ordered too late ---------------------------------------------------------------


def test_an_organisation_change_decided_too_close_to_its_date_is_at_risk_from_the_decision():
    history = History()
    history.add(ev.provider_started())
    plan = history.add(ev.org_change(size="small", decided_on="2026-03-20", effective_date="2026-04-01"))
    ticket, carry_out = one(plan, "orgchange-ticket-small"), one(plan, "orgchange-carry-out-small")
    assert ticket.due == D("2026-03-20")  # at the decision, not four weeks before 1 April
    assert "orgchange-ticket-large" not in rules(plan)
    assert carry_out.depends_on == [ticket.id]
    # KLK IT's four weeks count from the decision: Friday 17 April, not the checklist's 31 March.
    assert (carry_out.due, carry_out.checklist_due) == (D("2026-04-17"), D("2026-03-31"))
    (warning,) = plan.warnings
    assert (warning.code, warning.obligation, warning.date, warning.earliest_feasible) == (
        DATE_AT_RISK, "OC2", D("2026-04-01"), D("2026-04-18"))
    assert [step.rule for step in warning.chain] == ["orgchange-ticket-small", "orgchange-carry-out-small"]


def test_an_organisation_change_reported_after_its_decision_is_a_late_order_due_as_it_arrives():
    history = History()
    history.add(ev.provider_started())
    plan = history.add(ev.org_change(size="small", decided_on="2026-03-02", effective_date="2026-06-01",
                                     sent="2026-03-11T10:00:00+01:00"))
    ticket = one(plan, "orgchange-ticket-small")
    assert (ticket.due, ticket.checklist_due) == (D("2026-03-11"), D("2026-03-02"))
    (warning,) = plan.warnings
    assert warning.code == LATE_ORDER and warning.obligation == "OC1"
    assert "2026-03-02" in warning.message and "2026-03-11" in warning.message
    assert PLANNER.schedule.is_late(ev.org_change(decided_on="2026-03-02", sent="2026-03-11T10:00:00+01:00"), ticket)
    assert one(plan, "orgchange-carry-out-small").due == D("2026-05-29")  # 8 April by the four weeks; the checklist's is later


def test_a_large_change_needs_ten_weeks():
    history = History()
    history.add(ev.provider_started())
    on_time = history.add(ev.org_change(size="large", decided_on="2026-01-05", effective_date="2026-04-01"))
    assert one(on_time, "orgchange-ticket-large").due == D("2026-01-05")
    assert one(on_time, "orgchange-carry-out-large").due == D("2026-03-31")  # 16 March by the ten weeks: in time
    assert on_time.warnings == []
    too_late = history.add(ev.org_change(size="large", decided_on="2026-02-02", effective_date="2026-04-01"))
    assert one(too_late, "orgchange-carry-out-large").due == D("2026-04-13")  # ten weeks from 2 February
    assert [(warning.code, warning.obligation) for warning in too_late.warnings] == [(DATE_AT_RISK, "OC2")]
    # Issue 12's example: decided 2027-05-20 for 2027-06-14. The ticket at the decision (not six
    # weeks before it), KLK IT's ten weeks from there, and the first effective date that allows them.
    example = history.add(ev.org_change(size="large", decided_on="2027-05-20", effective_date="2027-06-14",
                                        sent="2027-05-20T09:00:00+01:00"))
    assert one(example, "orgchange-ticket-large").due == D("2027-05-20")
    carry_out = one(example, "orgchange-carry-out-large")
    assert (carry_out.due, carry_out.checklist_due) == (D("2027-07-29"), D("2027-06-11"))
    (verdict,) = example.warnings
    assert (verdict.date, verdict.earliest_feasible) == (D("2027-06-14"), D("2027-07-30"))


# -- a nurse who joins, changes role, and leaves -----------------------------------------------------------


def test_a_nurse_joins_changes_role_and_leaves():
    history = History()
    history.add(ev.provider_started(regi="privat", services=("sarskilt_boende",), hsl=True, uses_flexite=True))
    nurse = ev.hsa("N1")

    joined = history.add(ev.staff_joined(person="N1", role="sjukskoterska", licensed=True, start_date="2026-04-01"))
    by_rule = rules(joined)
    assert set(by_rule) == {"siebel-grant-account", "siths-grant-card", "prator-grant-access", "flexite-grant-access"}
    siths, prator = one(joined, "siths-grant-card"), one(joined, "prator-grant-access")
    assert siths.id in prator.depends_on and prator.status == "blocked"
    assert siths.due < prator.due < D("2026-04-01")
    # The structures from the start plan are prerequisites too (the ledger opens the task once they are done).
    start_plan = history.plans[0]
    assert one(start_plan, "siebel-create-org-structure").id in one(joined, "siebel-grant-account").depends_on
    assert one(start_plan, "prator-create-org-structure").id in prator.depends_on
    assert set(history.state.staff[nurse].grants) == set(by_rule)

    changed = history.add(ev.staff_role_changed(person="N1", role="omvardnadspersonal", licensed=False, effective_date="2026-06-01"))
    assert set(rules(changed)) == {"siths-revoke-card", "prator-revoke-access", "flexite-revoke-access"}
    # Ordered by the last day in the old role (Friday 29 May), effective from the first in the new one.
    assert all(task.due == D("2026-05-29") for task in changed.tasks)
    assert {task.channel for task in changed.tasks} == {"authorization-admin", "local-admin", "web-form"}
    assert set(history.state.staff[nurse].grants) == {"siebel-grant-account"}, "Siebel is kept"

    left = history.add(ev.staff_left(person="N1", end_date="2026-08-31"))
    assert set(rules(left)) == {"siebel-revoke-account"}, "everything still granted is cancelled, nothing twice"
    assert one(left, "siebel-revoke-account").channel == "sesam"
    assert not history.state.staff[nurse].active and history.state.staff[nurse].grants == {}
    # Leaving again changes nothing.
    assert history.add(ev.staff_left(person="N1")).tasks == []


def test_a_role_change_grants_the_difference():
    history = History()
    history.add(ev.provider_started(services=("hemtjanst",), hsl=True, uses_flexite=False, prator_home_care=True))
    history.add(ev.staff_joined(person="A1", role="omvardnadspersonal", licensed=False))
    assert set(history.state.staff[ev.hsa("A1")].grants) == {"siebel-grant-account", "phoniro-grant-access"}

    promoted = history.add(ev.staff_role_changed(person="A1", role="enhetschef", licensed=False, effective_date="2026-06-01"))
    # A home-care manager at a provider that chose Prator's home-care category: a SITHS card
    # (managers) and Prator (the home-care role); Siebel and Phoniro kept.
    assert {task.rule for task in promoted.tasks if CATALOG.rule(task.rule).is_grant} == {"siths-grant-card",
                                                                                         "prator-grant-access"}
    assert "siebel-book-manager-training" in rules(promoted), "and the managers' course"
    assert one(promoted, "siths-grant-card").id in one(promoted, "prator-grant-access").depends_on
    assert all(task.due < D("2026-06-01") for task in promoted.tasks)
    # Becoming a manager moves responsibility: an organisation change, on the person's unit.
    ticket, carried_out = one(promoted, "orgchange-ticket-small"), one(promoted, "orgchange-carry-out-small")
    # A move has no decision of its own: the ticket is due the day it is reported (3 November 2025).
    assert (ticket.obligation, ticket.due, ticket.subject.unit_id) == ("OC1", D("2025-11-03"), "u1")
    assert carried_out.obligation == "OC2" and carried_out.depends_on == [ticket.id]
    # Back again: the two are taken away, and responsibility moves again.
    demoted = history.add(ev.staff_role_changed(person="A1", role="omvardnadspersonal", licensed=False))
    assert set(rules(demoted)) == {"siths-revoke-card", "prator-revoke-access", "orgchange-ticket-small",
                                   "orgchange-carry-out-small"}


def test_a_role_change_or_leaving_for_someone_gone_plans_nothing():
    history = History()
    history.add(ev.provider_started())
    history.add(ev.staff_joined(person="X1"))
    history.add(ev.staff_left(person="X1"))
    assert history.add(ev.staff_role_changed(person="X1")).tasks == []
    assert history.add(ev.staff_left(person="X1")).tasks == []


# -- identity, replays, and what cannot be planned ------------------------------------------------------------


def test_a_replayed_event_yields_the_same_task_ids():
    started = ev.provider_started()
    first = PLANNER.plan(started, ProviderState(provider_id="p1"))
    again = PLANNER.plan(started, ProviderState(provider_id="p1"))
    assert [task.id for task in first.tasks] == [task.id for task in again.tasks]
    assert len({task.id for task in first.tasks}) == len(first.tasks)
    other = PLANNER.plan(ev.provider_started(), ProviderState(provider_id="p1"))
    assert not {task.id for task in other.tasks} & {task.id for task in first.tasks}


def test_a_second_provider_started_plans_only_what_no_earlier_plan_made():
    history = History()
    first = history.add(ev.provider_started(units=[ev.unit("u1")]))
    again = history.add(ev.provider_started(units=[ev.unit("u1"), ev.unit("u2")]))  # a resend, one unit more
    assert again.tasks, "the new unit's tasks are planned"
    assert {task.subject.unit_id for task in again.tasks} == {"u2"}
    planned = [planned_key(t.rule, t.subject.unit_id, t.subject.person_id) for p in (first, again) for t in p.tasks]
    assert len(planned) == len(set(planned)), "no obligation planned twice for the same subject"
    assert history.add(ev.provider_started(units=[ev.unit("u1"), ev.unit("u2")])).tasks == []


def test_dedup_keys_of_different_events_never_collide():
    one = ev.event("StaffLeft", {"provider_id": "p1", "person_id": "SE2321000032-N1", "end_date": "2026-08-31"},
                   event_id="visma-x")
    raw = one.model_dump(mode="json")
    joined_differently = [
        {**raw, "source": "hr", "id": "visma/x"},
        {**raw, "source": "hr/visma", "id": "x"},
    ]
    from schemas.parsing import parse_event

    keys = {parse_event(candidate).dedup_key for candidate in joined_differently}
    assert len(keys) == 2


def test_planning_a_start_with_many_units_links_each_task_once():
    """Prerequisites are found by lookup, not by scanning the plan: every task of a 300-unit start
    waits only for tasks of its own unit or of the whole provider."""
    plan = PLANNER.plan(ev.provider_started(units=[ev.unit(f"u{i}") for i in range(300)]), ProviderState(provider_id="p1"))
    by_id = {task.id: task for task in plan.tasks}
    for task in plan.tasks:
        for prerequisite in task.depends_on:
            assert by_id[prerequisite].subject.unit_id in (None, task.subject.unit_id)


def test_an_event_for_an_unknown_provider_cannot_be_planned():
    with pytest.raises(UnknownProvider):
        PLANNER.plan(ev.staff_joined(), ProviderState(provider_id="p1"))


def test_a_contact_assignment_plans_nothing_but_is_remembered():
    history = History()
    history.add(ev.provider_started())
    assert history.add(ev.contact_assigned()).tasks == []
    assert history.state.contacts[-1].name == "Anna"


def test_a_provider_without_health_care_gets_no_siths_or_prator():
    history = History()
    plan = history.add(ev.provider_started(hsl=False, services=("hemtjanst",)))
    assert not systems(plan) & {"siths", "prator"}
    assert "nightcare-contact-head" in rules(plan)
    joined = history.add(ev.staff_joined(role="sjukskoterska", licensed=True))
    assert set(rules(joined)) == {"siebel-grant-account", "phoniro-grant-access"}


# -- a unit opened after the start ------------------------------------------------------------------------


def test_a_unit_opened_after_the_start_gets_its_structures_people_trainings_and_readiness_check():
    history = History()
    start = history.add(ev.provider_started(uses_flexite=True))
    plan = history.add(ev.unit_opened(unit_id="u2", start_date="2026-06-01"))
    assert plan.tasks and {task.subject.unit_id for task in plan.tasks} == {"u2"}, "every task is the new unit's"
    assert {"SB1", "SB2", "SB4", "SB5", "SI1", "PR1", "PR2", "FX1", "FX2", "FX4", "PH1", "PH4", "PH5", "NH2", "ST1"} \
        <= {task.obligation for task in plan.tasks}
    # What the provider has once, whatever its units, is not ordered again.
    once = {"general-appoint-contacts", "general-technical-prerequisites", "prator-appoint-administrator",
            "prator-book-admin-training", "phoniro-appoint-administrators", "siths-install-netid"}
    assert once & set(rules(start)) == once and not once & set(rules(plan))
    # Dated from the unit's own start, and waiting for the start's tasks it needs.
    assert one(plan, "start-readiness-check").due == D("2026-05-29")
    assert one(plan, "siebel-order-accounts").depends_on == [one(plan, "siebel-create-org-structure").id]
    readiness = one(plan, "start-readiness-check").depends_on
    assert one(start, "prator-book-admin-training").id in readiness and one(plan, "prator-grant-unit-access").id in readiness
    assert history.state.unit("u2").opened_on == D("2026-06-01") and history.state.unit("u2").active


def test_a_unit_already_open_plans_nothing_again_and_one_that_closed_opens_again():
    history = History()
    history.add(ev.provider_started())
    again = history.add(ev.unit_opened(unit_id="u1", start_date="2026-06-01"))
    assert again.tasks == [] and [w.code for w in again.warnings] == ["unit-already-open"]
    history.add(ev.unit_closed(unit_id="u1", closing_date="2026-06-30"))
    reopened = history.add(ev.unit_opened(unit_id="u1", start_date="2026-10-01"))
    assert reopened.tasks and not reopened.warnings
    assert history.state.unit("u1").active and history.state.unit("u1").closed_on is None


def test_a_unit_opened_later_reports_from_its_first_month():
    history = History()
    history.add(ev.provider_started(start_date="2026-03-02"))
    history.add(ev.unit_opened(unit_id="u2", start_date="2026-06-15"))
    units = lambda month: {task.subject.unit_id for task in PLANNER.plan_monthly_reports(history.state, month)}  # noqa: E731
    assert units("2026-05") == {"u1"}
    assert units("2026-06") == {"u1", "u2"}


# -- what the provider chose: Prator's home-care category, what Flexite is used for ----------------------


def test_prators_home_care_category_is_the_providers_choice_with_or_without_health_care():
    def planned_for(role: str, **provider) -> set[str]:
        history = History()
        start = history.add(ev.provider_started(services=("hemtjanst",), uses_flexite=False, **provider))
        joined = history.add(ev.staff_joined(person="P1", role=role, licensed=False))
        return {*(task.rule for task in start.tasks), *(task.rule for task in joined.tasks)}

    # Not chosen: a planner at a home-care provider with health care gets no Prator and no card.
    assert not {"prator-grant-access", "siths-grant-card"} & planned_for("planerare", hsl=True)
    # Chosen: the planner gets both, and without health care the provider still gets Prator's
    # structure, administrator, unit access, SITHS cards and Net iD, since login is with the card.
    chosen = planned_for("planerare", hsl=False, prator_home_care=True)
    assert {"prator-grant-access", "siths-grant-card", "prator-send-org-structure", "prator-create-org-structure",
            "prator-appoint-administrator", "prator-grant-unit-access", "siths-order-cards", "siths-install-netid"} <= chosen
    # Without health care and not chosen, nothing of Prator or SITHS at all.
    assert not {rule for rule in planned_for("enhetschef", hsl=False) if rule.startswith(("prator-", "siths-"))}


def test_flexite_for_hsl_only_leaves_the_enhetschef_out_and_uses_flexite_means_what_it_meant():
    def flexite_for(role: str, licensed: bool, **provider) -> bool:
        history = History()
        history.add(ev.provider_started(**provider))
        joined = history.add(ev.staff_joined(person="F1", role=role, licensed=licensed))
        return "flexite-grant-access" in rules(joined)

    for provider in ({"uses_flexite": None, "flexite": "hsl"}, {"uses_flexite": True, "flexite": "hsl"}):
        assert flexite_for("sjukskoterska", True, **provider) and flexite_for("verksamhetschef", False, **provider)
        assert not flexite_for("enhetschef", False, **provider), "SoL/LSS deviations are not in Flexite here"
    for provider in ({"uses_flexite": True}, {"uses_flexite": None, "flexite": "hsl_and_sol_lss"}):
        assert flexite_for("enhetschef", False, **provider) and flexite_for("sjukskoterska", True, **provider)
    for provider in ({"uses_flexite": False}, {"uses_flexite": None, "flexite": "none"}):
        assert not flexite_for("sjukskoterska", True, **provider)


def test_only_a_move_to_from_or_between_managing_roles_is_an_organisation_change():
    def changes(before: str, after: str, licensed: bool = False) -> set[str]:
        history = History()
        history.add(ev.provider_started())
        history.add(ev.staff_joined(person="M1", role=before, licensed=before == "sjukskoterska"))
        plan = history.add(ev.staff_role_changed(person="M1", role=after, licensed=licensed))
        return {task.obligation for task in plan.tasks if task.obligation in ("OC1", "OC2")}

    assert changes("enhetschef", "verksamhetschef") == {"OC1", "OC2"}
    assert changes("verksamhetschef", "sjukskoterska", licensed=True) == {"OC1", "OC2"}
    assert changes("samordnare", "planerare") == set()
    assert changes("enhetschef", "enhetschef", licensed=True) == set(), "the same role is no move"
    history = History()
    history.add(ev.provider_started())
    unknown = history.add(ev.staff_role_changed(person="X9", role="enhetschef"))
    assert not {task.obligation for task in unknown.tasks} & {"OC1", "OC2"}


def test_the_manager_and_planner_course_is_booked_once_for_the_role_and_nothing_is_taken_away_after():
    history = History()
    history.add(ev.provider_started())
    joined = history.add(ev.staff_joined(person="C1", role="planerare", licensed=False))
    course = one(joined, "siebel-book-manager-training")
    assert (course.obligation, course.system, course.channel) == ("SB4", "boka", "boka")
    assert "siebel-book-manager-training" not in history.state.staff[ev.hsa("C1")].grants, "a course is no access"
    # Planner to manager: the course was taken for the former role already.
    promoted = history.add(ev.staff_role_changed(person="C1", role="enhetschef", licensed=False))
    assert "siebel-book-manager-training" not in rules(promoted)
    # Care staff becoming a planner take it; leaving revokes accesses only.
    history.add(ev.staff_joined(person="C2", role="omvardnadspersonal", licensed=False))
    assert "siebel-book-manager-training" in rules(history.add(ev.staff_role_changed(person="C2", role="planerare")))
    left = history.add(ev.staff_left(person="C1"))
    assert all(CATALOG.rule(task.rule).revokes for task in left.tasks if task.subject.person_id)


def test_a_move_of_responsibility_waits_for_its_own_ticket_not_an_earlier_change_left_open():
    history = History()
    history.add(ev.provider_started())
    history.add(ev.org_change(size="large", decided_on="2026-01-05", effective_date="2026-09-01"))
    history.add(ev.staff_joined(person="M2", role="omvardnadspersonal", licensed=False))
    moved = history.add(ev.staff_role_changed(person="M2", role="enhetschef", effective_date="2026-06-01"))
    assert one(moved, "orgchange-carry-out-small").depends_on == [one(moved, "orgchange-ticket-small").id]


def test_a_course_taken_once_is_not_booked_again_when_the_person_comes_back_to_the_role():
    history = History()
    history.add(ev.provider_started())
    history.add(ev.staff_joined(person="C3", role="planerare", licensed=False))
    history.add(ev.staff_role_changed(person="C3", role="omvardnadspersonal", effective_date="2026-06-01"))
    back = history.add(ev.staff_role_changed(person="C3", role="planerare", effective_date="2026-07-01"))
    assert "siebel-book-manager-training" not in rules(back)


def test_the_monthly_report_names_only_the_providers_own_services():
    history = History()
    history.add(ev.provider_started(services=("hemtjanst",)))
    (report,) = PLANNER.plan_monthly_reports(history.state, "2026-03")
    assert "matlådor" in report.instructions.sv and "meal boxes" in report.instructions.en
    assert "särskilt boende" not in report.instructions.sv and "korttids" not in report.instructions.sv


def test_a_unit_with_no_staff_is_asked_for_no_expert_users_until_its_first_joiner():
    history = History()
    started = history.add(ev.provider_started(units=[ev.unit("u1", staff_count=0), ev.unit("u2", staff_count=20)]))
    assert {t.subject.unit_id: t.quantity for t in rules(started)["siebel-appoint-expert-users"]} == {"u2": 2}
    assert all(task.quantity != 0 for task in started.tasks)
    first = history.add(ev.staff_joined(person="N1", unit_id="u1"))
    assert [(t.subject.unit_id, t.quantity) for t in rules(first)["siebel-appoint-expert-users"]] == [("u1", 1)]
    assert "siebel-appoint-expert-users" not in rules(history.add(ev.staff_joined(person="N2", unit_id="u1")))
    assert "siebel-appoint-expert-users" not in rules(history.add(ev.staff_joined(person="N3", unit_id="u2")))
