"""The status API and page over a fake ledger store (real Ledger objects) and a fake publisher that
applies each change the way the reporting agent would."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient

from schemas.catalog import load_catalog
from schemas.events import Envelope
from schemas.identifiers import pseudonym
from schemas.status import TaskStatusChange
from schemas.tasks import DateVerdict
from services.domain.ledger import Ledger, change_status, record_task
from services.domain.planner import Planner
from services.domain.scheduler import date_verdict
from services.domain.state import ProviderState, evolve
from services.http.access import COOKIE_NAME, KeyRing, key_entry
from services.reporting.api import create_status_api
from services.runtime.clock import FixedClock
from services.runtime.settings import Settings
from tests.factories import hsa_id
from tests.support.ledgers import FakeStore
from tests.unit import _events

PLANNER = Planner(load_catalog())
PLANNED_AT = dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.UTC)
OPS, ACME, OTHER, HR = "ops-key-0123456789abcdef", "acme-key-0123456789abcd", "other-key-0123456789abc", "hr-key-0123456789abcdef"
KEYS = KeyRing([
    key_entry("klk-it", OPS, "operator"),
    key_entry("acme-admin", ACME, "provider-admin", provider_id="acme"),
    key_entry("other-admin", OTHER, "provider-admin", provider_id="other"),
    key_entry("hr", HR, "upstream", event_types=["StaffJoined"]),
])


#: A nurse who joined acme after its start: her tasks name her by pseudonym only.
NURSE = hsa_id("N7")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class AgentLikePublisher:
    """Records what was published and applies it to the store, as the one writer would."""

    def __init__(self, store: FakeStore, apply: bool = True):
        self.store, self.apply, self.sent = store, apply, []

    async def __call__(self, change: TaskStatusChange, correlation: str | None) -> None:
        self.sent.append(change)
        if self.apply:
            ledger, _ = change_status(self.store.load(change.provider_id), change)
            self.store.tables[change.provider_id] = ledger


def planned(provider_id: str, *later: Envelope) -> Ledger:
    """The tasks of the provider's start, and of the events after it."""
    state, ledger = ProviderState(provider_id=provider_id), Ledger(provider_id=provider_id)
    for event in (_events.provider_started(provider_id), *later):
        plan = PLANNER.plan(event, state)
        state = evolve(state, event, plan, PLANNER.catalog)
        for task in plan.tasks:
            ledger, _ = record_task(ledger, task, PLANNED_AT)
    return ledger


def by_rule(ledger: Ledger, rule: str):
    return next(record for record in ledger.tasks.values() if record.task.rule == rule)


