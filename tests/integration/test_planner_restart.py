"""A planning worker killed and restarted with nothing on disk loses nothing and invents nothing:
a replayed event yields no task it did not plan before, and the provider's next event is planned
against its facts."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaProducer

from schemas.parsing import parse_event
from schemas.topics import EVENTS, TASK_TOPICS
from schemas.wire import event_to_kafka
from tests import factories as f
from tests.conftest import TEST_PARTITIONS
from tests.support.kafka import TopicReader, wait_committed_past
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.integration
PROVIDER = "restart-planner"


def publish(producer: KafkaProducer, raw: dict) -> None:
    key, value, headers = event_to_kafka(parse_event(raw))
    producer.send(EVENTS, key=key, value=value, headers=headers)
    producer.flush()


def test_a_killed_planner_comes_back_without_duplicating_tasks(broker, tmp_path):
    env = {
        "OMBOARD_KAFKA_BOOTSTRAP": broker.bootstrap, "OMBOARD_PARTITIONS": str(TEST_PARTITIONS),
        "OMBOARD_BROKER_SESSION_TIMEOUT": "6", "OMBOARD_DATA_DIR": str(tmp_path / "data"),
    }
    started = f.provider_started(PROVIDER, start_date="2027-03-01")
    worker = WorkerProcess("orgstructure", env, tmp_path / "orgstructure.log").start()
    tasks = TopicReader(broker.bootstrap, *TASK_TOPICS)
    events = TopicReader(broker.bootstrap, EVENTS)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")

    def mine(records) -> list[dict]:
        return [t for t in (json.loads(r.value) for r in records) if t["subject"]["provider_id"] == PROVIDER]

    try:
        publish(producer, started)
        tasks.wait_for(lambda rs: any(t["obligation"] == "ST1" for t in mine(rs)), what="the start's tasks")
        ours = lambda rs: [r for r in rs if r.headers.get("ce_id") == started["id"].encode()]  # noqa: E731
        original = ours(events.wait_for(lambda rs: bool(ours(rs)), what="the event on the topic"))[0]
        # Killed after the commit: the restart must not depend on reprocessing the event.
        wait_committed_past(broker.bootstrap, "omboard-orgstructure", EVENTS, original.partition, original.offset)
        tasks.read_all()  # to the end: the wait above stops at the first of the plan's tasks
        planned = {t["id"] for t in mine(tasks.records)}

        worker.kill()  # no shutdown
        worker = WorkerProcess("orgstructure", {**env, "OMBOARD_DATA_DIR": str(tmp_path / "empty")},
                               tmp_path / "orgstructure2.log").start()
        publish(producer, started)  # the same event again, as a redelivery would bring it
        replay = ours(events.wait_for(lambda rs: len(ours(rs)) >= 2, what="the replay"))[-1]
        wait_committed_past(broker.bootstrap, "omboard-orgstructure", EVENTS, replay.partition, replay.offset)
        tasks.read_all()
        # Normally the restored state says the replay was processed and nothing is sent; if the
        # state record was lost with the worker, the replay is planned again, but only ever as
        # the same tasks, which the ledger de-duplicates by id.
        assert {t["id"] for t in mine(tasks.records)} == planned, "the restarted worker planned new tasks"

        # The worker goes on with the provider's facts: without them a closure would be
        # dead-lettered as an event for an unknown provider instead of planned.
        publish(producer, f.unit_closed(PROVIDER, unit_id=f.UNIT_ID, closing_date="2027-09-30"))
        tasks.wait_for(lambda rs: any(t["obligation"].startswith("HO-") for t in mine(rs)),
                       what="the closure planned against the restored state")
    finally:
        producer.close()
        tasks.close()
        events.close()
        worker.stop()
