"""Intake end to end: the real HTTP API (uvicorn, its own process) and ``omboard publish`` against
the embedded broker; what they accept is on ``omboard.events`` in CloudEvents binary mode."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from schemas.parsing import parse_event
from schemas.topics import EVENTS
from schemas.wire import CORRELATION_HEADER, event_from_kafka, headers_dict
from services.devtools.embedded import Broker, choose, embedded_broker
from services.devtools.processes import free_port
from services.entrypoints.cli import app as cli
from services.http.access import key_entry, keys_json
from services.intake.api import create_api
from services.intake.publisher import EventPublisher
from services.runtime.broker import create_topics
from services.runtime.settings import Settings
from tests import factories as f
from tests.conftest import SUITE_BROKER
from tests.support.kafka import Record, TopicReader
from tests.support.wait import eventually
from tests.support.workers import spawn_logged

pytestmark = pytest.mark.integration

UPSTREAM_KEY = "intake-test-upstream-key-0123456789"
OPERATOR_KEY = "intake-test-operator-key-0123456789"
KEYS = keys_json([key_entry("hr", UPSTREAM_KEY, "upstream", event_types=["ProviderStarted", "StaffLeft"]),
                  key_entry("klk-it", OPERATOR_KEY, "operator")])
AUTH = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}


class EventsTopic:
    """``omboard.events`` from where it ended when created: what a test publishes after."""

    def __init__(self, bootstrap: str):
        self.reader = TopicReader(bootstrap, EVENTS, from_end=True)

    def end_offsets(self) -> dict[int, int]:
        return self.reader.end_offsets()

    def read(self, ids: set[str], timeout: float = 20.0) -> dict[str, Record]:
        """The records whose ``ce_id`` is in ``ids``; fails if any is missing by the deadline."""
        def ce_ids(records: list[Record]) -> set[str]:
            return {headers_dict(record.headers).get("ce_id", "") for record in records}

        records = self.reader.wait_for(lambda records: ids <= ce_ids(records), timeout, what=f"{sorted(ids)} on {EVENTS}")
        return {event_id: record for record in records if (event_id := headers_dict(record.headers).get("ce_id")) in ids}

    def close(self) -> None:
        self.reader.close()


@pytest.fixture
def events_topic(broker: Broker) -> Iterator[EventsTopic]:
    topic = EventsTopic(broker.bootstrap)
    yield topic
    topic.close()


@pytest.fixture(scope="module")
def api_url(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``omboard api`` in its own process, configured by environment variables like in production."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("intake") / "api.log"
    env = {**os.environ, "OMBOARD_KAFKA_BOOTSTRAP": broker.bootstrap, "OMBOARD_LOG_LEVEL": "INFO", "OMBOARD_API_KEYS": KEYS}
    process = spawn_logged(
        [sys.executable, "-m", "services.entrypoints.cli", "api", "--host", "127.0.0.1", "--port", str(port)], env, log_path
    )
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
            return False

        eventually(lambda: process.poll() is not None or ready(), "omboard api to be ready", timeout=30, interval=0.05,
                   explain=lambda: log_path.read_text(errors="replace"))
        if process.poll() is not None:
            pytest.fail(f"omboard api exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_health_and_readiness(api_url: str) -> None:
    assert httpx.get(f"{api_url}/healthz").status_code == 200
    ready = httpx.get(f"{api_url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_a_valid_event_is_acknowledged_and_on_the_topic_in_binary_mode(api_url: str, events_topic: EventsTopic) -> None:
    raw = f.provider_started(provider_id="prov-http-1", event_id="evt-http-1")

    response = httpx.post(
        f"{api_url}/v1/events",
        json=raw,
        headers={"X-Correlation-ID": "corr-http-1", "Content-Type": "application/cloudevents+json", **AUTH},
    )

    assert response.status_code == 202, response.text
    assert response.json() == {"id": "evt-http-1", "correlation_id": "corr-http-1"}
    assert response.headers["X-Correlation-ID"] == "corr-http-1"

    record = events_topic.read({"evt-http-1"})["evt-http-1"]
    assert record.key == b"prov-http-1"
    headers = headers_dict(record.headers)
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_type"] == "ProviderStarted"
    assert headers["ce_source"] == raw["source"]
    assert headers["ce_time"]
    assert headers[CORRELATION_HEADER] == "corr-http-1"
    assert headers["content-type"] == "application/json"
    sent = parse_event(raw)
    assert json.loads(record.value) == raw["data"]  # data alone is the value, as sent: no omitted field as null
    assert event_from_kafka(record.value, list(record.headers.items())) == sent


def test_without_a_correlation_id_the_event_id_is_the_correlation_id(api_url: str, events_topic: EventsTopic) -> None:
    raw = f.staff_left(provider_id="prov-http-2", event_id="evt-http-2")
    response = httpx.post(f"{api_url}/v1/events", json=raw, headers=AUTH)
    assert response.status_code == 202, response.text
    assert response.json() == {"id": "evt-http-2", "correlation_id": "evt-http-2"}
    record = events_topic.read({"evt-http-2"})["evt-http-2"]
    assert headers_dict(record.headers)[CORRELATION_HEADER] == "evt-http-2"
    assert record.key == b"prov-http-2"


def test_an_invalid_event_is_rejected_naming_the_field_and_nothing_is_published(
    api_url: str, events_topic: EventsTopic
) -> None:
    personnummer = f.personal_number_shaped(77)
    before = events_topic.end_offsets()

    invalid = httpx.post(f"{api_url}/v1/events", json=f.provider_started(org=personnummer, start_date="2026-02-30"),
                         headers=AUTH)
    not_json = httpx.post(f"{api_url}/v1/events", content=b"{nope", headers={"Content-Type": "application/json", **AUTH})
    bad_correlation = httpx.post(
        f"{api_url}/v1/events", json=f.staff_left(), headers={"X-Correlation-ID": "no spaces allowed", **AUTH}
    )

    assert invalid.status_code == 422
    fields = {error["field"] for error in invalid.json()["errors"]}
    assert fields == {"data.provider.org_number", "data.start_date"}
    assert all(set(error) == {"field", "reason"} for error in invalid.json()["errors"])
    assert personnummer not in invalid.text and personnummer.replace("-", "") not in invalid.text
    assert not_json.status_code == 422
    assert [error["field"] for error in not_json.json()["errors"]] == ["(body)"]
    assert bad_correlation.status_code == 422
    assert [error["field"] for error in bad_correlation.json()["errors"]] == ["X-Correlation-ID"]
    # The API answers only after Kafka acknowledged, so nothing published means nothing more here.
    assert events_topic.end_offsets() == before


def test_hostile_shapes_get_a_4xx_naming_the_field_never_a_500(api_url: str, events_topic: EventsTopic) -> None:
    before = events_topic.end_offsets()
    as_json = {"Content-Type": "application/json", **AUTH}

    def post(raw) -> httpx.Response:
        body = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
        return httpx.post(f"{api_url}/v1/events", content=body, headers=as_json, timeout=30)

    type_object = post({**f.staff_left(), "type": {}})
    type_list = post({**f.staff_left(), "type": ["StaffLeft"]})
    unknown = post({**f.staff_left(), "type": "StaffTransferred"})
    nested = post(b"[" * 50_000 + b"]" * 50_000)
    forged_id = post({**f.staff_left(), "id": "evt-1\r\nINFO forged log line"})
    huge = post(f.provider_started(units=[f.unit(f"u{i}", name="x" * 200, field_groups=["y" * 200] * 50)
                                          for i in range(100)]))

    for response in (type_object, type_list, unknown, nested, forged_id):
        assert response.status_code == 422, response.text
    assert [e["field"] for e in type_object.json()["errors"]] == ["type"]
    assert [e["field"] for e in type_list.json()["errors"]] == ["type"]
    assert unknown.json()["errors"][0]["reason"].startswith("is not a known event type")
    assert nested.json()["errors"] == [{"field": "(body)", "reason": "nests too deeply"}]
    assert [e["field"] for e in forged_id.json()["errors"]] == ["id"]
    assert huge.status_code == 413, huge.text  # never 503 "retry later": it could never fit
    assert httpx.get(f"{api_url}/healthz").status_code == 200
    assert events_topic.end_offsets() == before


def test_omboard_publish_names_the_line_of_a_hostile_shape_and_publishes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    huge = f.provider_started(units=[f.unit(f"u{i}", name="x" * 200, field_groups=["y" * 200] * 50) for i in range(100)])
    path.write_text("\n".join([json.dumps(f.staff_left()), json.dumps({**f.staff_left(), "type": {}}),
                               "[" * 50_000 + "]" * 50_000, json.dumps(huge)]) + "\n")
    result = CliRunner().invoke(cli, ["publish", str(path), "--bootstrap", f"127.0.0.1:{free_port()}"])
    assert result.exit_code == 2, result.output
    assert f"{path}:2: type: must be a string" in result.stderr
    assert f"{path}:3: (body): nests too deeply" in result.stderr
    assert f"{path}:4: (event): would be a Kafka record of" in result.stderr


def test_omboard_publish_puts_every_event_of_a_jsonl_file_on_the_topic(
    broker: Broker, events_topic: EventsTopic, tmp_path: Path
) -> None:
    events = [
        f.provider_started(provider_id="prov-cli-1", event_id="evt-cli-1"),
        f.staff_joined(provider_id="prov-cli-1", event_id="evt-cli-2", person_id=f.hsa_id("CLI2")),
    ]
    path = f.write_jsonl(tmp_path / "events.jsonl", events)

    result = CliRunner().invoke(cli, ["publish", str(path), "--bootstrap", broker.bootstrap])

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["evt-cli-1", "evt-cli-2"]
    found = events_topic.read({"evt-cli-1", "evt-cli-2"})
    assert {record.key for record in found.values()} == {b"prov-cli-1"}
    assert headers_dict(found["evt-cli-2"].headers)["ce_type"] == "StaffJoined"
    # One provider, one partition, in file order.
    first, second = found["evt-cli-1"], found["evt-cli-2"]
    assert first.partition == second.partition and first.offset < second.offset
    for raw in events:
        record = found[raw["id"]]
        assert event_from_kafka(record.value, list(record.headers.items())) == parse_event(raw)


@contextlib.contextmanager
def serve(api) -> Iterator[str]:
    """Serve an app with uvicorn in a background thread; yields its URL once it listens."""
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    eventually(lambda: server.started or not thread.is_alive(), "uvicorn to start", timeout=15, interval=0.02)
    assert thread.is_alive(), "uvicorn stopped while starting"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_without_kafka_the_api_is_live_but_not_ready_and_answers_503() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", api_keys=KEYS)  # nothing listens there
    with serve(create_api(settings)) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/readyz").status_code == 503

        response = httpx.post(f"{url}/v1/events", json=f.staff_left(), headers=AUTH)
        assert response.status_code == 503
        assert "Kafka is unavailable" in response.json()["detail"]
        assert response.headers["Retry-After"]
        # Validation still comes first: a bad event is a 422 whatever the state of Kafka.
        assert httpx.post(f"{url}/v1/events", json=f.staff_left(person_id="SE1-x"), headers=AUTH).status_code == 422


def test_when_kafka_goes_away_the_api_answers_503_in_bounded_time(tmp_path: Path) -> None:
    with embedded_broker(choose(SUITE_BROKER), tmp_path) as own_broker:
        create_topics(own_broker.bootstrap, [EVENTS], 1)
        publisher = EventPublisher(own_broker.bootstrap, timeout=1.0)
        with serve(create_api(Settings(kafka_bootstrap=own_broker.bootstrap, api_keys=KEYS), publisher)) as url:
            assert httpx.post(f"{url}/v1/events", json=f.staff_left(), headers=AUTH).status_code == 202
            own_broker.stop()
            started = time.monotonic()
            response = httpx.post(f"{url}/v1/events", json=f.staff_left(), headers=AUTH, timeout=30)
            assert response.status_code == 503, response.text
            assert "Kafka is unavailable" in response.json()["detail"]
            assert time.monotonic() - started < 10


def test_without_a_key_or_with_a_key_for_other_types_nothing_is_published(api_url: str, events_topic: EventsTopic) -> None:
    before = events_topic.end_offsets()
    missing = httpx.post(f"{api_url}/v1/events", json=f.staff_left())
    unknown = httpx.post(f"{api_url}/v1/events", json=f.staff_left(), headers={"Authorization": "Bearer not-a-key"})
    other_type = httpx.post(f"{api_url}/v1/events", json=f.unit_closed(), headers=AUTH)
    assert missing.status_code == unknown.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert other_type.status_code == 403
    assert other_type.json()["detail"] == "key 'hr' may not publish UnitClosed"
    assert events_topic.end_offsets() == before
    exposition = httpx.get(f"{api_url}/metrics")
    assert exposition.status_code == 200
    assert 'omboard_api_events_rejected_total{status="401"}' in exposition.text
    assert 'omboard_api_events_rejected_total{status="403"}' in exposition.text


def test_an_operator_confirms_a_held_roster_over_http_as_itself(api_url: str, events_topic: EventsTopic) -> None:
    url = f"{api_url}/v1/providers/prov-roster-1/roster-confirmations"
    before = events_topic.end_offsets()
    assert httpx.post(url, json={"as_of": "2026-06-01"}, headers=AUTH).status_code == 403, "an upstream key may not"
    bad = httpx.post(url, json={"as_of": "1 June"}, headers=OPERATOR)
    assert bad.status_code == 422 and bad.json()["errors"] == [{"field": "as_of", "reason": "must be an ISO date, YYYY-MM-DD"}]
    assert events_topic.end_offsets() == before

    accepted = httpx.post(url, json={"as_of": "2026-06-01"}, headers=OPERATOR)
    assert accepted.status_code == 202, accepted.text
    event_id = accepted.json()["id"]
    record = events_topic.read({event_id})[event_id]
    event = event_from_kafka(record.value, list(record.headers.items()))
    assert event.type == "StaffRosterConfirmed" and record.key == b"prov-roster-1"
    assert (str(event.data.as_of), event.data.confirmed_by) == ("2026-06-01", "klk-it")


def test_omboard_roster_confirm_publishes_the_confirmation(broker: Broker, events_topic: EventsTopic) -> None:
    result = CliRunner().invoke(cli, ["roster", "confirm", "prov-roster-2", "--as-of", "2026-06-01", "--by", "Olle",
                                      "--bootstrap", broker.bootstrap])
    assert result.exit_code == 0, result.output
    (event_id,) = result.stdout.split()
    record = events_topic.read({event_id})[event_id]
    event = event_from_kafka(record.value, list(record.headers.items()))
    assert (event.type, event.data.confirmed_by) == ("StaffRosterConfirmed", "Olle")
