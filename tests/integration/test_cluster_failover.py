"""A broker dies under load: on a three-node Apache Kafka cluster (replication factor 3,
min.insync.replicas 2, every producer acks=all) the broker leading the events topic is SIGKILLed
while events stream in through the intake API. Every accepted event is planned exactly once into
the ledger, and the workers go on without being restarted."""

from __future__ import annotations

import collections
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from kafka import KafkaAdminClient

from schemas.catalog import load_catalog
from schemas.parsing import parse_event
from schemas.topics import ALL_TOPICS, EVENTS, TASK_TOPICS
from services.devtools.apache_kafka import ApacheKafka
from services.devtools.processes import free_port
from services.domain.planner import Planner
from services.domain.state import ProviderState
from services.entrypoints.launcher import Stack
from services.runtime.broker import create_topics
from services.runtime.clock import FileClock
from tests import factories
from tests.conftest import TEST_PARTITIONS, needs_apache_kafka
from tests.support.kafka import TopicReader
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, needs_apache_kafka]

EVENT_COUNT = 120
RATE = 12.0  # events per second: a steady stream of about ten seconds, the kill in its middle
# No deadline of a start on 2027-03-01 is near, and no monthly report falls due: the ledger holds
# exactly what the events planned.
NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[ApacheKafka]:
    data = tmp_path_factory.mktemp("cluster")
    with ApacheKafka(data, nodes=3, config={"min.insync.replicas": "2"}) as kafka:
        create_topics(kafka.bootstrap, ALL_TOPICS, TEST_PARTITIONS, replication_factor=3)
        yield kafka


def leader_of_events(bootstrap: str) -> int:
    """The node leading most of the events topic's partitions."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="omboard-test")
    try:
        [topic] = admin.describe_topics([EVENTS])
    finally:
        admin.close()
    leaders = collections.Counter(partition["leader"] for partition in topic["partitions"])
    return leaders.most_common(1)[0][0]


def expected_task_ids(event: dict) -> set[str]:
    plan = Planner(load_catalog(None)).plan(parse_event(event), ProviderState(provider_id=event["data"]["provider"]["id"]))
    return {task.id for task in plan.tasks}


class Upstream:
    """An upstream system posting events at a steady rate, retrying a 503 as the API asks."""

    def __init__(self, stack: Stack, events: list[dict]):
        self.stack = stack
        self.events = events
        self.accepted: list[dict] = []
        self.refused: list[str] = []
        self.retries = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            for event in self.events:
                started = time.monotonic()
                for _ in range(20):
                    response = client.post(f"{self.stack.api_url}/v1/events", json=event, headers=self.stack.auth())
                    if response.status_code != 503:
                        break
                    self.retries += 1
                    time.sleep(float(response.headers.get("Retry-After", "1")))
                if response.status_code == 202:
                    self.accepted.append(event)
                else:
                    self.refused.append(f"{response.status_code} {response.text[:200]}")
                time.sleep(max(0.0, 1 / RATE - (time.monotonic() - started)))


def test_the_events_leader_killed_mid_stream_loses_nothing_and_duplicates_nothing(cluster, tmp_path):
    clock = FileClock(tmp_path / "now")
    clock.set(NOW)
    stack = Stack(var_dir=tmp_path / "var", bootstrap=cluster.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, replication_factor=3, clock_file=clock.path,
                  services=("orgstructure", "permissions", "reporting"))
    events = [factories.provider_started(f"failover-{i}", start_date="2027-03-01") for i in range(EVENT_COUNT)]
    expected = {event["data"]["provider"]["id"]: expected_task_ids(event) for event in events}

    with stack.running(timeout=120):
        pids = {name: process.pid for name, process in stack.processes.items()}
        upstream = Upstream(stack, events)
        upstream.thread.start()
        eventually(lambda: len(upstream.accepted) >= EVENT_COUNT // 3, "a third of the events accepted", timeout=60)
        victim = leader_of_events(cluster.bootstrap)
        cluster.kill_node(victim)
        upstream.thread.join(timeout=180)
        assert not upstream.thread.is_alive(), "the upstream did not finish publishing"
        assert upstream.refused == [], f"events refused for good: {upstream.refused[:3]}"
        assert len(upstream.accepted) == EVENT_COUNT

        def ledger(provider_id: str) -> list[str] | None:
            response = httpx.get(f"{stack.status_url}/v1/providers/{provider_id}/tasks",
                                 headers=stack.auth("operator"), timeout=30)
            return [task["id"] for task in response.json()["tasks"]] if response.status_code == 200 else None

        def all_planned() -> bool:
            return all(set(ledger(pid) or ()) >= ids for pid, ids in expected.items())

        eventually(all_planned, "every accepted event's tasks in the ledger", timeout=180, interval=1.0)
        for provider_id, ids in expected.items():
            listed = ledger(provider_id)
            assert listed is not None
            assert len(listed) == len(set(listed)) == len(ids), f"{provider_id}: duplicate or extra tasks"
            assert set(listed) == ids

        # At-least-once may put a task on its topic twice; the ledger keeps one of each, by id.
        reader = TopicReader(cluster.bootstrap, *TASK_TOPICS)
        try:
            records = reader.wait_for(lambda rs: len({json.loads(r.value)["id"] for r in rs}) >=
                                      sum(map(len, expected.values())), what="every task on the task topics")
        finally:
            reader.close()
        copies = collections.Counter(json.loads(r.value)["id"] for r in records)
        print(f"failover: killed node {victim}; {upstream.retries} request(s) retried after 503; "
              f"{sum(n - 1 for n in copies.values())} task message(s) delivered twice, de-duplicated by the ledger")

        assert {name: process.pid for name, process in stack.processes.items()} == pids
        assert all(process.poll() is None for process in stack.processes.values()), "a worker stopped"
        eventually(lambda: stack.not_ready() == [], "every worker ready again after the failover", timeout=60)
