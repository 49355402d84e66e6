"""Issue 9: one provider driven to 20,000 tasks through the real workers on Apache Kafka. No
changelog record grows with the provider's work: the largest stays under 64 kB (a ledger per
provider passed Kafka's 1 MB limit at 792 tasks and crash-looped the worker), and the read model
in PostgreSQL shows every task.

The stack runs on a broker of its own: the test leaves some 100,000 messages behind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from kafka import KafkaConsumer

from schemas.catalog import load_catalog
from schemas.parsing import parse_event
from services.devtools.apache_kafka import ApacheKafka
from services.devtools.processes import free_port
from services.domain.planner import Planner
from services.domain.state import ProviderState, evolve
from services.entrypoints.launcher import Stack
from services.runtime.clock import FileClock
from tests import factories
from tests.conftest import TEST_PARTITIONS, needs_apache_kafka
from tests.support.kafka import TopicReader, publish_events
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, needs_apache_kafka]

PROVIDER = "stor-kommun-omsorg"
UNITS, STAFF = 300, 4400  # 300 units is the most one ProviderStarted may name
LARGEST_RECORD = 64 * 1024


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory) -> Iterator[ApacheKafka]:
    with ApacheKafka(tmp_path_factory.mktemp("scale-broker")) as broker:
        yield broker


def history() -> list[dict]:
    started = factories.provider_started(PROVIDER, units=[factories.unit(f"u{i:04d}") for i in range(UNITS)])
    joined = [factories.staff_joined(PROVIDER, unit_id=f"u{i % UNITS:04d}", person_id=factories.hsa_id(f"P{i:05d}"),
                                     event_id=f"scale-join-{i}") for i in range(STAFF)]
    return [started, *joined]


def planned(events: list[dict]) -> set[str]:
    planner = Planner(load_catalog(None))
    state, ids = ProviderState(provider_id=PROVIDER), set()
    for raw in events:
        event = parse_event(raw)
        plan = planner.plan(event, state)
        ids |= {task.id for task in plan.tasks if task.subject.provider_id == PROVIDER}
        state = evolve(state, event, plan, planner.catalog)
    return ids


def changelogs(bootstrap: str) -> list[str]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return sorted(topic for topic in consumer.topics() if topic.endswith("-changelog"))
    finally:
        consumer.close()


def test_a_provider_with_20000_tasks_has_no_large_record_and_every_task_in_the_read_model(own_broker, tmp_path):
    events = history()
    expected = planned(events)
    assert len(expected) >= 20_000, len(expected)
    clock = FileClock(tmp_path / "now")
    clock.set(dt.datetime(2025, 12, 1, 9, 0, tzinfo=dt.UTC))  # before every reminder: no mail but late notices
    stack = Stack(var_dir=tmp_path / "var", bootstrap=own_broker.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, clock_file=clock.path,
                  services=("orgstructure", "permissions", "reporting"))
    with stack.running(timeout=90):
        publish_events(stack.bootstrap, events, max_request_size=2_000_000)

        def shown() -> int:
            response = httpx.get(f"{stack.status_url}/v1/providers", headers=stack.auth("operator"), timeout=30)
            return next((p["total"] for p in response.json()["providers"] if p["id"] == PROVIDER), 0) \
                if response.status_code == 200 else 0

        eventually(lambda: shown() >= len(expected), f"{len(expected)} tasks in the read model", timeout=600, interval=2)
        assert shown() == len(expected)
        listed: set[str] = set()
        for offset in range(0, len(expected), 5000):
            page = httpx.get(f"{stack.status_url}/v1/tasks", params={"provider_id": PROVIDER, "limit": 5000,
                                                                     "offset": offset},
                             headers=stack.auth("operator"), timeout=60).json()["tasks"]
            listed |= {task["id"] for task in page}
        assert listed == expected

        topics = changelogs(stack.bootstrap)
        assert {"omboard-reporting-tasks-changelog", "omboard-permissions-provider-state-changelog"} <= set(topics)
        reader = TopicReader(stack.bootstrap, *topics)
        try:
            records = reader.read_all(timeout=120)
        finally:
            reader.close()
        largest = max(records, key=lambda r: len(r.key or b"") + len(r.value or b""))
        size = len(largest.key or b"") + len(largest.value or b"")
        print(f"{len(records)} changelog records in {len(topics)} changelogs; the largest, {size} bytes, "
              f"in {largest.topic}")
        assert size < LARGEST_RECORD, f"a {size}-byte record in {largest.topic}: state grows with the work again"
        assert stack.not_ready() == []
