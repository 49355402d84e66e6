"""``make run`` keeps its data: the whole stack stopped and started again on its own embedded
Apache Kafka (log segments under var/kafka) still knows every provider, task, status change and
sent mail, and sends no reminder twice."""

from __future__ import annotations

import datetime as dt
import re

import httpx
import pytest

from schemas.topics import NOTIFICATIONS, NOTIFICATIONS_SENT
from services.devtools.processes import free_port
from services.entrypoints.launcher import Stack
from services.runtime.clock import FileClock
from tests import factories
from tests.conftest import TEST_PARTITIONS, needs_apache_kafka
from tests.support.kafka import TopicReader, committed_offset
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, needs_apache_kafka]

PROVIDER = "restart-stack"
CONTACT = "restart.contact@example.se"
# Some of the provider's own tasks are already past their first reminder on this clock.
NOW = dt.datetime(2027, 2, 10, 9, 0, tzinfo=dt.UTC)


def tasks(stack: Stack) -> dict[str, dict]:
    response = httpx.get(f"{stack.status_url}/v1/providers/{PROVIDER}/tasks", headers=stack.auth("operator"))
    return {t["id"]: t for t in response.json()["tasks"]} if response.status_code == 200 else {}


def sweeps(stack: Stack) -> float:
    """How many deadline sweeps the reporting worker has finished since it started."""
    exposition = httpx.get(f"http://127.0.0.1:{stack.web_ports['reporting']}/metrics").text
    match = re.search(r"^omboard_reporting_sweep_duration_seconds_count (\S+)$", exposition, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def notifier_caught_up(stack: Stack) -> bool:
    reader = TopicReader(stack.bootstrap, NOTIFICATIONS)
    try:
        ends = reader.end_offsets()
    finally:
        reader.close()
    return all((committed_offset(stack.bootstrap, "omboard-notifier", NOTIFICATIONS, p) or 0) >= end
               for p, end in ends.items())


def sent_records(bootstrap: str) -> list[bytes]:
    reader = TopicReader(bootstrap, NOTIFICATIONS_SENT)
    try:
        ends = sum(reader.end_offsets().values())
        return [r.value for r in reader.wait_for(lambda rs: len(rs) >= ends, what="every delivery record")]
    finally:
        reader.close()


def test_a_stack_stopped_and_started_again_keeps_everything_and_mails_nothing_twice(tmp_path):
    clock = FileClock(tmp_path / "now")
    clock.set(NOW)
    stack = Stack(var_dir=tmp_path / "var", embedded="kafka", api_port=free_port(), partitions=TEST_PARTITIONS,
                  sweep_interval=0.3, clock_file=clock.path)
    event = factories.provider_started(PROVIDER, start_date="2027-03-01",
                                       contacts=[factories.contact(email=CONTACT)])
    with stack.running():
        assert stack.broker is not None and stack.broker.fresh
        assert stack.publish(event)["id"] == event["id"]
        before = eventually(lambda: tasks(stack), "the provider's tasks")
        stack.mail.wait_for(lambda ms: any(CONTACT in m.get("To", "") for m in ms), timeout=60)
        chosen = next(t for t in before.values() if t["responsible"] == "provider")
        moved = httpx.post(f"{stack.status_url}/v1/tasks/{chosen['id']}/status", json={"status": "done"},
                           headers=stack.auth("operator"))
        assert moved.status_code == 200, moved.text
        eventually(lambda: sweeps(stack) >= 3 and notifier_caught_up(stack), "sweeps done and every request mailed")
        before = tasks(stack)
        mailed = {m["Message-ID"] for m in stack.mail.snapshot()}
        delivered = sent_records(stack.bootstrap)
    assert (tmp_path / "var" / "kafka").is_dir()

    with stack.running():
        assert stack.broker is not None and not stack.broker.fresh, "the broker formatted its storage again"
        # The same event again, as make run's restart or a replaying upstream might send it.
        stack.publish(event)
        eventually(lambda: tasks(stack) == before, "the same tasks, statuses and history as before the stop",
                   timeout=60)
        assert tasks(stack)[chosen["id"]]["status"] == "done"
        eventually(lambda: sweeps(stack) >= 3 and notifier_caught_up(stack), "sweeps after the restart")
        assert tasks(stack) == before
        again = [m["Message-ID"] for m in stack.mail.snapshot()]
        assert not set(again) & mailed, "a mail of the first run was sent again"
        assert again == [], "nothing fell due in between, so nothing is mailed"
        assert delivered and set(delivered) <= set(sent_records(stack.bootstrap)), "the delivery records were kept"
