"""A whole run, tried with personal identity numbers everywhere an upstream system or a person
could put one, and then everything omboard wrote searched for them: every mail, every log line of
every process, every metrics page, every API error, the status API and the status page.

Refused at the door (422 naming the field, never the number) or dead-lettered by a worker when it
came past the API straight onto the topic; never repeated anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator

import httpx
import pytest
from kafka import KafkaProducer

from schemas.topics import ALL_TOPICS, EVENTS, TASK_STATUS, dead_letter_topic
from services.devtools.embedded import Broker, choose, embedded_broker
from services.devtools.processes import free_port
from services.entrypoints.launcher import Stack
from services.runtime.broker import create_topics
from services.runtime.clock import FileClock
from tests import factories as f
from tests.conftest import SUITE_BROKER, TEST_PARTITIONS
from tests.support.kafka import Topics
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

PROVIDER = "pii-home"
#: Luhn-valid personal identity numbers of people born on 18 December 1981 (one coordination number).
NUMBERS = [f.personal_number_shaped(n) for n in (101, 202, 303, 404)]
BEFORE_ANY_REMINDER = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


def forms(number: str) -> list[str]:
    """Every way the number could be written out: YYMMDD-NNNN, YYMMDDNNNN, YYYYMMDD-NNNN, YYYYMMDDNNNN."""
    digits = number.replace("-", "")
    return [number, digits, f"19{number}", f"19{digits}"]


@pytest.fixture(scope="module")
def clock(tmp_path_factory) -> FileClock:
    clock = FileClock(tmp_path_factory.mktemp("pii-clock") / "now")
    clock.set(BEFORE_ANY_REMINDER)
    return clock


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> Iterator[Broker]:
    """A broker of this module's own, of the suite's kind: on the suite's, the stack's first sweep
    mailed every earlier test's providers first (a thousand mails, past the minute this test waits)."""
    data = tmp_path_factory.mktemp("pii-broker")
    embedded = embedded_broker(choose(SUITE_BROKER), data, log_path=data / "broker.log").start()  # type: ignore[arg-type]
    try:
        create_topics(embedded.bootstrap, ALL_TOPICS, TEST_PARTITIONS)
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture(scope="module")
def stack(broker, clock, tmp_path_factory) -> Iterator[Stack]:
    stack = Stack(var_dir=tmp_path_factory.mktemp("pii-var"), bootstrap=broker.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, sweep_interval=0.3, clock_file=clock.path)
    with stack.running(timeout=90):
        yield stack


def test_no_personal_identity_number_leaves_by_any_way_out(stack: Stack, clock: FileClock, broker) -> None:
    captured: list[str] = []  # every answer a client saw
    api = httpx.Client(base_url=stack.api_url, headers=stack.auth("upstream"), timeout=30)
    status = httpx.Client(base_url=stack.status_url, headers=stack.auth("operator"), timeout=30)

    def post_event(event: dict) -> httpx.Response:
        response = api.post("/v1/events", json=event)
        captured.append(response.text)
        return response

    # A provider that is fine, with staff and contacts, so that mail, pages and metrics have content.
    started = f.provider_started(PROVIDER, start_date="2027-03-01", name="Hemma PII AB",
                                 units=[f.unit("pii-u1", staff_count=12)],
                                 contacts=[f.contact(email="pii.admin@example.se")])
    assert post_event(started).status_code == 202
    assert post_event(f.staff_joined(PROVIDER, unit_id="pii-u1", start_date="2027-03-01")).status_code == 202

    # The same number as every id, name and text the API takes: each refused, naming the field.
    hostile = [
        f.provider_started(NUMBERS[0]),
        f.provider_started("pii-other", name=f"Omsorg {NUMBERS[0]}"),
        f.provider_started("pii-other", contacts=[f.contact(name=f"Karin {forms(NUMBERS[0])[2]}")]),
        f.staff_joined(PROVIDER, unit_id="pii-u1", person_id=NUMBERS[0]),
        f.provider_started("pii-other", units=[f.unit(NUMBERS[0].replace("-", ""))]),
    ]
    for event in hostile:
        response = post_event(event)
        assert response.status_code == 422, response.text
        assert response.json()["errors"], "the field is named"
    # ... and an event put straight on the topic by a careless upstream system: dead-lettered.
    smuggled = f.provider_started("pii-smuggled", name=f"Omsorg {NUMBERS[1]}")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        headers = [(f"ce_{k}", str(v).encode()) for k, v in smuggled.items() if k not in ("data", "datacontenttype")]
        headers.append(("content-type", b"application/json"))
        producer.send(EVENTS, key=b"pii-smuggled", value=json.dumps(smuggled["data"]).encode(), headers=headers)
        producer.send(TASK_STATUS, key=PROVIDER.encode(), value=json.dumps({
            "id": "pii-change", "task_id": "no-such-task", "provider_id": PROVIDER, "status": "failed",
            "reason": f"fel på {NUMBERS[2]}", "by": "hr", "at": "2026-11-25T09:00:00+00:00"}).encode())
        producer.flush()
    finally:
        producer.close()
    topics = Topics(broker.bootstrap)
    try:
        for service in ("orgstructure", "permissions", "notifier"):
            topics.find(dead_letter_topic(service), lambda r: r.key == b"pii-smuggled", timeout=60)
        topics.find(dead_letter_topic("reporting"), lambda r: r.key == PROVIDER.encode()
                    and b"pii-change" in (r.value or b""), timeout=60)
    finally:
        topics.close()

    # A person marks a task failed with a number in the reason: refused; with a clean one: taken.
    tasks = eventually(lambda: (r := status.get(f"/v1/providers/{PROVIDER}/tasks")).status_code == 200
                       and len(r.json()["tasks"]) > 5 and r.json()["tasks"], "the provider's tasks", timeout=60)
    task_id = tasks[0]["id"]
    refused = status.post(f"/v1/tasks/{task_id}/status", json={"status": "failed", "reason": f"se {NUMBERS[3]}"})
    captured.append(refused.text)
    assert refused.status_code == 422
    captured.append(status.get("/v1/tasks/" + NUMBERS[3]).text)  # a number as a task id: 404, not echoed

    # Reminders fall due: mail goes out to the provider's contact.
    clock.set(dt.datetime(2027, 2, 25, 8, 0, tzinfo=dt.UTC))  # days before the start: reminders and escalations
    stack.mail.wait_for(lambda ms: any("pii.admin@example.se" in m.get("To", "") for m in ms), timeout=60)

    # Everything that left: API answers, status API and page, metrics, mail, logs.
    captured.append(status.get(f"/v1/providers/{PROVIDER}/tasks").text)
    captured.append(status.get("/v1/providers").text)
    page = httpx.get(f"{stack.status_url}/providers/{PROVIDER}", cookies={"omboard_key": stack.keys["operator"]})
    assert page.status_code == 200 and "Hemma PII AB" in page.text
    captured.append(page.text)
    for port in stack.web_ports.values():
        captured.append(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
    captured.append(httpx.get(f"{stack.api_url}/metrics").text)
    captured += [message.as_string() for message in stack.mail.snapshot()]
    captured += [path.read_text(errors="replace") for path in sorted(stack.log_dir.glob("*.log"))]

    everything = "\n".join(captured)
    assert "Hemma PII AB" in everything and "pii.admin@example.se" in everything  # the search reads real output
    for number in NUMBERS:
        for written in forms(number):
            found = [m.start() for m in re.finditer(re.escape(written), everything)]
            assert not found, f"{written} left omboard: …{everything[max(0, found[0] - 80):found[0] + 40]}…"
