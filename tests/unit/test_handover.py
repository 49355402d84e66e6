"""A unit taken over by a provider omboard knows: the UnitOpened its closure stands for at the taker
(``services.domain.handover``), and what the taker's planners make of it."""

from __future__ import annotations

from schemas.parsing import parse_event
from schemas.wire import event_to_kafka
from services.domain.handover import takeover
from services.domain.planner import UNIT_ALREADY_OPEN
from tests.unit import _events as ev
from tests.unit.test_planning import History, rules


def both() -> tuple[History, History]:
    handing, taking = History("p1"), History("p9")
    handing.add(ev.provider_started("p1", units=[ev.unit("u1", 12, ("Norr",))]))
    taking.add(ev.provider_started("p9", units=[ev.unit("t1", 4)], n=9))
    return handing, taking


def test_a_closure_taken_over_stands_for_a_unit_opened_at_the_taker_the_day_after():
    handing, _ = both()
    closure = ev.unit_closed("p1", unit_id="u1", closing_date="2026-06-30", taken_over_by="p9")
    opened = takeover(closure, handing.state)
    assert opened is not None and opened.type == "UnitOpened" and opened.provider_id == "p9"
    assert (opened.data.unit.id, opened.data.unit.staff_count, opened.data.unit.field_groups) == ("u1", 12, ["Norr"])
    assert str(opened.data.start_date) == "2026-07-01" and opened.data.taken_over_from == "p1"
    assert takeover(closure, handing.state).id == opened.id, "a redelivered closure publishes the same event"
    assert parse_event(opened.model_dump(mode="json")) == opened, "a valid event, as upstream could send it"
    event_to_kafka(opened)  # and it fits a record
    assert takeover(ev.unit_closed("p1", unit_id="u1"), handing.state) is None, "not taken over"
    assert takeover(ev.unit_closed("p1", unit_id="u7", taken_over_by="p9"), handing.state) is None, "no such unit"


def test_the_taker_plans_its_side_and_nobody_orders_new_tokens():
    handing, taking = both()
    closure = ev.unit_closed("p1", unit_id="u1", closing_date="2026-06-30", taken_over_by="p9")
    opened = takeover(closure, handing.state)
    handed = handing.add(closure)
    taken = taking.add(opened)
    assert {"phoniro-register-takeover", "siebel-send-org-structure", "siebel-create-org-structure",
            "nightcare-contact-head", "start-readiness-check", "siebel-order-accounts"} <= set(rules(taken))
    assert {task.subject.unit_id for task in taken.tasks} == {"u1"}
    assert {task.action for task in rules(taken)["siebel-order-accounts"]} == {"order-accounts"}, "accounts, no tokens"
    assert "closure-siebel-return-tokens" not in rules(handed)
    assert {"closure-siebel-leave-tokens", "closure-taking-over-receive-tokens"} <= set(rules(handed))
    # The unit is the taker's now: it is reported on and closed there.
    assert taking.state.units["u1"].active and taking.state.units["u1"].opened_on.isoformat() == "2026-07-01"


def test_a_unit_the_taker_already_listed_at_its_own_start_is_not_planned_twice():
    handing, _ = both()
    taking = History("p9")
    taking.add(ev.provider_started("p9", units=[ev.unit("u1", 12)], takeover_from="p1", n=9))
    plan = taking.add(takeover(ev.unit_closed("p1", unit_id="u1", taken_over_by="p9"), handing.state))
    assert plan.tasks == [] and [warning.code for warning in plan.warnings] == [UNIT_ALREADY_OPEN]


def test_at_a_takeover_the_named_staff_get_accounts_without_new_tokens():
    taking = History("p9")
    plan = taking.add(ev.provider_started("p9", takeover_from="p1", n=9,
                                          units=[ev.unit("u1", 3, staff=[ev.person("N1")])]))
    (account,) = rules(plan)["siebel-grant-account"]
    assert account.action == "order-account" and "ingen ny" in account.instructions.sv
    joiner = taking.add(ev.staff_joined("p9", person="N2", unit_id="u1"))
    assert rules(joiner)["siebel-grant-account"][0].action == "order-account-and-token", "a new hire needs a token"
