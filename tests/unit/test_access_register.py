"""Who holds what, seen and proven (issue 11, item 9): the access register and closure reports of
the status API and page, over the in-memory read model (``tests/support/ledgers.py``) and a
publisher that applies each change as the reporting agent would."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from fastapi.testclient import TestClient

from schemas.identifiers import pseudonym
from services.domain.ledger import Ledger, record_task
from services.domain.state import ProviderState, evolve
from services.http.access import KeyRing, key_entry
from services.reporting.access import CSV_COLUMNS
from services.reporting.api import create_status_api
from services.runtime.clock import FixedClock
from services.runtime.settings import Settings
from tests.support.ledgers import FakeStore
from tests.unit import _events as ev
from tests.unit.test_status_api import PLANNED_AT, PLANNER, AgentLikePublisher, bearer, signed_in

OPS, ACME, OTHER, TICKETS = ("ops-key-0123456789abcdef", "acme-key-0123456789abcd", "other-key-0123456789abc",
                             "tickets-key-0123456789ab")
KEYS = KeyRing([
    key_entry("klk-it", OPS, "operator"),
    key_entry("acme-admin", ACME, "provider-admin", provider_id="acme"),
    key_entry("other-admin", OTHER, "provider-admin", provider_id="other"),
    key_entry("tickets", TICKETS, "system"),
])
NURSE, PLACED = ev.hsa("N1"), ev.hsa("N2")  # named at the start; took a place in the unit's orders


def planned_store(*events) -> tuple[FakeStore, list]:
    """The read model after ``events``: acme's tasks, and the places its people took (what
    ``omboard.holdings`` carries to it)."""
    state, ledger, plans, places = ProviderState(provider_id="acme"), Ledger(provider_id="acme"), [], []
    for event in events:
        plan = PLANNER.plan(event, state)
        state = evolve(state, event, plan, PLANNER.catalog)
        plans.append(plan)
        for task in plan.tasks:
            ledger, _ = record_task(ledger, task, PLANNED_AT)
        places += [holding.model_copy(update={"provider_id": "acme"}) for holding in plan.holdings]
    return FakeStore(ledger, holdings=places), plans


@pytest.fixture
def world():
    """acme starts u1 with three staff, one named; a roster names a second, who takes a place in
    the unit's orders; u1 closes."""
    store, plans = planned_store(
        ev.provider_started("acme", units=[ev.unit("u1", staff_count=3, staff=[ev.person("N1")])]),
        ev.roster("acme", persons=[ev.person("N1", unit_id="u1"), ev.person("N2", unit_id="u1")]),
        ev.unit_closed("acme", unit_id="u1"))
    clock = FixedClock(dt.datetime(2026, 7, 1, 10, 0, tzinfo=dt.UTC))
    api = create_status_api(store, KEYS, AgentLikePublisher(store), clock, Settings(status_wait_timeout=0.3),
                            PLANNER.catalog)
    return TestClient(api), store, plans


def finish(client: TestClient, store: FakeStore, *, grants_only: bool = False, key: str = OPS) -> None:
    """Mark done every task (only what gives access and what it waits for: ``grants_only``), as the
    people doing them would, prerequisites first."""
    while True:
        ready = [record for record in store.load("acme").tasks.values() if record.status == "open"
                 and not (grants_only and PLANNER.catalog.rule(record.task.rule).revokes)]
        if not ready:
            return
        for record in ready:
            response = client.post(f"/v1/tasks/{record.task.id}/status", json={"status": "done"}, headers=bearer(key))
            assert response.status_code == 200, response.text


def person(body: dict, who: str | None) -> dict:
    return next(entry for entry in body["people"] if entry["person"] == who)


