"""The deadline engine survives restarts: a reminder fired before a crash is not fired again,
and one that fell due while the worker was down is fired when it is back."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from kafka import KafkaProducer

from schemas.catalog import load_catalog
from schemas.parsing import parse_event
from schemas.topics import NOTIFICATIONS, task_topic
from schemas.wire import model_to_kafka
from services.domain.planner import Planner
from services.domain.state import ProviderState
from services.runtime.clock import FileClock
from tests import factories as f
from tests.conftest import TEST_PARTITIONS
from tests.support.kafka import TopicReader
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.integration
PROVIDER = "deadline-restart"


def at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(9, 0), tzinfo=dt.UTC)


def reminders(records, day: dt.date) -> list[dict]:
    found = []
    for record in records:
        request = json.loads(record.value)
        if request["provider_id"] == PROVIDER and request["kind"] == "reminder" and request["requested_at"].startswith(day.isoformat()):
            found.append(request)
    return found


def test_reminders_fire_once_across_a_crash_and_none_is_skipped(broker, database_url, tmp_path):
    event = parse_event(f.provider_started(PROVIDER, start_date="2027-03-01"))
    tasks = [t for t in Planner(load_catalog()).plan(event, ProviderState(provider_id=PROVIDER)).tasks
             if t.rule == "siebel-send-org-structure"]
    first, second = tasks[0].remind_on[:2]
    clock = FileClock(tmp_path / "now")
    clock.set(at(first))
    env = {
        "OMBOARD_KAFKA_BOOTSTRAP": broker.bootstrap, "OMBOARD_PARTITIONS": str(TEST_PARTITIONS),
        "OMBOARD_BROKER_SESSION_TIMEOUT": "6", "OMBOARD_SWEEP_INTERVAL": "0.3",
        "OMBOARD_CLOCK_FILE": str(tmp_path / "now"), "OMBOARD_DATA_DIR": str(tmp_path / "data"),
        "OMBOARD_DATABASE_URL": database_url,
    }
    worker = WorkerProcess("reporting", env, tmp_path / "reporting.log").start()
    requests = TopicReader(broker.bootstrap, NOTIFICATIONS)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        for task in tasks:
            key, value, headers = model_to_kafka(task, PROVIDER, "corr-deadline")
            producer.send(task_topic(task.system), key=key, value=value, headers=headers)
        producer.flush()
        requests.wait_for(lambda rs: len(reminders(rs, first)) == 1, what="the first reminder")

        # Killed after the reminder was recorded; restarted with nothing on disk: the ledger comes
        # back from its changelog, and with it the fact that the reminder was sent.
        worker.kill()
        clock.set(at(second))  # the next reminder falls due while the worker is down
        worker = WorkerProcess("reporting", {**env, "OMBOARD_DATA_DIR": str(tmp_path / "data2")},
                               tmp_path / "reporting2.log").start()
        requests.wait_for(lambda rs: len(reminders(rs, second)) == 1, what="the reminder due during the outage")
        assert len(reminders(requests.records, first)) == 1, "the first reminder was fired again"
    finally:
        producer.close()
        requests.close()
        worker.stop()
