"""The status API through the real stack: intake -> planners -> reporting's ledger -> status API in
the reporting worker -> omboard.task-status -> the agent -> an "unblocked" mail in the sink."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import httpx
import pytest
from kafka import KafkaProducer
from typer.testing import CliRunner

from schemas.status import TaskStatusChange
from schemas.topics import TASK_STATUS
from schemas.wire import model_to_kafka
from services.devtools.processes import free_port
from services.entrypoints.cli import app as cli
from services.entrypoints.launcher import Stack
from services.runtime.clock import FileClock
from tests import factories
from tests.conftest import TEST_PARTITIONS
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

PROVIDER = "e2e-status"
CONTACT = "e2e.status@example.se"
KLK_IT = "klk.e2e-status@example.se"  # where KLK IT's mail goes in this stack
NOW = dt.datetime(2027, 2, 10, 9, 0, tzinfo=dt.UTC)  # some of the provider's tasks are already late


@pytest.fixture(scope="module")
def stack(broker, tmp_path_factory) -> Iterator[Stack]:
    clock = FileClock(tmp_path_factory.mktemp("clock") / "now")
    clock.set(NOW)
    stack = Stack(var_dir=tmp_path_factory.mktemp("var"), bootstrap=broker.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, sweep_interval=0.3, clock_file=clock.path,
                  extra_env={"OMBOARD_KLK_IT_EMAIL": KLK_IT})
    stack.add_key(f"{PROVIDER}-admin", "provider-admin", provider_id=PROVIDER)
    stack.add_key("elsewhere-admin", "provider-admin", provider_id="e2e-elsewhere")
    with stack.running(timeout=90):
        yield stack


def checklist(stack: Stack, key: str = "operator", **filters: str) -> list[dict]:
    response = httpx.get(f"{stack.status_url}/v1/providers/{PROVIDER}/tasks", params=filters, headers=stack.auth(key))
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    return response.json()["tasks"]


def by_action(tasks: list[dict], system: str, action: str) -> list[dict]:
    return [t for t in tasks if t["system"] == system and t["action"] == action]


@pytest.fixture(scope="module")
def planned(stack) -> list[dict]:
    event = factories.provider_started(PROVIDER, start_date="2027-03-01", name="Status Omsorg AB",
                                       units=[factories.unit("e2e-status-u1", staff_count=12)],
                                       contacts=[factories.contact(email=CONTACT)])
    response = httpx.post(f"{stack.api_url}/v1/events", json=event, headers=stack.auth("upstream"))
    assert response.status_code == 202, response.text

    def arrived() -> list[dict]:
        tasks = checklist(stack)
        return tasks if by_action(tasks, "siebel", "create-org-structure") and by_action(tasks, "phoniro", "install-app") else []

    return eventually(arrived, "the provider's tasks in the status API")  # type: ignore[return-value]


def test_the_checklist_and_the_provider_list(stack, planned):
    assert planned[0]["overdue"], "overdue work comes first"
    providers = httpx.get(f"{stack.status_url}/v1/providers", headers=stack.auth(f"{PROVIDER}-admin")).json()["providers"]
    assert [p["id"] for p in providers] == [PROVIDER]
    assert providers[0]["overdue"] > 0 and providers[0]["name"] == "Status Omsorg AB"
    # Across providers (the broker is the session's: other tests' tasks are there too, more than a
    # page of them), oldest first; the provider's own key sees its own.
    overdue = httpx.get(f"{stack.status_url}/v1/tasks/overdue", params={"limit": 5000},
                        headers=stack.auth("operator")).json()["tasks"]
    assert [t["due"] for t in overdue] == sorted(t["due"] for t in overdue)
    own = httpx.get(f"{stack.status_url}/v1/tasks/overdue", params={"limit": 5000},
                    headers=stack.auth(f"{PROVIDER}-admin")).json()["tasks"]
    assert {t["id"] for t in planned if t["overdue"]} <= {t["id"] for t in own}
    first = httpx.get(f"{stack.status_url}/v1/tasks/overdue", params={"limit": 3}, headers=stack.auth("operator")).json()
    assert [t["id"] for t in first["tasks"]] == [t["id"] for t in overdue[:3]]


def test_marking_a_prerequisite_done_opens_its_dependent_and_mails_its_party(stack, planned):
    [send] = by_action(planned, "siebel", "send-org-structure")
    [create] = by_action(planned, "siebel", "create-org-structure")
    assert create["status"] == "blocked" and create["depends_on"] == [send["id"]]

    response = httpx.post(f"{stack.status_url}/v1/tasks/{send['id']}/status", json={"status": "done", "reason": "sent"},
                          headers=stack.auth(f"{PROVIDER}-admin"), timeout=20)

    assert response.status_code == 200, response.text
    assert response.json()["changed"] is True
    assert response.json()["task"]["status"] == "done"
    assert response.json()["task"]["history"][-1]["by"] == f"{PROVIDER}-admin"
    [now_open] = by_action(checklist(stack), "siebel", "create-org-structure")
    assert now_open["status"] == "open"
    # This stack's notifier mails what the whole session's broker asked first (late-order and
    # date-at-risk notices of every test's providers): in one full run it had some 500 mails to
    # send before this one, and 30 s was not enough.
    mails = stack.mail.wait_for(lambda ms: any(KLK_IT in m.get("To", "") and "Kan påbörjas" in m["Subject"] for m in ms),
                                timeout=90)
    unblocked = next(m for m in mails if KLK_IT in m.get("To", "") and "Kan påbörjas" in m["Subject"])
    assert "Status Omsorg AB" in unblocked["Subject"]
    assert f"{stack.status_url}/providers/{PROVIDER}" in unblocked.get_body(("plain",)).get_content()


def test_unknown_task_illegal_move_and_another_providers_key_change_nothing(stack, planned):
    [blocked] = [t for t in by_action(checklist(stack), "phoniro", "install-app")][:1]
    assert blocked["status"] == "blocked"
    url = f"{stack.status_url}/v1/tasks/{blocked['id']}/status"

    unknown = httpx.post(f"{stack.status_url}/v1/tasks/{uuid.uuid4()}/status", json={"status": "done"}, headers=stack.auth("operator"))
    illegal = httpx.post(url, json={"status": "done"}, headers=stack.auth("operator"))
    foreign = httpx.post(url, json={"status": "cancelled"}, headers=stack.auth("elsewhere-admin"))
    foreign_read = httpx.get(f"{stack.status_url}/v1/providers/{PROVIDER}/tasks", headers=stack.auth("elsewhere-admin"))
    no_key = httpx.post(url, json={"status": "cancelled"})

    assert unknown.status_code == 404
    assert illegal.status_code == 409 and "is blocked: it waits for" in illegal.json()["detail"]
    assert foreign.status_code == 403 and foreign_read.status_code == 403
    assert foreign_read.json()["detail"] == "key 'elsewhere-admin' sees only provider e2e-elsewhere"
    assert no_key.status_code == 401
    [after] = [t for t in checklist(stack) if t["id"] == blocked["id"]]
    assert after["status"] == "blocked" and after["history"] == blocked["history"]


def test_a_change_from_another_system_on_the_topic_is_applied(stack, planned):
    [task] = by_action(planned, "phoniro", "report-fixed-ip")
    change = TaskStatusChange(id=f"ticketing-{uuid.uuid4()}", task_id=task["id"], provider_id=PROVIDER, status="done",
                              by="ticketing", at=NOW, source="ticketing", reason="ticket closed")
    key, value, headers = model_to_kafka(change, PROVIDER, None)
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap)
    try:
        producer.send(TASK_STATUS, key=key, value=value, headers=headers).get(timeout=10)
    finally:
        producer.close()
    done = eventually(lambda: [t for t in checklist(stack) if t["id"] == task["id"] and t["status"] == "done"],
                      "the other system's change in the ledger")
    assert done[0]["history"][-1]["by"] == "ticketing"  # type: ignore[index]


def test_omboard_task_done_over_http(stack, planned):
    [task] = by_action(planned, "phoniro", "procure-phones")
    runner = CliRunner()
    base = ["--url", stack.status_url, "--key", stack.keys["operator"]]

    # The history records the key, not a name the client picks: the API refuses `by`, naming it.
    named = httpx.post(f"{stack.status_url}/v1/tasks/{task['id']}/status", json={"status": "done", "by": "Karin"},
                       headers=stack.auth("operator"))
    assert named.status_code == 422 and named.json()["errors"][0]["field"] == "by"
    assert next(t for t in checklist(stack) if t["id"] == task["id"])["status"] == "open"

    result = runner.invoke(cli, ["task", "done", task["id"], "--reason", "ordered by Karin", *base])
    assert result.exit_code == 0, result.output
    assert f"{task['id']}: done" in result.stdout
    [after] = [t for t in checklist(stack) if t["id"] == task["id"]]
    assert after["status"] == "done" and after["history"][-1]["by"] == "operator"
    assert after["history"][-1]["reason"] == "ordered by Karin"

    again = runner.invoke(cli, ["task", "done", task["id"], *base])
    assert again.exit_code == 0 and "(unchanged)" in again.stdout
    [blocked] = by_action(planned, "phoniro", "install-app")[:1]
    assert runner.invoke(cli, ["task", "done", blocked["id"], *base]).exit_code == 2
    assert runner.invoke(cli, ["task", "status", "no-such-task", "cancelled", *base]).exit_code == 4
    assert runner.invoke(cli, ["task", "status", task["id"], "failed", *base]).exit_code == 2  # needs --reason
    unreachable = runner.invoke(cli, ["task", "done", task["id"], "--url", f"http://127.0.0.1:{free_port()}",
                                      "--key", "x" * 20])
    assert unreachable.exit_code == 3 and "cannot be reached" in unreachable.output


def test_who_took_a_place_in_a_units_order_reaches_the_access_register(stack):
    """A roster's person, planned by permissions, published on omboard.holdings, projected by
    reporting into PostgreSQL and shown by the access register before anything ends it."""
    provider, person = "e2e-roster", factories.hsa_id("E2E9001")
    start = factories.provider_started(provider, start_date="2027-03-01", units=[factories.unit("e2e-roster-u1", staff_count=3)])
    roster = factories.staff_roster_reported(provider, as_of="2027-03-01",
                                             persons=[factories.roster_person(person, unit_id="e2e-roster-u1")])
    for event in (start, roster):
        assert httpx.post(f"{stack.api_url}/v1/events", json=event, headers=stack.auth("upstream")).status_code == 202

    def placed() -> dict | None:
        response = httpx.get(f"{stack.status_url}/v1/providers/{provider}/access", headers=stack.auth("operator"))
        people = response.json()["people"] if response.status_code == 200 else []
        theirs = next((entry for entry in people if entry["person"] == person), None)
        return theirs if theirs and {a["system"] for a in theirs["access"]} >= {"siebel", "phoniro"} else None

    theirs = eventually(placed, "the person's places in the access register", timeout=30)
    assert all(access["through_unit_order"] and access["granted_by"]["rule"] != "siebel-grant-account"
               for access in theirs["access"])


def test_a_late_start_is_a_date_at_risk_and_a_change_moved_to_a_date_that_can_be_met_clears_its_own(stack):
    """Orgstructure's verdict on omboard.verdicts, projected by reporting into PostgreSQL, read by
    the status API; the latest verdict of the subject is the truth."""
    provider = "e2e-verdicts"
    sent = "2027-02-10T09:00:00+01:00"  # the stack's today
    url = f"{stack.status_url}/v1/providers/{provider}/verdicts"

    def verdicts() -> list[dict] | None:
        response = httpx.get(url, headers=stack.auth("operator"))
        return response.json()["verdicts"] if response.status_code == 200 else None

    late = factories.provider_started(provider, start_date="2027-02-17", time=sent)  # the catalog needs ~30 business days
    assert httpx.post(f"{stack.api_url}/v1/events", json=late, headers=stack.auth("upstream")).status_code == 202
    [verdict] = eventually(verdicts, "the late start's date at risk in the status API")  # type: ignore[misc]
    assert verdict["subject"] == "start" and verdict["event_id"] == late["id"] and verdict["at_risk"]
    assert verdict["date"] == "2027-02-17" and verdict["earliest_feasible"] > "2027-02-17"
    assert verdict["chain"] and all(step["system"] and step["action"] and step["due"] for step in verdict["chain"])
    assert httpx.get(url, headers=stack.auth("elsewhere-admin")).status_code == 403

    # A large change decided today for next week is at risk beside it; moved to a date KLK IT's ten
    # weeks can meet (the same change, planned again), it clears its own verdict, not the start's.
    change = dict(change_id="e2e-change", size="large", decided_on="2027-02-10", unit_ids=[], time=sent)
    soon = factories.org_change_requested(provider, effective_date="2027-02-17", **change)
    assert httpx.post(f"{stack.api_url}/v1/events", json=soon, headers=stack.auth("upstream")).status_code == 202
    eventually(lambda: sorted(v["subject"] for v in verdicts() or []) == ["org-change:e2e-change", "start"],
               "the change's date at risk beside the start's")
    moved = factories.org_change_requested(provider, effective_date="2027-09-01", **change)  # a new event id
    assert moved["id"] != soon["id"]
    assert httpx.post(f"{stack.api_url}/v1/events", json=moved, headers=stack.auth("upstream")).status_code == 202
    eventually(lambda: [v["subject"] for v in verdicts() or []] == ["start"], "the moved change to clear its verdict")
