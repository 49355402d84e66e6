"""Issue 3's scenarios (``tests/support/scenarios.py``) through the real broker: each history is
published to ``omboard.events`` and the planning services' tasks on the task topics must be exactly
the dry run's (the same planning code, so they cannot drift). Whether they are right for each
scenario is checked at unit-test speed, in memory: ``tests/unit/test_scenarios.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kafka import KafkaProducer

from schemas.parsing import parse_event
from schemas.topics import EVENTS, TASK_TOPICS
from schemas.wire import event_to_kafka
from services.devtools.processes import free_port
from services.entrypoints.launcher import Stack
from tests.conftest import TEST_PARTITIONS
from tests.support.kafka import TopicReader
from tests.support.scenarios import SCENARIOS, dry_run, scenario_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def planners(broker, tmp_path_factory) -> Iterator[Stack]:
    stack = Stack(var_dir=tmp_path_factory.mktemp("scenarios"), bootstrap=broker.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, services=("orgstructure", "permissions"))
    with stack.running(timeout=90):
        yield stack


@pytest.fixture(scope="module")
def published(planners, broker) -> dict[str, list[dict]]:
    """Every scenario's history published at once; the planners work through them in parallel."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    histories = {name: scenario_events(name) for name in SCENARIOS}
    for events in histories.values():
        for raw in events:
            key, value, headers = event_to_kafka(parse_event(raw))
            producer.send(EVENTS, key=key, value=value, headers=headers)
    producer.flush()
    producer.close()
    return histories


@pytest.fixture(scope="module")
def emitted(published, broker) -> dict[str, dict]:
    """Task id -> task, of everything the planners emitted for the scenarios."""
    expected = {task["id"] for events in published.values() for task in dry_run(events)}
    reader = TopicReader(broker.bootstrap, *TASK_TOPICS)
    try:
        reader.wait_for(lambda rs: expected <= {json.loads(r.value)["id"] for r in rs}, timeout=60,
                        what=f"{len(expected)} scenario tasks")
        return {task["id"]: task for task in (json.loads(r.value) for r in reader.records)
                if task["subject"]["provider_id"].startswith("scn-")}
    finally:
        reader.close()


def test_the_services_emit_exactly_the_dry_run(published, emitted):
    planned = {task["id"]: task for events in published.values() for task in dry_run(events)}
    assert set(emitted) == set(planned)
    for task_id, task in planned.items():
        sent = {k: v for k, v in emitted[task_id].items() if k != "correlation_id"}
        assert sent == {k: v for k, v in task.items() if k != "correlation_id"}


