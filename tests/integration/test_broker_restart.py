"""A fault survived: the broker stopped and started again under running workers. They reconnect
by themselves and go on; what was published before the stop and after the restart is planned."""

from __future__ import annotations

import httpx
import pytest

from schemas.topics import ALL_TOPICS
from services.devtools.apache_kafka import ApacheKafka
from services.devtools.processes import free_port
from services.entrypoints.launcher import Stack
from services.runtime.broker import create_topics
from tests import factories as f
from tests.conftest import TEST_PARTITIONS, needs_apache_kafka
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, needs_apache_kafka]


def test_workers_go_on_after_the_broker_is_stopped_and_started_again(tmp_path):
    kafka = ApacheKafka(tmp_path / "kafka").start()
    stack = Stack(var_dir=tmp_path / "var", bootstrap=kafka.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, services=("orgstructure", "reporting"))

    def tasks_of(provider_id: str) -> list[dict]:
        try:
            response = httpx.get(f"{stack.status_url}/v1/providers/{provider_id}/tasks",
                                 headers=stack.auth("operator"), timeout=10)
        except httpx.HTTPError:
            return []
        return response.json()["tasks"] if response.status_code == 200 else []

    try:
        create_topics(kafka.bootstrap, ALL_TOPICS, TEST_PARTITIONS)
        with stack.running():
            pids = {name: process.pid for name, process in stack.processes.items()}
            stack.publish(f.provider_started("restart-before", start_date="2027-03-01"))
            before = eventually(lambda: tasks_of("restart-before"), "tasks planned before the stop", timeout=60)

            kafka.stop()  # a controlled shutdown, then nothing listens on its ports
            kafka.start()  # the same data and ports

            # The API may answer 503 while its producer reconnects; an upstream retries.
            def accepted() -> bool:
                try:
                    stack.publish(f.provider_started("restart-after", start_date="2027-03-01", event_id="evt-after"))
                except OSError:
                    return False
                return True

            eventually(accepted, "the API accepting events again", timeout=90, interval=1.0)
            eventually(lambda: tasks_of("restart-after"), "tasks planned after the restart", timeout=120, interval=1.0)
            # Every task known before the stop is still there (more of that plan may have arrived since).
            assert {t["id"] for t in tasks_of("restart-before")} >= {t["id"] for t in before}
            assert {name: process.pid for name, process in stack.processes.items()} == pids, "a worker was restarted"
            eventually(lambda: stack.not_ready() == [], "every worker ready again", timeout=60)
    finally:
        kafka.stop()