def test_the_register_shows_who_holds_what_where_through_which_task(world):
    client, store, (started, *_) = world
    finish(client, store, grants_only=True)
    body = client.get("/v1/providers/acme/access", headers=bearer(OPS)).json()
    nurse = {access["system"]: access for access in person(body, NURSE)["access"]}
    assert set(nurse) == {"siebel", "siths", "prator", "phoniro"}
    siebel = nurse["siebel"]
    granted = next(task for task in started.tasks if task.rule == "siebel-grant-account")
    assert siebel["granted_by"]["task_id"] == granted.id and siebel["granted_by"]["done_by"] == "klk-it"
    assert siebel["since"] is not None and siebel["state"] == "ending", "the closure's cancellation is planned"
    assert all(access["state"] == "ending" and access["since"] for access in nurse.values())
    unit = {access["system"]: access for access in person(body, None)["access"]}
    assert unit["siebel"]["places"] == 2 and unit["siebel"]["holder"] == "unit"
    # The one who took a place holds it through the unit's order, ended for them by the closure.
    placed = {access["system"]: access for access in person(body, PLACED)["access"]}
    assert placed["siebel"]["through_unit_order"] and placed["siebel"]["granted_by"]["rule"] == "siebel-order-accounts"
    assert body["held"] == sum(len(entry["access"]) for entry in body["people"])


def test_a_closure_report_is_complete_only_when_nothing_is_held(world):
    client, store, (_, _, closed) = world
    listed = client.get("/v1/providers/acme/closures", headers=bearer(ACME)).json()["closures"]
    assert [(c["plan_id"], c["units"]) for c in listed] == [(closed.event_id, ["u1"])]
    url = f"/v1/providers/acme/closures/{closed.event_id}"
    before = client.get(url, headers=bearer(ACME)).json()
    assert before["complete"] is False and before["held"] == len(before["access"]) and before["units"] == ["u1"]
    finish(client, store, key=ACME)
    after = client.get(url, headers=bearer(ACME)).json()
    assert after["complete"] is True and after["held"] == 0
    ended = [step for access in after["access"] for step in access["ended_by"]]
    assert ended and all(step["done_by"] == "acme-admin" and step["done_at"] for step in ended)
    assert client.get("/v1/providers/acme/closures/no-such-plan", headers=bearer(ACME)).status_code == 404


def test_keys_see_people_by_hsa_id_only_where_they_may_and_others_not_at_all(world):
    client, *_ = world
    assert client.get("/v1/providers/acme/access", headers=bearer(OTHER)).status_code == 403
    for_system = client.get("/v1/providers/acme/access", headers=bearer(TICKETS))
    assert for_system.status_code == 200 and NURSE not in for_system.text
    assert pseudonym(NURSE) in {entry["person"] for entry in for_system.json()["people"]}
    assert NURSE in client.get("/v1/providers/acme/access", headers=bearer(ACME)).text


def test_the_register_and_a_closure_report_as_csv(world):
    client, _, (_, _, closed) = world
    for url in ("/v1/providers/acme/access?format=csv", f"/v1/providers/acme/closures/{closed.event_id}?format=csv"):
        response = client.get(url, headers=bearer(OPS))
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        lines = list(csv.DictReader(io.StringIO(response.text)))
        assert lines and set(lines[0]) == set(CSV_COLUMNS)
        assert {line["state"] for line in lines} <= {"ordered", "active", "ending", "ended"}
        assert NURSE in {line["person"] for line in lines}


def test_the_pages_show_the_register_and_the_closures_verdict(world):
    client, store, (_, _, closed) = world
    signed_in(client, ACME)
    page = client.get("/providers/acme/access")
    assert page.status_code == 200 and NURSE in page.text and f"/closures/{closed.event_id}" in page.text
    report = client.get(f"/providers/acme/closures/{closed.event_id}")
    assert report.status_code == 200 and "not complete" in report.text
    finish(client, store, key=ACME)
    assert "complete: every access has ended" in client.get(f"/providers/acme/closures/{closed.event_id}").text
    assert client.get("/providers/acme/access?format=csv").headers["content-type"].startswith("text/csv")
    assert client.get("/providers/other/access").status_code == 403


def _ledger_of(*events, provider_id: str = "acme") -> Ledger:
    state, ledger = ProviderState(provider_id=provider_id), Ledger(provider_id=provider_id)
    for event in events:
        plan = PLANNER.plan(event, state)
        state = evolve(state, event, plan, PLANNER.catalog)
        for task in plan.tasks:
            if task.subject.provider_id == provider_id:
                ledger, _ = record_task(ledger, task, PLANNED_AT)
    return ledger


