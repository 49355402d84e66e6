"""The notifier as a real Faust worker (a subprocess) against the embedded broker and a real SMTP sink."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from schemas.events import Contact, Envelope, Provider, ProviderStarted, Unit
from schemas.notifications import DeliveryRecord, NotificationRequest, TaskLine
from schemas.topics import EVENTS, NOTIFICATIONS, NOTIFICATIONS_SENT, dead_letter_topic
from schemas.wire import CORRELATION_HEADER, event_to_kafka, model_to_kafka
from services.runtime.broker import EmbeddedBroker, die_with_parent, free_port
from services.runtime.mailsink import MailSink

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONTACTS_CHANGELOG = "omboard-notifier-contacts-changelog"
DEAD_LETTERS = dead_letter_topic("notifier")
NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.timezone.utc)


def worker_command() -> list[str]:
    """``omboard worker notifier``; the lead's runner (services/runtime/worker.py via the CLI)."""
    script = Path(sys.executable).with_name("omboard")
    if script.exists():
        return [str(script), "worker", "notifier"]
    return [sys.executable, "-c", "from services.runtime.worker import run_service; run_service('notifier')"]


def wait_for(condition: Callable[[], bool], timeout: float, failure: Callable[[], str]) -> float:
    """Poll until ``condition`` holds; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(failure())
        time.sleep(0.05)
    return time.monotonic() - start


class Topics:
    """Reads topics from the beginning, one consumer each, keeping what it has seen."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.consumers: dict[str, KafkaConsumer] = {}
        self.seen: dict[str, list[ConsumerRecord]] = {}

    def _consumer(self, topic: str) -> KafkaConsumer:
        if topic not in self.consumers:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                     allow_auto_create_topics=False)
            consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
            assert partitions, f"topic {topic} does not exist"
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            consumer.seek_to_beginning()
            self.consumers[topic], self.seen[topic] = consumer, []
        return self.consumers[topic]

    def find(self, topic: str, match: Callable[[ConsumerRecord], bool], timeout: float = 30) -> ConsumerRecord:
        return self.find_all(topic, match, 1, timeout)[0]

    def find_all(self, topic: str, match: Callable[[ConsumerRecord], bool], count: int,
                 timeout: float = 30) -> list[ConsumerRecord]:
        """The first ``count`` matching records, in offset order per partition."""
        deadline = time.monotonic() + timeout
        while True:
            consumer = self._consumer(topic)
            hits = [record for record in self.seen.get(topic, []) if match(record)]
            if len(hits) >= count:
                return hits[:count]
            if time.monotonic() > deadline:
                pytest.fail(f"{len(hits)} of {count} matching records on {topic} within {timeout}s")
            for records in consumer.poll(timeout_ms=200).values():
                self.seen[topic] += records

    def close(self) -> None:
        for consumer in self.consumers.values():
            consumer.close()


