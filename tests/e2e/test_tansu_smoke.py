"""The fallback still works: on Tansu, the broker of a machine without Java, an event posted to the
intake becomes tasks, the tasks reach the ledger, and a reminder reaches the mail sink.

Everything else runs on Apache Kafka (``tests/conftest.py``); this is the smoke set for Tansu.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import httpx
import pytest

from schemas.topics import TASK_TOPICS
from services.devtools.processes import free_port
from services.entrypoints.launcher import Stack
from services.runtime.clock import FileClock
from tests import factories
from tests.conftest import TEST_PARTITIONS
from tests.support.kafka import TopicReader
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

PROVIDER = "tansu-smoke"
CONTACT = "tansu.smoke@example.se"
NOW = dt.datetime(2027, 2, 10, 9, 0, tzinfo=dt.UTC)  # some reminders of a start on 2027-03-01 are due


@pytest.fixture(scope="module")
def stack(tansu, tmp_path_factory) -> Iterator[Stack]:
    clock = FileClock(tmp_path_factory.mktemp("clock") / "now")
    clock.set(NOW)
    stack = Stack(var_dir=tmp_path_factory.mktemp("var"), bootstrap=tansu.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, sweep_interval=0.3, clock_file=clock.path)
    with stack.running(timeout=90):
        yield stack


def test_on_tansu_an_event_becomes_tasks_and_a_mail(stack, tansu):
    event = factories.provider_started(PROVIDER, start_date="2027-03-01", contacts=[factories.contact(email=CONTACT)])
    response = httpx.post(f"{stack.api_url}/v1/events", json=event, headers=stack.auth("upstream"))
    assert response.status_code == 202, response.text

    reader = TopicReader(tansu.bootstrap, *TASK_TOPICS)
    try:
        records = reader.wait_for(lambda rs: any(r.key == PROVIDER.encode() for r in rs), what="the provider's tasks")
        planned = {json.loads(r.value)["id"] for r in records if r.key == PROVIDER.encode()}
    finally:
        reader.close()

    def ledger() -> list[dict]:
        answer = httpx.get(f"{stack.status_url}/v1/providers/{PROVIDER}/tasks", headers=stack.auth("operator"))
        return answer.json()["tasks"] if answer.status_code == 200 else []

    eventually(lambda: {task["id"] for task in ledger()} >= planned, "every task on the topics in the ledger")
    mails = stack.mail.wait_for(lambda ms: any(CONTACT in m.get("To", "") for m in ms), timeout=60)
    assert any(m["Subject"].startswith("[omboard]") for m in mails if CONTACT in m.get("To", ""))