def test_a_closure_is_complete_when_everyone_who_took_the_units_places_has_lost_them():
    closed = ev.unit_closed("acme", unit_id="u1")
    ledger = _ledger_of(ev.provider_started("acme", units=[ev.unit("u1", staff_count=2)]),
                        ev.roster("acme", persons=[ev.person("N1", unit_id="u1"), ev.person("N2", unit_id="u1")]), closed)
    store = FakeStore(ledger)
    client = TestClient(create_status_api(store, KEYS, AgentLikePublisher(store), FixedClock(
        dt.datetime(2026, 7, 1, 10, 0, tzinfo=dt.UTC)), Settings(status_wait_timeout=0.3), PLANNER.catalog))
    url = f"/v1/providers/acme/closures/{closed.id}"
    assert client.get(url, headers=bearer(OPS)).json()["complete"] is False
    while ready := [r for r in store.load("acme").tasks.values() if r.status == "open"]:
        for record in ready:
            client.post(f"/v1/tasks/{record.task.id}/status", json={"status": "done"}, headers=bearer(OPS))
    report = client.get(url, headers=bearer(OPS)).json()
    assert report["complete"] is True, [a for a in report["access"] if a["state"] != "ended"]
    units = [access for access in report["access"] if access["holder"] == "unit"]
    assert units and all(access["state"] == "ended" and not access["ended_by"] for access in units)


def test_a_takers_list_holds_no_closure_of_the_provider_that_handed_the_unit_over():
    taker = _ledger_of(ev.provider_started("p9", units=[ev.unit("t1")], n=9), provider_id="p9")
    handed = _ledger_of(ev.provider_started("acme"), ev.unit_closed("acme", unit_id="u1", taken_over_by="p9"),
                        provider_id="acme")
    receive = [r for r in handed.tasks.values() if r.task.subject.provider_id == "p9"]
    assert not receive, "the taker's task went to the taker's list"
    handing_state = ProviderState(provider_id="acme")
    for event in (ev.provider_started("acme"), ev.unit_closed("acme", unit_id="u1", taken_over_by="p9")):
        plan = PLANNER.plan(event, handing_state)
        handing_state = evolve(handing_state, event, plan, PLANNER.catalog)
        for task in plan.tasks:
            if task.subject.provider_id == "p9":
                taker, _ = record_task(taker, task, PLANNED_AT)
    assert any(r.task.rule == "closure-taking-over-receive-tokens" for r in taker.tasks.values())
    store = FakeStore(taker)
    client = TestClient(create_status_api(store, KEYS, AgentLikePublisher(store), FixedClock(PLANNED_AT),
                                          Settings(status_wait_timeout=0.3), PLANNER.catalog))
    assert client.get("/v1/providers/p9/closures", headers=bearer(OPS)).json()["closures"] == []


def test_someone_who_took_a_place_in_the_units_order_is_on_the_register_before_they_leave():
    store, (started, roster) = planned_store(
        ev.provider_started("acme", units=[ev.unit("u1", staff_count=3)]),
        ev.roster("acme", persons=[ev.person("N2", unit_id="u1")]))
    client = TestClient(create_status_api(store, KEYS, AgentLikePublisher(store), FixedClock(PLANNED_AT),
                                          Settings(status_wait_timeout=0.3), PLANNER.catalog))
    assert roster.holdings and not roster.tasks
    body = client.get("/v1/providers/acme/access", headers=bearer(ACME)).json()
    placed = {access["system"]: access for access in person(body, PLACED)["access"]}
    order = next(task for task in started.tasks if task.rule == "siebel-order-accounts")
    assert placed["siebel"]["through_unit_order"] and placed["siebel"]["granted_by"]["task_id"] == order.id
    assert placed["siebel"]["state"] == "ordered" and not placed["siebel"]["ended_by"]


def test_a_download_of_a_provider_with_any_id_is_named_in_ascii():
    store = FakeStore()
    client = TestClient(create_status_api(store, KEYS, AgentLikePublisher(store), FixedClock(PLANNED_AT),
                                          Settings(status_wait_timeout=0.3), PLANNER.catalog))
    response = client.get("/v1/providers/%F1%84%B3%88%29%C3%8C-3/access?format=csv", headers=bearer(OPS))
    assert response.status_code == 200 and response.headers["content-disposition"].isascii()