@dataclass
class Notifier:
    """The notifier worker process, the SMTP sink it mails to, and a producer and readers."""

    sink: MailSink
    producer: KafkaProducer
    topics: Topics
    env: dict[str, str]
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    spawned_at: float = 0.0

    def spawn(self, name: str) -> float:
        """Start a worker with its own data directory and log; returns seconds until assigned."""
        self.log_path = self.directory / f"{name}.log"
        env = self.env | {"OMBOARD_DATA_DIR": str(self.directory / f"{name}-data")}
        self.spawned_at = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(worker_command(), cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        process = self.process
        ready = wait_for(
            lambda: process.poll() is not None or "notifier: assigned" in self.log(),
            timeout=60,
            failure=lambda: f"notifier never got its partitions:\n{self.log()}",
        )
        assert process.poll() is None, f"notifier exited with {process.returncode}:\n{self.log()}"
        return ready

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"notifier did not stop on SIGTERM:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""

    def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.producer.send(topic, key=key, value=value, headers=headers).get(timeout=10)

    def mails(self, message_id: str) -> list[EmailMessage]:
        return [m for m in self.sink.snapshot() if m["Message-ID"] == message_id]

    def wait_for_mail(self, message_id: str, timeout: float = 30) -> EmailMessage:
        try:
            self.sink.wait_for(lambda mails: any(m["Message-ID"] == message_id for m in mails), timeout)
        except TimeoutError:
            pytest.fail(f"no mail {message_id} within {timeout}s; worker log:\n{self.log()}")
        return self.mails(message_id)[0]


@pytest.fixture(scope="module")
def notifier(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notifier]:
    tmp = tmp_path_factory.mktemp("notifier")
    env = os.environ | {
        "OMBOARD_KAFKA_BOOTSTRAP": broker.bootstrap,
        "OMBOARD_PARTITIONS": "2",
        "OMBOARD_BROKER_SESSION_TIMEOUT": "3",
        "OMBOARD_SMTP_HOST": "127.0.0.1",
        "OMBOARD_FALLBACK_EMAIL": "fallback@test.example",
        "OMBOARD_STATUS_PAGE_URL": "http://status.test",
        "OMBOARD_WEB_PORT_BASE": str(free_port() - 3),  # the notifier serves on base + 3
        "OMBOARD_LOG_LEVEL": "INFO",
    }
    with MailSink(tmp / "mail") as sink:
        env["OMBOARD_SMTP_PORT"] = str(sink.port)
        notifier = Notifier(sink, KafkaProducer(bootstrap_servers=broker.bootstrap), Topics(broker.bootstrap), env, tmp)
        try:
            print(f"notifier assigned its partitions {notifier.spawn('worker-1'):.2f}s after spawn")
            yield notifier
        finally:
            notifier.producer.close()
            notifier.topics.close()
            code = notifier.stop() if notifier.process is not None else 0
    assert code in (0, -signal.SIGTERM), f"notifier exited with {code}:\n{notifier.log()}"


def provider_started(provider_id: str, *contacts: Contact) -> Envelope:
    data = ProviderStarted(
        provider=Provider(id=provider_id, name="Omsorg Test AB", org_number="556677-8899", regi="privat",
                          services=["hemtjanst"], hsl=False, uses_flexite=False),
        start_date=dt.date(2027, 1, 1),
        units=[Unit(id="u1", name="Enhet 1", staff_count=20)],
        contacts=list(contacts),
    )
    return Envelope(specversion="1.0", id=f"ps-{provider_id}", source="test/hr", type="ProviderStarted",
                    time=NOW, data=data)


def notification(provider_id: str, **fields) -> NotificationRequest:
    values = dict(
        id=f"n-{uuid.uuid4().hex}", kind="reminder", provider_id=provider_id, provider_name="Omsorg Test AB",
        responsible="provider", system="siebel", unit_id="u1", requested_at=NOW,
        tasks=[TaskLine(task_id="t-1", obligation="SB2", system="siebel", action="order-accounts-and-tokens",
                        due=dt.date(2026, 12, 30), channel="sesam", where="Sesam", instructions_sv="Beställ konton.",
                        instructions_en="Order accounts.", unit_id="u1", quantity=2)],
    )
    return NotificationRequest(**(values | fields))


def publish_request(notifier: Notifier, request: NotificationRequest, correlation: str | None = None) -> None:
    notifier.send(NOTIFICATIONS, *model_to_kafka(request, request.provider_id, correlation))


def start_provider(notifier: Notifier, provider_id: str, *contacts: Contact) -> None:
    """Publish a ProviderStarted and wait until the notifier's contacts table holds the provider."""
    notifier.send(EVENTS, *event_to_kafka(provider_started(provider_id, *contacts), correlation_id=f"c-{provider_id}"))
    notifier.topics.find(CONTACTS_CHANGELOG, lambda r: r.key == provider_id.encode())


def delivery_records(notifier: Notifier, notification_id: str, count: int = 1) -> list[DeliveryRecord]:
    records = notifier.topics.find_all(
        NOTIFICATIONS_SENT, lambda r: b'"notification_id"' in (r.value or b"")
        and json.loads(r.value)["notification_id"] == notification_id, count)
    return [DeliveryRecord.model_validate_json(r.value) for r in records]


def test_a_request_is_mailed_once_to_the_providers_contact(notifier: Notifier) -> None:
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    address = f"{provider_id}@provider.test"
    start_provider(notifier, provider_id, Contact(name="Siv Admin", email=address, role="administrator",
                                                   system="siebel"))
    request = notification(provider_id)
    publish_request(notifier, request, correlation="corr-1")

    mail = notifier.wait_for_mail(f"<{request.id}@omboard>")
    print(f"first mail {time.monotonic() - notifier.spawned_at:.2f}s after the worker was spawned")
    assert mail["To"] == address
    assert mail["Subject"] == "[omboard] Påminnelse: 1 uppgift för Omsorg Test AB förfaller senast 2026-12-30"
    assert f"http://status.test/providers/{provider_id}" in mail.get_content()
    assert ("omboard@uppsala.se", [address]) in notifier.sink.envelopes

    (record,) = delivery_records(notifier, request.id)
    assert (record.status, record.recipients, record.message_id) == ("sent", [address], f"<{request.id}@omboard>")
    sent = notifier.topics.find(NOTIFICATIONS_SENT, lambda r: request.id.encode() in (r.value or b""))
    assert sent.key == provider_id.encode()
    assert dict(sent.headers)[CORRELATION_HEADER] == b"corr-1"

    # The same request again sends nothing. A later request on the same partition proves that
    # the repeat has been handled by the time its mail arrives.
    publish_request(notifier, request, correlation="corr-1")
    marker = notification(provider_id)
    publish_request(notifier, marker)
    notifier.wait_for_mail(f"<{marker.id}@omboard>")
    assert len(notifier.mails(f"<{request.id}@omboard>")) == 1
    # ... but its delivery record is published again, identical, in case the first one was lost.
    first, again = delivery_records(notifier, request.id, count=2)
    assert again == first


def test_a_provider_without_contacts_is_mailed_at_the_fallback_address(notifier: Notifier) -> None:
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    request = notification(provider_id)  # no ProviderStarted at all
    publish_request(notifier, request)
    assert notifier.wait_for_mail(f"<{request.id}@omboard>")["To"] == "fallback@test.example"


def test_a_malformed_request_is_dead_lettered_and_the_next_one_still_mailed(notifier: Notifier) -> None:
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    key = provider_id.encode()
    notifier.send(NOTIFICATIONS, key, b'{"id": "broken", "kind": "reminder"', [("omboard_correlation_id", b"bad")])
    notifier.send(NOTIFICATIONS, key, b'{"id": "x", "kind": "nonsense"}', [])
    request = notification(provider_id)
    publish_request(notifier, request)  # same key, same partition: behind the bad ones

    notifier.wait_for_mail(f"<{request.id}@omboard>")
    dead = notifier.topics.find_all(DEAD_LETTERS, lambda r: r.key == key, count=2)
    headers = [dict(record.headers) for record in dead]
    assert [record.value for record in dead] == [b'{"id": "broken", "kind": "reminder"', b'{"id": "x", "kind": "nonsense"}']
    assert all(h["dlq_reason"].startswith(b"not a NotificationRequest") for h in headers)
    assert all(h["dlq_topic"] == NOTIFICATIONS.encode() and h["dlq_service"] == b"notifier" for h in headers)
    assert b"kind" in headers[1]["dlq_reason"]
    assert headers[0]["omboard_correlation_id"] == b"bad"


def test_a_refused_recipient_yields_a_failed_record_and_a_dead_letter(notifier: Notifier) -> None:
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    address = f"gone-{provider_id}@provider.test"
    notifier.sink.refuse(address, "550 5.1.1 No such user")
    start_provider(notifier, provider_id, Contact(name="Gone", email=address, role="kontaktperson"))
    request = notification(provider_id, system=None, unit_id=None)
    publish_request(notifier, request)

    (record,) = delivery_records(notifier, request.id)
    assert record.status == "failed" and record.recipients == [address]
    assert record.reason is not None and record.reason.startswith("permanent SMTP failure after 1 attempt(s)")
    dead = notifier.topics.find(DEAD_LETTERS, lambda r: request.id.encode() in (r.value or b""))
    assert dict(dead.headers)["dlq_reason"].startswith(b"permanent SMTP failure")
    assert notifier.mails(f"<{request.id}@omboard>") == []


def test_a_temporary_failure_is_retried(notifier: Notifier) -> None:
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    notifier.sink.fail_next(1, "451 4.3.0 Try again later")
    request = notification(provider_id)
    publish_request(notifier, request)
    notifier.wait_for_mail(f"<{request.id}@omboard>")
    (record,) = delivery_records(notifier, request.id)
    assert record.status == "sent"
    assert "trying again" in notifier.log()


def test_a_restarted_worker_remembers_what_it_sent(notifier: Notifier) -> None:
    """Killed (SIGKILL) and restarted with an empty data directory: the sent table comes back
    from its changelog, so a request mailed before the kill is not mailed again."""
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    before = notification(provider_id)
    publish_request(notifier, before)
    notifier.wait_for_mail(f"<{before.id}@omboard>")
    delivery_records(notifier, before.id)  # handled completely

    notifier.kill()
    print(f"restarted notifier assigned its partitions {notifier.spawn('worker-2'):.2f}s after spawn")
    publish_request(notifier, before)  # e.g. the deadline engine asking again after its own crash
    after = notification(provider_id)
    publish_request(notifier, after)
    notifier.wait_for_mail(f"<{after.id}@omboard>", timeout=60)
    print(f"first mail {time.monotonic() - notifier.spawned_at:.2f}s after the restart")
    assert len(notifier.mails(f"<{before.id}@omboard>")) == 1
    assert "not mailing again" in notifier.log()
    message_ids = [mail["Message-ID"] for mail in notifier.sink.snapshot()]
    assert len(message_ids) == len(set(message_ids)), "some mail was sent twice"
