"""The walking skeleton end to end: HTTP intake -> orgstructure -> task topics -> reporting ->
reminder sweep on an injected clock -> notifier -> a mail in a real SMTP server.

Every service runs as its own process on the session's Tansu broker, as in ``make run``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest
from kafka import KafkaProducer

from schemas.topics import EVENTS, TASK_TOPICS, dead_letter_topic
from schemas.wire import CORRELATION_HEADER
from services.devtools.processes import free_port
from services.entrypoints.launcher import Stack
from services.runtime.clock import FileClock
from tests import factories
from tests.conftest import TEST_PARTITIONS
from tests.support.kafka import TopicReader, wait_committed_past
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

CONTACT = "e2e.home@example.se"  # other tests share the broker: a recipient only this test uses
BEFORE_ANY_REMINDER = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def clock(tmp_path_factory) -> FileClock:
    clock = FileClock(tmp_path_factory.mktemp("clock") / "now")
    clock.set(BEFORE_ANY_REMINDER)
    return clock


@pytest.fixture(scope="module")
def stack(broker, clock, tmp_path_factory) -> Iterator[Stack]:
    stack = Stack(
        var_dir=tmp_path_factory.mktemp("var"),
        bootstrap=broker.bootstrap,
        api_port=free_port(),
        partitions=TEST_PARTITIONS,
        sweep_interval=0.3,
        clock_file=clock.path,
    )
    with stack.running(timeout=90):
        yield stack


@pytest.fixture
def tasks(broker) -> Iterator[TopicReader]:
    reader = TopicReader(broker.bootstrap, *TASK_TOPICS)
    yield reader
    reader.close()


def tasks_of(records, provider_id: str) -> list[dict]:
    values = [json.loads(r.value) for r in records]
    return [task for task in values if task["subject"]["provider_id"] == provider_id]


def mails_to(stack: Stack, address: str) -> list[EmailMessage]:
    return [m for m in stack.mail.snapshot() if address in m.get("To", "")]


def test_provider_started_over_http_becomes_tasks_and_a_reminder_mail(stack, tasks, clock, broker):
    event = factories.provider_started("e2e-home", start_date="2027-03-01", name="Hemma Omsorg AB",
                                       units=[factories.unit("e2e-home-u1", staff_count=21)],
                                       contacts=[factories.contact(email=CONTACT)])
    response = httpx.post(f"{stack.api_url}/v1/events", json=event,
                          headers={"X-Correlation-ID": "corr-e2e-1", **stack.auth("upstream")})
    assert response.status_code == 202, response.text
    assert response.json()["id"] == event["id"]

    expected = {"G3", "SB1", "SB2", "SB4", "SB5"}
    tasks.wait_for(lambda rs: expected <= {t["obligation"] for t in tasks_of(rs, "e2e-home")}, what="the Siebel and G3 tasks")
    planned = tasks_of(tasks.records, "e2e-home")
    assert all(t["plan_id"] == event["id"] and t["catalog_version"] for t in planned)
    assert all(r.headers[CORRELATION_HEADER] == b"corr-e2e-1" for r in tasks.records if json.loads(r.value)["subject"]["provider_id"] == "e2e-home")
    experts = next(t for t in planned if t["obligation"] == "SB5")
    assert experts["quantity"] == 3  # 10 % of 21 staff, rounded up
    assert mails_to(stack, CONTACT) == []  # nothing is due yet on the injected clock

    # Move time to the first reminder of the provider's own tasks: exactly one mail per party and system.
    first = min(dt.date.fromisoformat(day) for t in planned if t["responsible"] == "provider" for day in t["remind_on"])
    clock.set(dt.datetime.combine(first, dt.time(8, 0), tzinfo=dt.UTC))
    # Moving the clock makes every provider on the session's broker due at once: in the whole suite
    # the notifier had some 700 mails to send first, and 30 s was once not enough.
    mails = stack.mail.wait_for(lambda ms: any(CONTACT in m.get("To", "") for m in ms), timeout=90)
    reminder = next(m for m in mails if CONTACT in m.get("To", ""))
    assert reminder["Subject"].startswith("[omboard] Påminnelse")
    assert "Hemma Omsorg AB" in reminder["Subject"]
    assert reminder["Message-ID"]

    # The same event again: no new tasks, and no new mail. Counted once both planners are past
    # the original (the wait above returns once some of its tasks are there).
    _wait_planned(broker, *_position(stack, event, copy=1))
    tasks.read_all()  # to the end: one poll can stop short (kafka-python splits big fetches)
    count_tasks, count_mail = len(tasks_of(tasks.records, "e2e-home")), len(mails_to(stack, CONTACT))
    _publish(stack, event)
    _wait_planned(broker, *_position(stack, event, copy=2))
    tasks.read_all()
    assert len(tasks_of(tasks.records, "e2e-home")) == count_tasks

    # The next reminder date brings new mail; the first reminder is still in the sink only once.
    second = min(dt.date.fromisoformat(day) for t in planned if t["responsible"] == "provider"
                 for day in t["remind_on"] if dt.date.fromisoformat(day) > first)
    clock.set(dt.datetime.combine(second, dt.time(8, 0), tzinfo=dt.UTC))
    stack.mail.wait_for(lambda ms: len(mails_to(stack, CONTACT)) > count_mail, timeout=30)
    message_ids = [m["Message-ID"] for m in mails_to(stack, CONTACT)]
    assert message_ids.count(reminder["Message-ID"]) == 1
    assert len(message_ids) == len(set(message_ids)), "a notification was mailed twice"


def test_a_start_that_cannot_be_met_reaches_the_provider_and_klk_it_once_in_one_mail(stack, broker):
    contact = "e2e.late@example.se"  # a recipient only this test uses
    event = factories.provider_started("e2e-late", start_date="2027-03-08", time=factories.at("2027-03-01"),
                                       units=[factories.unit("e2e-late-u1", staff_count=8)],
                                       contacts=[factories.contact(email=contact)])
    _publish(stack, event)

    def at_risk(mails: list[EmailMessage]) -> list[EmailMessage]:
        return [m for m in mails if m["X-Omboard-Kind"] == "date-at-risk" and contact in m.get("To", "")]

    (mail,) = at_risk(stack.mail.wait_for(lambda ms: bool(at_risk(ms)), timeout=60))
    assert "it.support@uppsala.se" in mail["To"], "KLK IT on the same mail"
    assert mail["Subject"].startswith("[omboard] Datum i fara: 2027-03-08")
    text = mail.get_content()
    assert "Tidigaste datum som kan hållas" in text and "The earliest date that can be met" in text
    # Sent again: the same verdict, not a second mail.
    _wait_planned(broker, *_position(stack, event, copy=1))
    _publish(stack, event)
    _wait_planned(broker, *_position(stack, event, copy=2))
    assert len(at_risk(stack.mail.snapshot())) == 1


def _publish(stack: Stack, event: dict) -> None:
    assert httpx.post(f"{stack.api_url}/v1/events", json=event, headers=stack.auth("upstream")).status_code == 202


def _position(stack: Stack, event: dict, copy: int) -> tuple[int, int]:
    """Partition and offset of the ``copy``-th copy of ``event`` on the events topic."""
    reader = TopicReader(stack.bootstrap, EVENTS)
    try:
        copies = lambda rs: [r for r in rs if r.headers.get("ce_id") == event["id"].encode()]  # noqa: E731
        found = copies(reader.wait_for(lambda rs: len(copies(rs)) >= copy, what=f"copy {copy} of the event on the topic"))
        return found[copy - 1].partition, found[copy - 1].offset
    finally:
        reader.close()


def _wait_planned(broker, partition: int, offset: int) -> None:
    for group in ("omboard-orgstructure", "omboard-permissions"):
        wait_committed_past(broker.bootstrap, group, EVENTS, partition, offset)


def test_a_malformed_message_is_dead_lettered_and_the_next_event_flows(stack, tasks, broker):
    dead = TopicReader(broker.bootstrap, dead_letter_topic("orgstructure"))
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        producer.send(EVENTS, key=b"e2e-poison", value=b"{not json", headers=[("ce_type", b"ProviderStarted")])
        producer.flush()
        records = dead.wait_for(lambda rs: any(r.key == b"e2e-poison" for r in rs), what="the dead letter")
        letter = next(r for r in records if r.key == b"e2e-poison")
        assert letter.value == b"{not json"
        assert letter.headers["dlq_topic"] == EVENTS.encode()
        assert letter.headers["dlq_service"] == b"orgstructure"
        assert b"not valid JSON" in letter.headers["dlq_reason"]
        assert {"dlq_partition", "dlq_offset", "dlq_at"} <= set(letter.headers)

        good = factories.provider_started("e2e-poison", start_date="2027-03-01")
        assert httpx.post(f"{stack.api_url}/v1/events", json=good, headers=stack.auth("upstream")).status_code == 202
        tasks.wait_for(lambda rs: len(tasks_of(rs, "e2e-poison")) >= 5, what="tasks of the event after the poison")
    finally:
        producer.close()
        dead.close()


def test_a_monthly_service_report_is_opened_after_the_month_and_completed_when_submitted(stack, clock, broker):
    """SB3: reporting opens last month's report for every active unit concerned on the first sweep
    of a month, due on the 5th; ServiceReportSubmitted completes it."""
    provider = "e2e-sabo"
    started = factories.provider_started(provider, start_date="2027-01-04", services=["sarskilt_boende"], hsl=False,
                                         units=[factories.unit("e2e-sabo-u1", staff_count=30)])
    assert httpx.post(f"{stack.api_url}/v1/events", json=started, headers=stack.auth("upstream")).status_code == 202
    events = TopicReader(broker.bootstrap, EVENTS)
    try:
        record = events.wait_for(lambda rs: any(r.headers.get("ce_id") == started["id"].encode() for r in rs),
                                 what="the ProviderStarted on the topic")
        mine = next(r for r in record if r.headers.get("ce_id") == started["id"].encode())
    finally:
        events.close()
    # Reporting folds the provider's facts from omboard.events before the month can be opened.
    wait_committed_past(broker.bootstrap, "omboard-reporting", EVENTS, mine.partition, mine.offset)

    clock.set(dt.datetime(2027, 2, 1, 8, 0, tzinfo=dt.UTC))
    operator = stack.auth("operator")

    def report_task() -> dict | None:
        response = httpx.get(f"{stack.status_url}/v1/providers/{provider}/tasks", headers=operator)
        tasks = response.json()["tasks"] if response.status_code == 200 else []
        return next((t for t in tasks if t["obligation"] == "SB3"), None)

    task = eventually(report_task, "the January service-report task")
    assert task["due"] == "2027-02-05" and task["unit_id"] == "e2e-sabo-u1" and task["status"] == "open"

    submitted = factories.service_report_submitted(provider, unit_id="e2e-sabo-u1", month="2027-01",
                                                   submitted_on="2027-02-03")
    assert httpx.post(f"{stack.api_url}/v1/events", json=submitted, headers=stack.auth("upstream")).status_code == 202
    done = eventually(lambda: (t := report_task()) and t["status"] == "done" and t, "the report task done")
    assert done["history"][-1]["by"] == submitted["source"]

