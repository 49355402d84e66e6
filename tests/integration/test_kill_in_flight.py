"""Each worker SIGKILLed with more than 20 messages consumed but not committed, then restarted:
every event ends up exactly as the dry run plans it (the ledger holds every planned task once)
and every requested mail goes out, at most one of them twice (the one in flight).

The stack runs on a broker of its own: each test leaves thousands of messages behind.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Callable, Iterator

import httpx
import pytest

from schemas.catalog import load_catalog
from schemas.notifications import NotificationRequest
from schemas.parsing import parse_event
from schemas.topics import EVENTS, NOTIFICATIONS, TASK_STATUS, TASK_TOPICS
from services.devtools.apache_kafka import ApacheKafka
from services.devtools.processes import free_port
from services.domain.mail import route
from services.domain.planner import Planner
from services.domain.state import ProviderState
from services.entrypoints.launcher import Stack
from services.runtime.clock import FileClock
from services.runtime.settings import Settings
from tests import factories
from tests.conftest import TEST_PARTITIONS, needs_apache_kafka
from tests.support.kafka import GroupProgress, TopicReader, publish_events
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, needs_apache_kafka]

EVENT_COUNT = 150
IN_FLIGHT = 20
#: The events are sent on 2026-12-01 for starts two weeks later: most orders are already late and
#: the start cannot be met, so every event also asks late-order and date-at-risk notices, mailed at once.
SENT_AT, START = "2026-12-01T09:00:00+01:00", "2026-12-15"
BEFORE_ANY_DUE_DATE = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)
CONSUMES = {"orgstructure": (EVENTS,), "permissions": (EVENTS,), "reporting": (*TASK_TOPICS, TASK_STATUS, EVENTS),
            "notifier": (EVENTS, NOTIFICATIONS)}


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory) -> Iterator[ApacheKafka]:
    broker = ApacheKafka(tmp_path_factory.mktemp("kill-broker"))
    with broker:
        yield broker


def events(service: str) -> list[dict]:
    return [
        factories.provider_started(
            f"kill-{service}-{i}", start_date=START, units=[factories.unit(f"kill-{service}-{i}-u1", staff_count=12)],
            contacts=[factories.contact(email=f"admin-{i}@{service}.example.se")],
        ) | {"time": SENT_AT}
        for i in range(EVENT_COUNT)
    ]


def dry_run(batch: list[dict]) -> dict[str, set[str]]:
    planner = Planner(load_catalog(None))
    return {e["data"]["provider"]["id"]: {t.id for t in planner.plan(parse_event(e), ProviderState(
        provider_id=e["data"]["provider"]["id"])).tasks} for e in batch}


def kill_in_flight(stack: Stack, service: str, started: Callable[[], bool]) -> int:
    """SIGKILL ``service`` once it has begun on this run's messages while more than IN_FLIGHT of
    them are not committed; returns how many were not."""
    progress = GroupProgress(stack.bootstrap, f"omboard-{service}", *CONSUMES[service])
    try:
        waiting = eventually(lambda: started() and (uncommitted := progress.uncommitted()) > IN_FLIGHT and uncommitted,
                             f"{service} to have more than {IN_FLIGHT} messages in flight to be killed with",
                             timeout=60, interval=0.02)
        stack.kill(service)
        return waiting
    finally:
        progress.close()


@pytest.mark.parametrize("service", ["orgstructure", "permissions", "reporting", "notifier"])
def test_a_worker_killed_with_messages_in_flight_loses_nothing(own_broker, tmp_path, service):
    clock = FileClock(tmp_path / "now")
    clock.set(BEFORE_ANY_DUE_DATE)  # no reminder or escalation falls due: only late-order notices
    stack = Stack(var_dir=tmp_path / "var", bootstrap=own_broker.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, sweep_interval=0.5, clock_file=clock.path)
    batch = events(service)
    expected = dry_run(batch)
    with stack.running(timeout=90):
        def ledger(provider_id: str) -> list[str] | None:
            try:
                response = httpx.get(f"{stack.status_url}/v1/providers/{provider_id}/tasks",
                                     headers=stack.auth("operator"), timeout=30)
            except httpx.TransportError:  # the reporting worker, which serves it, is restarting
                return None
            return [task["id"] for task in response.json()["tasks"]] if response.status_code == 200 else None

        def mails() -> list:  # the stack's own mail sink: only this test's mail
            return stack.mail.snapshot()

        def begun() -> bool:
            if service == "notifier":
                return bool(mails())
            if service == "reporting":
                return ledger(f"kill-{service}-0") is not None or ledger(f"kill-{service}-1") is not None
            return True  # a planner: the burst is uncommitted until it has planned it

        publish_events(stack.bootstrap, batch)
        waiting = kill_in_flight(stack, service, begun)
        stack.restart(service)
        print(f"{service}: killed with {waiting} message(s) not committed, restarted")

        eventually(lambda: all(set(ledger(pid) or ()) >= ids for pid, ids in expected.items()),
                   "every planned task in the ledger", timeout=120, interval=1.0)
        for provider_id, ids in expected.items():
            listed = ledger(provider_id)
            assert listed is not None and len(listed) == len(set(listed)), f"{provider_id}: a task listed twice"
            assert set(listed) == ids, f"{provider_id}: {len(ids - set(listed))} missing, {len(set(listed) - ids)} extra"

        # Every notice asked (late-order, date-at-risk) is mailed to everyone it names, once (one more for the kill).
        reader = TopicReader(stack.bootstrap, NOTIFICATIONS)
        try:
            requests = [NotificationRequest.model_validate_json(r.value) for r in reader.read_all()]
        finally:
            reader.close()
        requests = [r for r in requests if r.provider_id in expected]  # the broker outlives one test
        assert requests, "the run asked no late-order notice"
        settings = Settings()  # the stack sets no mail addresses: the defaults route
        wanted = {(r.id, ", ".join(mail.to)) for r in {r.id: r for r in requests}.values()
                  for mail in route(r.contacts or [], r, settings).mails}
        mailed = lambda: collections.Counter((m["X-Omboard-Notification-Id"], m["To"]) for m in mails())  # noqa: E731
        try:
            eventually(lambda: set(wanted) <= set(mailed()), "every requested mail", timeout=120, interval=1.0)
        except AssertionError:
            missing = sorted(wanted - set(mailed()))
            pytest.fail(f"{len(missing)} of {len(wanted)} requested mails never sent, e.g. {missing[:3]}; "
                        f"sent e.g. {sorted(mailed())[:3]}")
        counts = mailed()
        assert set(counts) == wanted, f"mails nobody asked for: {sorted(set(counts) - wanted)[:3]}"
        twice = sum(n - 1 for n in counts.values())
        assert twice <= (1 if service == "notifier" else 0), f"{twice} mail(s) sent more than once"
        eventually(lambda: stack.not_ready() == [], "every worker ready again", timeout=60)
