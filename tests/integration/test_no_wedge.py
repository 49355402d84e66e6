"""No worker wedges: a 10,000-unit ProviderStarted put straight on Kafka (the API refuses it) is
dead-lettered, a burst of the largest starts the contract allows is planned, and the planners'
health endpoints answer all the while."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from kafka import KafkaProducer

from schemas.events import MAX_UNITS
from schemas.topics import ALL_TOPICS, EVENTS, dead_letter_topic, task_topic
from schemas.wire import CORRELATION_HEADER
from services.devtools.embedded import Broker, choose, embedded_broker
from services.devtools.processes import free_port
from services.entrypoints.launcher import Stack
from services.runtime.broker import create_topics
from tests import factories as f
from tests.conftest import SUITE_BROKER, TEST_PARTITIONS
from tests.support.kafka import TopicReader, Topics

pytestmark = pytest.mark.integration

PLANNERS = ("orgstructure", "permissions")
BURST = 10  # starts of MAX_UNITS units each: about 24,000 tasks to plan


def raw_event_record(event: dict) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """CloudEvents binary mode, written by hand: what a careless producer on Kafka could send."""
    headers = [(f"ce_{name}", str(event[name]).encode()) for name in ("specversion", "id", "source", "type", "time")]
    headers += [("content-type", b"application/json"), (CORRELATION_HEADER, event["id"].encode())]
    return event["data"]["provider"]["id"].encode(), json.dumps(event["data"]).encode(), headers


class ReadinessProbe:
    """Asks every planner's /readyz a few times a second and keeps each answer (or its failure)."""

    def __init__(self, stack: Stack):
        self.urls = {service: f"http://127.0.0.1:{stack.web_ports[service]}/readyz" for service in PLANNERS}
        self.answers: list[tuple[str, int | str]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self.stopping.wait(0.2):
                for service, url in self.urls.items():
                    try:
                        self.answers.append((service, client.get(url).status_code))
                    except httpx.HTTPError as error:
                        self.answers.append((service, type(error).__name__))

    def __enter__(self) -> ReadinessProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


@pytest.fixture
def broker(tmp_path) -> Iterator[Broker]:
    """A broker of its own: the burst's 24,000 tasks would otherwise wait on the shared topics for
    the next test's reporting worker, and keep it busy for minutes."""
    own = embedded_broker(choose(SUITE_BROKER), tmp_path / "broker").start()  # type: ignore[arg-type]
    try:
        create_topics(own.bootstrap, ALL_TOPICS, TEST_PARTITIONS)
        yield own
    finally:
        own.stop()


def test_huge_and_large_events_leave_the_planners_answering(broker, tmp_path):
    stack = Stack(var_dir=tmp_path / "var", bootstrap=broker.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, services=PLANNERS)
    huge = f.provider_started("wedge-huge", start_date="2027-03-01",
                              units=[f.unit(f"wedge-u{i}", staff_count=3) for i in range(10_000)])
    burst = [f.provider_started(f"wedge-{n}", start_date="2027-03-01",
                                units=[f.unit(f"wedge-{n}-u{i}", field_groups=["Norr", "Syd"]) for i in range(MAX_UNITS)])
             for n in range(BURST)]
    topics = Topics(broker.bootstrap)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        with stack.running(), ReadinessProbe(stack) as probe:
            for event in (huge, *burst):
                key, value, headers = raw_event_record(event)
                producer.send(EVENTS, key=key, value=value, headers=headers)
            producer.flush()

            for service in PLANNERS:
                letter = topics.find(dead_letter_topic(service), lambda r: r.key == b"wedge-huge", timeout=60)
                assert b"data.units" in letter.headers["dlq_reason"]
            started = {event["data"]["provider"]["id"].encode() for event in burst}
            klk_it = TopicReader(broker.bootstrap, task_topic("klk-it"))
            try:
                klk_it.wait_for(lambda rs: started <= {r.key for r in rs}, timeout=180,
                                what="KLK IT's tasks of every start in the burst")
            finally:
                klk_it.close()
            assert len(probe.answers) > 10, "the probe ran while the burst was planned"
        failures = [answer for answer in probe.answers if answer[1] != 200]
        assert failures == [], f"{len(failures)} of {len(probe.answers)} readiness probes failed: {failures[:5]}"
    finally:
        producer.close()
        topics.close()
