"""Issue 9: PostgreSQL away is not data lost. The database is stopped in the middle of a stream
of events: reporting goes on recording every task in its table, readiness says "read model
behind", the status API answers 503 with the reason, and once the database is back the read model
catches up with every task, none twice."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from schemas.catalog import load_catalog
from schemas.parsing import parse_event
from services.devtools.processes import free_port
from services.domain.planner import Planner
from services.domain.state import ProviderState
from services.entrypoints.launcher import Stack
from services.runtime.clock import FileClock
from tests import factories
from tests.conftest import TEST_PARTITIONS
from tests.support.kafka import TopicReader, publish_events
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

TASKS_CHANGELOG = "omboard-reporting-tasks-changelog"


def events(run: str, first: int, count: int) -> list[dict]:
    return [factories.provider_started(f"{run}-p{i}", event_id=f"{run}-e{i}",
                                       units=[factories.unit(f"{run}-p{i}-u1"), factories.unit(f"{run}-p{i}-u2")])
            for i in range(first, first + count)]


def planned(batch: list[dict]) -> set[str]:
    planner = Planner(load_catalog(None))
    return {task.id for raw in batch for event in [parse_event(raw)]
            for task in planner.plan(event, ProviderState(provider_id=event.provider_id)).tasks}


def test_the_read_model_catches_up_with_every_task_after_the_database_was_away(broker, tmp_path):
    run = f"pgdown-{tmp_path.name[-12:]}"
    before, during = events(run, 0, 40), events(run, 40, 60)
    clock = FileClock(tmp_path / "now")
    clock.set(dt.datetime(2025, 12, 1, 9, 0, tzinfo=dt.UTC))
    stack = Stack(var_dir=tmp_path / "var", bootstrap=broker.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, clock_file=clock.path,
                  services=("orgstructure", "permissions", "reporting"))
    with stack.running(timeout=90):
        def listed() -> set[str] | None:
            try:
                response = httpx.get(f"{stack.status_url}/v1/tasks", params={"limit": 5000},
                                     headers=stack.auth("operator"), timeout=10)
            except httpx.TransportError:
                return None
            if response.status_code != 200:
                return None
            ids = [task["id"] for task in response.json()["tasks"] if task["provider_id"].startswith(run)]
            assert len(ids) == len(set(ids)), "a task listed twice"
            return set(ids)

        publish_events(stack.bootstrap, before)
        eventually(lambda: listed() == planned(before), "the first events' tasks in the read model", timeout=60)

        stack.stop_database()
        publish_events(stack.bootstrap, during)

        # Reporting records every task all the same: its table's changelog has them.
        reader = TopicReader(stack.bootstrap, TASKS_CHANGELOG)
        try:
            wanted = planned(before + during)
            reader.wait_for(lambda records: {r.key.decode() for r in records if r.key} >= wanted,
                            timeout=60, what="every task recorded in reporting's table")
        finally:
            reader.close()
        refused = httpx.get(f"{stack.status_url}/v1/providers", headers=stack.auth("operator"), timeout=30)
        assert refused.status_code == 503
        assert "cannot be reached" in refused.json()["detail"]
        readiness = eventually(lambda: (r := httpx.get(stack.readiness_urls()["reporting"], timeout=5)).status_code == 503
                               and r.json(), "reporting to say it is not ready", timeout=30)
        assert any(problem.startswith("read model behind") for problem in readiness["problems"]), readiness

        stack.start_database()
        eventually(lambda: listed() == wanted, "every task in the read model after the database returned",
                   timeout=90, interval=0.5)
        eventually(lambda: stack.not_ready() == [], "every worker ready again", timeout=60)