@pytest.fixture
def world():
    store = FakeStore(planned("acme", _events.staff_joined("acme", person="N7")), planned("other"))
    publisher = AgentLikePublisher(store)
    # "Today" after some of acme's tasks fell due: they are overdue.
    dues = sorted({r.task.due for r in store.load("acme").tasks.values()})
    today = dues[len(dues) // 2]
    clock = FixedClock(dt.datetime.combine(today, dt.time(10, 0), tzinfo=dt.UTC))
    api = create_status_api(store, KEYS, publisher, clock, Settings(status_wait_timeout=0.3), PLANNER.catalog)
    return TestClient(api), store, publisher, today


def test_every_route_needs_a_key(world):
    client, *_ = world
    for path in ("/v1/providers", "/v1/providers/acme/tasks", "/v1/tasks/overdue"):
        response = client.get(path)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert client.post("/v1/tasks/x/status", json={"status": "done"}).status_code == 401
    assert client.get("/v1/providers", headers=bearer(HR)).status_code == 403


def test_providers_with_progress_and_a_provider_admin_sees_only_its_own(world):
    client, store, _, today = world
    everything = client.get("/v1/providers", headers=bearer(OPS)).json()
    assert everything["today"] == today.isoformat()
    assert {p["id"] for p in everything["providers"]} == {"acme", "other"}
    acme = next(p for p in everything["providers"] if p["id"] == "acme")
    ledger = store.load("acme")
    assert acme["total"] == len(ledger.tasks)
    assert acme["open"] + acme["blocked"] == acme["total"]
    assert acme["overdue"] == sum(1 for r in ledger.tasks.values() if r.overdue(today)) > 0
    assert acme["next_due"] == min(r.task.due for r in ledger.tasks.values()).isoformat()
    own = client.get("/v1/providers", headers=bearer(ACME)).json()["providers"]
    assert [p["id"] for p in own] == ["acme"]
    refused = client.get("/v1/providers/other/tasks", headers=bearer(ACME))
    assert refused.status_code == 403
    assert refused.json()["detail"] == "key 'acme-admin' sees only provider acme"
    assert client.get("/v1/providers/nobody/tasks", headers=bearer(OPS)).status_code == 404


def test_the_checklist_puts_overdue_work_first_and_filters(world):
    client, store, _, _today = world
    body = client.get("/v1/providers/acme/tasks", headers=bearer(ACME)).json()
    tasks = body["tasks"]
    assert len(tasks) == len(store.load("acme").tasks)
    flags = [t["overdue"] for t in tasks]
    assert flags == sorted(flags, reverse=True) and flags[0]
    overdue_dues = [t["due"] for t in tasks if t["overdue"]]
    assert overdue_dues == sorted(overdue_dues)
    first = tasks[0]
    assert {"system", "status", "due", "obligation", "channel", "instructions", "depends_on", "history"} <= set(first)
    assert first["history"][0]["by"] == "omboard"
    siebel = client.get("/v1/providers/acme/tasks?system=siebel&status=blocked", headers=bearer(ACME)).json()["tasks"]
    assert siebel and all(t["system"] == "siebel" and t["status"] == "blocked" for t in siebel)
    assert all(t["waiting_for"] for t in siebel)
    assert client.get("/v1/providers/acme/tasks?system=nope", headers=bearer(ACME)).status_code == 422


def test_overdue_tasks_across_providers_and_for_one(world):
    client, _store, _, today = world
    every = client.get("/v1/tasks/overdue", headers=bearer(OPS)).json()["tasks"]
    assert {t["provider_id"] for t in every} == {"acme", "other"}
    assert all(t["overdue"] and dt.date.fromisoformat(t["due"]) < today for t in every)
    own = client.get("/v1/tasks/overdue?responsible=provider", headers=bearer(ACME)).json()["tasks"]
    assert own and {t["provider_id"] for t in own} == {"acme"} and {t["responsible"] for t in own} == {"provider"}


def test_marking_a_prerequisite_done_publishes_a_change_and_answers_with_the_applied_task(world):
    client, store, publisher, _ = world
    send = by_rule(store.load("acme"), "siebel-send-org-structure")
    create = by_rule(store.load("acme"), "siebel-create-org-structure")

    response = client.post(f"/v1/tasks/{send.task.id}/status", json={"status": "done", "reason": "mailed"},
                           headers=bearer(ACME))

    assert response.status_code == 200, response.text
    assert response.json()["changed"] is True
    assert response.json()["task"]["status"] == "done"
    [change] = publisher.sent
    assert (change.task_id, change.provider_id, change.status, change.by, change.source) == (send.task.id, "acme", "done", "acme-admin", "api")
    assert store.load("acme").tasks[create.task.id].status == "open"
    # The same again changes nothing and publishes nothing.
    again = client.post(f"/v1/tasks/{send.task.id}/status", json={"status": "done"}, headers=bearer(OPS))
    assert again.status_code == 200 and again.json()["changed"] is False
    assert len(publisher.sent) == 1


def test_unknown_task_illegal_move_and_another_providers_task_change_nothing(world):
    client, store, publisher, _ = world
    blocked = by_rule(store.load("acme"), "siebel-create-org-structure")
    before = store.load("acme")

    unknown = client.post("/v1/tasks/no-such-task/status", json={"status": "done"}, headers=bearer(OPS))
    illegal = client.post(f"/v1/tasks/{blocked.task.id}/status", json={"status": "done"}, headers=bearer(OPS))
    foreign = client.post(f"/v1/tasks/{blocked.task.id}/status", json={"status": "cancelled"}, headers=bearer(OTHER))
    no_reason = client.post(f"/v1/tasks/{blocked.task.id}/status", json={"status": "failed"}, headers=bearer(OPS))

    assert unknown.status_code == 404
    assert illegal.status_code == 409 and "is blocked: it waits for" in illegal.json()["detail"]
    assert foreign.status_code == 403 and "other-admin" in foreign.json()["detail"]
    assert no_reason.status_code == 422
    assert publisher.sent == [] and store.load("acme") == before


def test_a_change_the_ledger_does_not_show_in_time_is_202(world):
    client, store, publisher, _ = world
    publisher.apply = False
    task = by_rule(store.load("acme"), "siebel-send-org-structure")
    response = client.post(f"/v1/tasks/{task.task.id}/status", json={"status": "done"}, headers=bearer(OPS))
    assert response.status_code == 202
    assert publisher.sent[0].by == "klk-it"


PERSONAL_NUMBER = "19121212-1212"  # Skatteverket's test number, Luhn-valid


def test_a_422_names_each_field_and_never_echoes_what_was_sent(world):
    client, store, publisher, _ = world
    task = by_rule(store.load("acme"), "siebel-send-org-structure")
    url = f"/v1/tasks/{task.task.id}/status"

    bad_status = client.post(url, json={"status": PERSONAL_NUMBER}, headers=bearer(OPS))
    too_long = client.post(url, json={"status": "done", "reason": PERSONAL_NUMBER * 100}, headers=bearer(OPS))
    unknown_field = client.post(url, json={"status": "done", "person": PERSONAL_NUMBER}, headers=bearer(OPS))
    not_json = client.post(url, content=f'{{"status": "{PERSONAL_NUMBER}"', headers=bearer(OPS) | {"content-type": "application/json"})
    bad_query = client.get(f"/v1/providers/acme/tasks?system={PERSONAL_NUMBER}", headers=bearer(OPS))

    for response, field in ((bad_status, "status"), (too_long, "reason"), (unknown_field, "person"),
                            (not_json, "(body)"), (bad_query, "query.system")):
        assert response.status_code == 422, response.text
        assert PERSONAL_NUMBER not in response.text and "1212" not in response.text
        errors = response.json()["errors"]
        assert errors and all(set(error) == {"field", "reason"} and error["reason"] for error in errors)
        assert field in [error["field"] for error in errors]
    assert publisher.sent == []


def test_the_history_records_the_key_and_a_name_the_client_sends_is_refused(world):
    client, store, publisher, _ = world
    task = by_rule(store.load("acme"), "siebel-send-org-structure")
    url = f"/v1/tasks/{task.task.id}/status"

    forged = client.post(url, json={"status": "done", "by": "klk-it"}, headers=bearer(ACME))
    assert forged.status_code == 422
    [error] = forged.json()["errors"]
    assert error["field"] == "by" and "API key's name" in error["reason"]
    assert "by: " in forged.json()["detail"]  # what `omboard task` prints
    assert publisher.sent == [] and store.load("acme").tasks[task.task.id].status == "open"

    # "by": null is accepted: older clients send it.
    done = client.post(url, json={"status": "done", "by": None, "reason": "sent by Karin"}, headers=bearer(ACME))
    assert done.status_code == 200, done.text
    assert done.json()["task"]["history"][-1]["by"] == "acme-admin"
    assert done.json()["task"]["history"][-1]["reason"] == "sent by Karin"


def test_the_page_asks_for_a_login_then_shows_the_checklist_and_marks_done(world):
    client, store, _publisher, _ = world
    first = client.get("/providers/acme", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=%2Fproviders%2Facme"
    assert client.post("/login", data={"key": "wrong", "next": "/providers/acme"}).status_code == 401

    login = client.post("/login", data={"key": ACME, "next": "/providers/acme"}, follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/providers/acme"
    cookie = login.headers["set-cookie"]
    assert f"{COOKIE_NAME}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")

    page = client.get("/providers/acme")
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
    assert "Siebel" in page.text and "Klar / done" in page.text
    rows = re.findall(r'data-status="(\w+)" data-overdue="(\w+)"', page.text)
    assert rows and rows[0][1] == "yes"
    assert pseudonym(NURSE) in page.text, "the page has a person's tasks on it"
    assert "SE2321000032" not in page.text  # and never an HSA-id

    task = by_rule(store.load("acme"), "siebel-send-org-structure")
    done = client.post(f"/providers/acme/tasks/{task.task.id}/done", data={"back": "/providers/acme?system=siebel"},
                       follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].startswith("/providers/acme?system=siebel&notice=")
    assert store.load("acme").tasks[task.task.id].status == "done"

    assert client.get("/providers/other").status_code == 403
    cross_site = client.post(f"/providers/acme/tasks/{task.task.id}/done", headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403
    assert client.get("/login?next=//evil.example").text.count('value="/providers"') == 1


def test_the_provider_list_page(world):
    client, *_ = world
    page = client.get("/providers", headers=bearer(OPS))
    assert page.status_code == 200
    assert page.text.index("/providers/acme") > 0 and "/providers/other" in page.text
    assert client.get("/providers", headers=bearer(ACME)).text.count('href="/providers/') == 1


def signed_in(client: TestClient, key: str) -> None:
    assert client.post("/login", data={"key": key, "next": "/providers"}, follow_redirects=False).status_code == 303


def flash(page_html: str) -> list[str]:
    return re.findall(r'<div class="flash \w+" role="(?:status|alert)">(.*?)</div>', page_html, re.S)


def test_the_page_shows_only_messages_the_server_made(world):
    client, store, _publisher, _ = world
    signed_in(client, OPS)
    forged = "Ring 08-123 45 67 och uppge din nyckel"
    for query in ({"notice": forged}, {"error": forged}, {"notice": forged, "sig": "0" * 32}, {"notice": forged, "sig": "å"}):
        page = client.get("/providers/acme", params=query)
        assert page.status_code == 200
        assert forged not in page.text and flash(page.text) == [], query

    # A refusal comes back as a signed error: a blocked task cannot be done yet (its prerequisite is done below).
    blocked = by_rule(store.load("acme"), "siebel-create-org-structure")
    refused = client.post(f"/providers/acme/tasks/{blocked.task.id}/done", data={"back": "/providers/acme"},
                          follow_redirects=False)
    [error] = flash(client.get(refused.headers["location"]).text)
    assert "blocked" in error and store.load("acme").tasks[blocked.task.id].status == "blocked"

    # The real flow: done, redirected, and the notice is on the page the redirect leads to.
    task = by_rule(store.load("acme"), "siebel-send-org-structure")
    done = client.post(f"/providers/acme/tasks/{task.task.id}/done", data={"back": "/providers/acme"}, follow_redirects=False)
    assert done.status_code == 303
    landed = client.get(done.headers["location"])
    [notice] = flash(landed.text)
    assert notice.startswith("Klart: ") and 'role="status"' in landed.text

    # A real message is signed for its provider's page only.
    moved = done.headers["location"].split("#")[0].replace("/providers/acme", "/providers/other")
    assert flash(client.get(moved).text) == []


def test_a_null_origin_is_refused_for_the_login_and_every_post(world):
    client, store, _publisher, _ = world
    null = {"Origin": "null"}

    login = client.post("/login", data={"key": ACME, "next": "/providers/acme"}, headers=null, follow_redirects=False)
    assert login.status_code == 403 and "set-cookie" not in login.headers

    signed_in(client, ACME)
    task = by_rule(store.load("acme"), "siebel-send-org-structure")
    done = client.post(f"/providers/acme/tasks/{task.task.id}/done", headers=null, follow_redirects=False)
    assert done.status_code == 403 and store.load("acme").tasks[task.task.id].status == "open"
    logout = client.post("/logout", headers=null, follow_redirects=False)
    assert logout.status_code == 403 and "set-cookie" not in logout.headers

    # This site's own forms send its real origin: the pages' referrer policy is not no-referrer,
    # under which browsers send "null" for them (tests/e2e/test_status_page_browser.py).
    page = client.get("/providers/acme")
    assert page.headers["Referrer-Policy"] == "same-origin"
    own = client.post(f"/providers/acme/tasks/{task.task.id}/done", headers={"Origin": "http://testserver"},
                      follow_redirects=False)
    assert own.status_code == 303 and store.load("acme").tasks[task.task.id].status == "done"


def test_every_task_as_json_or_csv_with_filters_and_paging(world):
    client, store, _, _today = world
    every = client.get("/v1/tasks", headers=bearer(OPS)).json()["tasks"]
    assert len(every) == sum(len(ledger.tasks) for ledger in store.tables.values())
    assert [(t["provider_id"], t["due"], t["id"]) for t in every] == sorted((t["provider_id"], t["due"], t["id"]) for t in every)
    late = client.get("/v1/tasks?overdue=true&system=siebel", headers=bearer(OPS)).json()["tasks"]
    assert late and all(t["overdue"] and t["system"] == "siebel" for t in late)
    page = client.get("/v1/tasks?limit=5&offset=5", headers=bearer(OPS))
    assert [t["id"] for t in page.json()["tasks"]] == [t["id"] for t in every[5:10]]
    assert page.headers["X-Next-Offset"] == "10" and page.json()["next_offset"] == 10
    assert "X-Next-Offset" not in client.get("/v1/tasks?limit=5000", headers=bearer(OPS)).headers

    csv_response = client.get("/v1/tasks?format=csv&provider_id=acme", headers=bearer(OPS))
    assert csv_response.status_code == 200 and csv_response.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_response.headers["content-disposition"]
    import csv as csv_module
    import io
    lines = list(csv_module.DictReader(io.StringIO(csv_response.text)))
    assert len(lines) == len(store.load("acme").tasks)
    assert lines[0].keys() >= {"id", "provider_id", "system", "status", "due", "obligation", "responsible", "person"}
    assert {line["provider_id"] for line in lines} == {"acme"}
    assert all(line["last_change_by"] == "omboard" for line in lines)


def test_a_provider_admin_exports_only_its_own_tasks(world):
    client, *_ = world
    own = client.get("/v1/tasks", headers=bearer(ACME)).json()["tasks"]
    assert own and {t["provider_id"] for t in own} == {"acme"}
    refused = client.get("/v1/tasks?provider_id=other", headers=bearer(ACME))
    assert refused.status_code == 403
    assert client.get("/v1/tasks?format=xls", headers=bearer(OPS)).status_code == 422


def test_the_read_model_away_is_a_clear_503_not_an_error(world):
    client, store, publisher, _ = world
    task = by_rule(store.load("acme"), "siebel-send-org-structure")
    store.down = True
    for path in ("/v1/providers", "/v1/providers/acme/tasks", "/v1/tasks/overdue", "/v1/tasks"):
        response = client.get(path, headers=bearer(OPS))
        assert response.status_code == 503, path
        assert "cannot be reached" in response.json()["detail"] and response.headers["Retry-After"]
    moved = client.post(f"/v1/tasks/{task.task.id}/status", json={"status": "done"}, headers=bearer(OPS))
    assert moved.status_code == 503 and publisher.sent == []  # nothing published that could not be checked
    page = client.get("/providers", headers=bearer(OPS))
    assert page.status_code == 503 and "kan inte visas" in page.text


def test_one_task_with_its_audit_trail_and_only_for_who_may_see_it(world):
    client, store, _, _ = world
    task = by_rule(store.load("acme"), "siebel-send-org-structure")
    client.post(f"/v1/tasks/{task.task.id}/status", json={"status": "done", "reason": "sent"}, headers=bearer(ACME))
    found = client.get(f"/v1/tasks/{task.task.id}", headers=bearer(OPS)).json()
    assert found["plan_id"] == task.task.plan_id and found["obligation"] == task.task.obligation
    assert [(h["status"], h["by"]) for h in found["history"]] == [("open", "omboard"), ("done", "acme-admin")]
    assert client.get(f"/v1/tasks/{task.task.id}", headers=bearer(OTHER)).status_code == 404  # not told apart
    assert client.get("/v1/tasks/no-such-task", headers=bearer(OPS)).status_code == 404


def test_a_csv_cell_a_spreadsheet_would_run_is_written_as_text():
    from services.reporting.status import as_cell_text


    assert [as_cell_text(v) for v in ("=HYPERLINK(1)", "+1", "@SUM", "Omsorg AB", 3, None)] == [
        "'=HYPERLINK(1)", "'+1", "'@SUM", "Omsorg AB", 3, None]


def test_a_task_done_late_says_so_in_the_api_the_csv_and_the_page(world):
    client, store, _publisher, _ = world
    ledger = store.load("acme")
    record = by_rule(ledger, "siebel-send-org-structure")
    late = record.model_copy(update={"status": "done", "late_by_days": 4})
    store.tables["acme"] = ledger.with_records({late.task.id: late})
    assert client.get(f"/v1/tasks/{late.task.id}", headers=bearer(OPS)).json()["late_by_days"] == 4
    assert ",4," in next(line for line in client.get("/v1/tasks?format=csv&provider_id=acme", headers=bearer(OPS)).text
                         .splitlines() if line.startswith(late.task.id))
    signed_in(client, ACME)
    assert 'data-late-by="4"' in client.get("/providers/acme").text


def late_verdict(provider_id: str, start: str = "2026-03-02", sent: str = "2026-02-23T09:00:00+01:00") -> DateVerdict:
    """The verdict on a start a week after it was sent: at risk (the catalog needs some 30 business days)."""
    event = _events.provider_started(provider_id, start_date=start, sent=sent)
    verdict = date_verdict(event, PLANNER.plan(event, ProviderState(provider_id=provider_id)))
    assert verdict is not None and verdict.at_risk and verdict.chain
    return verdict


def test_a_providers_dates_at_risk_earliest_first_for_the_keys_that_see_its_tasks(world):
    client, store, _, _ = world
    start = late_verdict("acme")
    nurse = start.model_copy(update={"subject": f"staff-joined:{pseudonym(NURSE)}", "event_type": "StaffJoined",
                                     "date": start.date - dt.timedelta(days=1),
                                     "message": f"StaffJoined: the work for {NURSE} cannot be done by then"})
    met = late_verdict("other").model_copy(update={"at_risk": False, "earliest_feasible": None, "chain": []})
    # A unit opened long ago whose earliest feasible date has passed too: history, not shown.
    past = late_verdict("acme", start="2025-11-10", sent="2025-11-03T09:00:00+01:00").model_copy(
        update={"subject": "unit-opened:u9"})
    store.verdicts_by_key = {verdict.key: verdict for verdict in (start, nurse, met, past)}

    body = client.get("/v1/providers/acme/verdicts", headers=bearer(ACME)).json()
    assert [(v["subject"], v["date"]) for v in body["verdicts"]] == [
        (nurse.subject, nurse.date.isoformat()), ("start", start.date.isoformat())]
    shown = body["verdicts"][1]
    assert shown["earliest_feasible"] > shown["date"] and shown["event_type"] == "ProviderStarted"
    assert [(step["system"], step["action"], step["due"]) for step in shown["chain"]] == [
        (step.system, step.action, step.due.isoformat()) for step in start.chain]
    assert NURSE not in client.get("/v1/providers/acme/verdicts", headers=bearer(OPS)).text  # a pseudonym, never an HSA-id
    assert client.get("/v1/providers/other/verdicts", headers=bearer(OPS)).json()["verdicts"] == []  # met: not at risk
    assert client.get("/v1/providers/nobody/verdicts", headers=bearer(OPS)).json()["verdicts"] == []
    assert client.get("/v1/providers/other/verdicts", headers=bearer(ACME)).status_code == 403
    assert client.get("/v1/providers/acme/verdicts", headers=bearer(HR)).status_code == 403
    assert client.get("/v1/providers/acme/verdicts").status_code == 401
    store.down = True
    assert client.get("/v1/providers/acme/verdicts", headers=bearer(OPS)).status_code == 503


def test_the_page_shows_the_dates_at_risk_above_the_tasks_and_nothing_when_there_are_none(world):
    client, store, _, _ = world
    start = late_verdict("acme")
    store.verdicts_by_key = {start.key: start}
    signed_in(client, OPS)

    page = client.get("/providers/acme").text
    assert "Datum i fara / date at risk: " + start.date.isoformat() in page
    assert page.index('id="verdicts"') < page.index('<form class="filters"') < page.index("<table")
    assert f"tidigast möjligt / earliest feasible: <strong class=\"earliest\">{start.earliest_feasible}" in page
    chain = re.findall(r"<li>(.*?)</li>", page.split('id="verdicts"')[1].split("</section>")[0], re.S)
    assert len(chain) == len(start.chain) and "Siebel – Send org structure" in chain[0]
    assert "checklistan / checklist" in page  # the first step's checklist date is earlier than its due
    assert 'id="verdicts"' not in client.get("/providers/other").text


def test_a_task_dated_later_than_the_checklist_says_both_dates_in_the_api_and_the_page(world):
    client, store, _publisher, _ = world
    ledger = store.load("acme")
    record = by_rule(ledger, "siebel-send-org-structure")
    task = record.task.model_copy(update={"checklist_due": record.task.due - dt.timedelta(days=14)})
    store.tables["acme"] = ledger.with_records({task.id: record.model_copy(update={"task": task})})
    shown = client.get(f"/v1/tasks/{task.id}", headers=bearer(OPS)).json()
    assert (shown["due"], shown["checklist_due"]) == (task.due.isoformat(), task.checklist_due.isoformat())
    signed_in(client, ACME)
    assert f'data-checklist-due="{task.checklist_due.isoformat()}"' in client.get("/providers/acme").text
