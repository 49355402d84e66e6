"""What Tansu hid: Apache Kafka refuses a record over its limit. A message too large to copy into
a dead letter still gets one, the agent and its batch go on; and a provider whose ledger, kept as
one record, passed the limit has every task recorded now that each task is a record (issue 9)."""

from __future__ import annotations

import httpx
import pytest
from kafka import KafkaProducer

from schemas.catalog import load_catalog
from schemas.parsing import parse_event
from schemas.topics import EVENTS, dead_letter_topic
from schemas.wire import MAX_RECORD_BYTES, event_to_kafka
from services.devtools.processes import free_port
from services.domain.planner import Planner
from services.domain.state import ProviderState
from services.entrypoints.launcher import Stack
from tests import factories as f
from tests.conftest import TEST_PARTITIONS
from tests.support.kafka import TopicReader, Topics
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

# 100 units with five field groups each: about 820 orgstructure tasks, a ledger of 1.1 MB when it
# was kept as one record (measured with the planner in-process), dead-lettered task by task then.
BIG = f.provider_started("limits-big", start_date="2027-03-01", units=[
    f.unit(f"limits-u{i}", name="Enhet " + "x" * 150, field_groups=[f"g{i}-{j}" + "y" * 150 for j in range(5)])
    for i in range(100)
])
SMALL = f.provider_started("limits-small", start_date="2027-03-01")


def test_a_record_too_large_is_dead_lettered_and_the_agents_go_on(broker, tmp_path):
    stack = Stack(var_dir=tmp_path, bootstrap=broker.bootstrap, api_port=free_port(), partitions=TEST_PARTITIONS,
                  services=("orgstructure", "reporting"))
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    topics = Topics(broker.bootstrap)
    with stack.running():
        # A value that fits on the topic, but not with a dead letter's headers added to it.
        producer.send(EVENTS, key=b"limits-poison", value=b"{" + b" " * (MAX_RECORD_BYTES - 200))
        for event in (BIG, SMALL):
            key, value, headers = event_to_kafka(parse_event(event))
            producer.send(EVENTS, key=key, value=value, headers=headers)
        producer.flush()

        poison = topics.find(dead_letter_topic("orgstructure"), lambda r: r.key == b"limits-poison")
        assert poison.value is None
        assert b"too large to copy" in poison.headers["dlq_value_omitted"]
        assert poison.headers["dlq_topic"] == EVENTS.encode()

        planner = Planner(load_catalog(None))
        event = parse_event(BIG)
        expected = {task.id for task in planner.plan(event, ProviderState(provider_id="limits-big")).tasks
                    if planner.catalog.rule(task.rule).scope != "person"}  # orgstructure's, the stack's planner

        def shown(provider_id: str) -> set[str]:
            response = httpx.get(f"{stack.status_url}/v1/tasks", params={"provider_id": provider_id, "limit": 5000},
                                 headers=stack.auth("operator"), timeout=30)
            return {task["id"] for task in response.json()["tasks"]} if response.status_code == 200 else set()

        assert eventually(lambda: shown("limits-small"), "the small provider's tasks in the ledger", timeout=60)
        eventually(lambda: shown("limits-big") == expected, f"all {len(expected)} of the big provider's tasks",
                   timeout=60)
        letters = TopicReader(broker.bootstrap, dead_letter_topic("reporting"))
        try:
            assert not [r for r in letters.read_all() if r.key == b"limits-big"], "a task of it was dead-lettered"
        finally:
            letters.close()
        assert not stack.not_ready(), "every worker is still ready"
    producer.close()
    topics.close()
