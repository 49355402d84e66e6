"""The notifier as a real Faust worker (a subprocess) against the embedded broker and a real SMTP sink;
and its SMTP client against a server that requires STARTTLS and AUTH."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

import pytest
from kafka import KafkaProducer

from schemas.events import Contact, Envelope, Provider, ProviderStarted, Unit
from schemas.notifications import DeliveryRecord, NotificationRequest, TaskLine
from schemas.topics import EVENTS, NOTIFICATIONS, NOTIFICATIONS_SENT, dead_letter_topic
from schemas.wire import CORRELATION_HEADER, event_to_kafka, model_to_kafka
from services.devtools.embedded import Broker
from services.devtools.mailsink import MailSink, write_file
from services.devtools.processes import free_port
from services.domain.mail import message_id
from services.notifier import smtp
from tests.support.kafka import Topics
from tests.support.wait import eventually
from tests.support.workers import spawn_logged

pytestmark = pytest.mark.integration

CONTACTS_CHANGELOG = "omboard-notifier-contacts-changelog"
DEAD_LETTERS = dead_letter_topic("notifier")
NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
FALLBACK = "fallback@test.example"
PHONIRO_MANAGER = "phoniro-manager@test.example"
KLK_IT = "klk-it@test.example"


def mid(request: NotificationRequest, to: str = FALLBACK) -> str:
    """The Message-ID of ``request``'s mail to ``to``."""
    return message_id(request, [to])


def worker_command() -> list[str]:
    """``omboard worker notifier``; the lead's runner (services/entrypoints/worker.py via the CLI)."""
    script = Path(sys.executable).with_name("omboard")
    if script.exists():
        return [str(script), "worker", "notifier"]
    return [sys.executable, "-c", "from services.entrypoints.worker import run_service; run_service('notifier')"]


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
        self.process = spawn_logged(worker_command(), env, self.log_path)
        process = self.process
        eventually(lambda: process.poll() is not None or "notifier: ready with" in self.log(),
                   "the notifier to get its partitions", timeout=60, explain=self.log)
        assigned = time.monotonic() - self.spawned_at
        assert process.poll() is None, f"notifier exited with {process.returncode}:\n{self.log()}"
        # Assigned is not ready: the tables are restored and the streams resumed only after that.
        eventually(self.ready, "the notifier to become ready", timeout=60, explain=self.log)
        return assigned

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.env['OMBOARD_WEB_PORT']}/readyz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status == 200
        except OSError:  # not listening yet, or 503 while recovering (HTTPError is an OSError)
            return False

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
def notifier(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notifier]:
    tmp = tmp_path_factory.mktemp("notifier")
    env = os.environ | {
        "OMBOARD_KAFKA_BOOTSTRAP": broker.bootstrap,
        "OMBOARD_PARTITIONS": "2",
        "OMBOARD_BROKER_SESSION_TIMEOUT": "6",
        "OMBOARD_SMTP_HOST": "127.0.0.1",
        "OMBOARD_FALLBACK_EMAIL": FALLBACK,
        "OMBOARD_KLK_IT_EMAIL": KLK_IT,
        "OMBOARD_SYSTEM_CONTACTS": json.dumps({"phoniro": PHONIRO_MANAGER}),
        "OMBOARD_STATUS_PAGE_URL": "http://status.test",
        "OMBOARD_WEB_PORT": str(free_port()),
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

    mail = notifier.wait_for_mail(mid(request, address))
    print(f"first mail {time.monotonic() - notifier.spawned_at:.2f}s after the worker was spawned")
    assert mail["To"] == address
    assert mail["Subject"] == "[omboard] Påminnelse: 1 uppgift för Omsorg Test AB förfaller senast 2026-12-30"
    assert f"http://status.test/providers/{provider_id}" in mail.get_content()
    assert ("omboard@uppsala.se", [address]) in notifier.sink.envelopes

    (record,) = delivery_records(notifier, request.id)
    assert (record.status, record.recipients, record.message_id) == ("sent", [address], mid(request, address))
    sent = notifier.topics.find(NOTIFICATIONS_SENT, lambda r: request.id.encode() in (r.value or b""))
    assert sent.key == provider_id.encode()
    assert dict(sent.headers)[CORRELATION_HEADER] == b"corr-1"

    # The same request again sends nothing. A later request on the same partition proves that
    # the repeat has been handled by the time its mail arrives.
    publish_request(notifier, request, correlation="corr-1")
    marker = notification(provider_id)
    publish_request(notifier, marker)
    notifier.wait_for_mail(mid(marker, address))
    assert len(notifier.mails(mid(request, address))) == 1
    # ... but its delivery record is published again, identical, in case the first one was lost.
    first, again = delivery_records(notifier, request.id, count=2)
    assert again == first


def test_a_provider_without_contacts_is_mailed_at_the_fallback_address(notifier: Notifier) -> None:
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    request = notification(provider_id)  # no ProviderStarted at all
    publish_request(notifier, request)
    assert notifier.wait_for_mail(mid(request))["To"] == FALLBACK


def test_a_malformed_request_is_dead_lettered_and_the_next_one_still_mailed(notifier: Notifier) -> None:
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    key = provider_id.encode()
    notifier.send(NOTIFICATIONS, key, b'{"id": "broken", "kind": "reminder"', [("omboard_correlation_id", b"bad")])
    notifier.send(NOTIFICATIONS, key, b'{"id": "x", "kind": "nonsense"}', [])
    request = notification(provider_id)
    publish_request(notifier, request)  # same key, same partition: behind the bad ones

    notifier.wait_for_mail(mid(request))
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
    assert notifier.mails(mid(request, address)) == []


def test_a_temporary_failure_is_retried(notifier: Notifier) -> None:
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    notifier.sink.fail_next(1, "451 4.3.0 Try again later")
    request = notification(provider_id)
    publish_request(notifier, request)
    notifier.wait_for_mail(mid(request))
    (record,) = delivery_records(notifier, request.id)
    assert record.status == "sent"
    assert "trying again" in notifier.log()


def line(task_id: str, system: str, unit_id: str | None = "u1", due: dt.date = dt.date(2026, 12, 30)) -> TaskLine:
    return TaskLine(task_id=task_id, obligation="SB2", system=system, action=f"order-{system}", due=due,
                    channel="it-support", where="it.support@uppsala.se", instructions_sv=f"Beställ {system}.",
                    instructions_en=f"Order {system}.", unit_id=unit_id)


def digest_provider(notifier: Notifier) -> tuple[str, str, str]:
    """A provider with a Siebel administrator and a contact person; returns (id, admin, contact)."""
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    admin, kontakt = f"siebel-{provider_id}@provider.test", f"kontakt-{provider_id}@provider.test"
    start_provider(notifier, provider_id,
                   Contact(name="Siv Siebel", email=admin, role="administrator", system="siebel"),
                   Contact(name="Karl Kontakt", email=kontakt, role="kontaktperson"))
    return provider_id, admin, kontakt


def test_a_multi_system_request_is_one_digest_per_recipient(notifier: Notifier) -> None:
    provider_id, admin, kontakt = digest_provider(notifier)
    request = notification(provider_id, system=None, unit_id=None, tasks=[
        line("t-siebel-1", "siebel", due=dt.date(2027, 1, 4)), line("t-siths", "siths"), line("t-siebel-2", "siebel", None)])
    publish_request(notifier, request)

    to_admin, to_kontakt = notifier.wait_for_mail(mid(request, admin)), notifier.wait_for_mail(mid(request, kontakt))
    admin_text, kontakt_text = to_admin.get_content(), to_kontakt.get_content()
    assert to_admin["To"] == admin and to_kontakt["To"] == kontakt
    assert "Uppgift: t-siebel-1" in admin_text and "Uppgift: t-siebel-2" in admin_text and "t-siths" not in admin_text
    assert "Uppgift: t-siths" in kontakt_text and "siebel" not in kontakt_text
    assert to_admin["Subject"] == "[omboard] Påminnelse: 2 uppgifter för Omsorg Test AB förfaller senast 2026-12-30"
    assert to_kontakt["Subject"] == "[omboard] Påminnelse: 1 uppgift för Omsorg Test AB förfaller senast 2026-12-30"
    records = delivery_records(notifier, request.id, count=2)
    assert sorted((r.recipients[0], r.message_id, r.status) for r in records) == sorted(
        [(admin, mid(request, admin), "sent"), (kontakt, mid(request, kontakt), "sent")])

    # Delivered again (e.g. reporting asking again after a crash): nobody is mailed twice.
    publish_request(notifier, request)
    marker = notification(provider_id, system=None, unit_id=None, tasks=[line("t-marker", "siths")])
    publish_request(notifier, marker)
    notifier.wait_for_mail(mid(marker, kontakt))
    assert len(notifier.mails(mid(request, admin))) == 1 and len(notifier.mails(mid(request, kontakt))) == 1


def test_a_partly_delivered_request_completes_without_duplicates(notifier: Notifier) -> None:
    provider_id, admin, kontakt = digest_provider(notifier)
    notifier.sink.refuse(kontakt, "550 5.1.1 No such user")
    request = notification(provider_id, system=None, unit_id=None, tasks=[line("t-siebel", "siebel"), line("t-siths", "siths")])
    publish_request(notifier, request)

    notifier.wait_for_mail(mid(request, admin))
    dead = notifier.topics.find(DEAD_LETTERS, lambda r: request.id.encode() in (r.value or b""))
    reason = dict(dead.headers)["dlq_reason"]
    assert reason.startswith(b"permanent SMTP failure") and mid(request, kontakt).encode() in reason
    failed = next(r for r in delivery_records(notifier, request.id, count=2) if r.status == "failed")
    assert failed.recipients == [kontakt]

    # The operator fixes the mailbox and publishes the dead letter again: only the missing mail goes out.
    notifier.sink.accept(kontakt)
    notifier.send(NOTIFICATIONS, dead.key, dead.value, [])
    notifier.wait_for_mail(mid(request, kontakt))
    records = delivery_records(notifier, request.id, count=4)
    assert sorted((r.recipients[0], r.status) for r in records[2:]) == [(kontakt, "sent"), (admin, "sent")]
    assert len(notifier.mails(mid(request, admin))) == 1 and len(notifier.mails(mid(request, kontakt))) == 1


def test_klk_it_tasks_go_to_the_systems_manager_else_to_klk_it(notifier: Notifier) -> None:
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    request = notification(provider_id, responsible="klk-it", system=None, tasks=[line("t-phoniro", "phoniro"), line("t-siebel", "siebel")])
    publish_request(notifier, request)
    assert "t-phoniro" in notifier.wait_for_mail(mid(request, PHONIRO_MANAGER)).get_content()
    assert "t-siebel" in notifier.wait_for_mail(mid(request, KLK_IT)).get_content()
    assert "t-siebel" not in notifier.mails(mid(request, PHONIRO_MANAGER))[0].get_content()


def test_the_worker_counts_what_it_did(notifier: Notifier) -> None:
    """A mail sent after a retry, one refused, a broken request and a started provider: /metrics
    counts each (whatever other tests did before, in any order)."""
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    address = f"gone-{provider_id}@provider.test"
    notifier.sink.refuse(address, "550 5.1.1 No such user")
    start_provider(notifier, provider_id, Contact(name="Gone", email=address, role="kontaktperson"))
    notifier.send(NOTIFICATIONS, provider_id.encode(), b'{"id": "broken"', [])
    refused = notification(provider_id, system=None, unit_id=None)
    publish_request(notifier, refused)
    other = f"p-{uuid.uuid4().hex[:12]}"
    notifier.sink.fail_next(1, "451 4.3.0 Try again later")
    retried = notification(other)
    publish_request(notifier, retried)
    notifier.wait_for_mail(mid(retried))
    delivery_records(notifier, refused.id)

    port = int(notifier.env["OMBOARD_WEB_PORT"])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("omboard_") and not line.startswith("#")}
    for name in ('omboard_notifier_emails_sent_total{kind="reminder"}',
                 'omboard_notifier_emails_failed_total{failure="permanent",kind="reminder"}',
                 'omboard_notifier_email_retries_total{kind="reminder"}',
                 'omboard_events_consumed_total{service="notifier",type="notification"}',
                 'omboard_events_consumed_total{service="notifier",type="ProviderStarted"}',
                 'omboard_events_failed_total{service="notifier",type="notification"}',
                 'omboard_dead_letters_total{service="notifier",topic="omboard.notifications"}',
                 'omboard_processing_duration_seconds_count{service="notifier"}',
                 'omboard_message_age_seconds_count{service="notifier",topic="omboard.notifications"}',
                 'omboard_message_age_seconds_count{service="notifier",topic="omboard.events"}'):
        assert samples.get(name, 0) > 0, f"{name} not counted:\n" + "\n".join(k for k in samples if "notifier" in k)


def test_a_restarted_worker_remembers_what_it_sent(notifier: Notifier) -> None:
    """Killed (SIGKILL) and restarted with an empty data directory: the sent table comes back
    from its changelog, so a request mailed before the kill is not mailed again."""
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    before = notification(provider_id)
    publish_request(notifier, before)
    notifier.wait_for_mail(mid(before))
    delivery_records(notifier, before.id)  # handled completely

    notifier.kill()
    print(f"restarted notifier assigned its partitions {notifier.spawn('worker-2'):.2f}s after spawn")
    publish_request(notifier, before)  # e.g. the deadline engine asking again after its own crash
    after = notification(provider_id)
    publish_request(notifier, after)
    notifier.wait_for_mail(mid(after), timeout=60)
    print(f"first mail {time.monotonic() - notifier.spawned_at:.2f}s after the restart")
    assert len(notifier.mails(mid(before))) == 1
    assert "not mailing again" in notifier.log()
    message_ids = [mail["Message-ID"] for mail in notifier.sink.snapshot()]
    assert len(message_ids) == len(set(message_ids)), "some mail was sent twice"


# --- SMTP with STARTTLS and AUTH against a real server ----------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl CLI), and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl CLI is missing: apt-get install openssl (.ci/run installs it)")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def smtp_settings(sink: MailSink, **fields) -> SimpleNamespace:
    values = dict(smtp_host=sink.host, smtp_port=sink.port, smtp_starttls=True, smtp_username="omboard",
                  smtp_password="s3cret", smtp_cafile=None)
    return SimpleNamespace(**(values | fields))


def tls_mail(to: str = "a@provider.test") -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "omboard@uppsala.se", to, "TLS"
    message["Message-ID"] = f"<tls-{uuid.uuid4().hex}@omboard>"
    message.set_content("Hej!\n")
    return message


def test_starttls_and_auth_against_a_server_that_requires_both(certificate, tmp_path: Path) -> None:
    cert, _ = certificate
    with MailSink(tmp_path / "mail", tls=certificate, credentials={"omboard": "s3cret"}) as sink:
        message = tls_mail()
        sent = asyncio.run(smtp.send(message, smtp_settings(sink, smtp_cafile=cert), timeout=10))
        assert sent.refused == {}
        assert [m["Message-ID"] for m in sink.snapshot()] == [message["Message-ID"]]
        assert sink.sessions == [(True, "omboard")]  # over TLS, authenticated


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"smtp_password": "wrong"}, "535"),  # bad credentials
        ({"smtp_starttls": False}, "AUTH extension is not supported"),  # offered only after STARTTLS
        ({"smtp_cafile": None}, "CERTIFICATE_VERIFY_FAILED"),  # the self-signed certificate is not trusted
        ({"smtp_username": None}, "530"),  # the server requires AUTH
    ],
)
def test_what_starttls_and_auth_refuse_is_not_delivered(certificate, tmp_path: Path, fields: dict, expected: str) -> None:
    cert, _ = certificate
    with MailSink(tmp_path / "mail", tls=certificate, credentials={"omboard": "s3cret"}) as sink:
        settings = smtp_settings(sink, **({"smtp_cafile": cert} | fields))
        with pytest.raises(smtp.DeliveryError) as raised:
            asyncio.run(smtp.send(tls_mail(), settings, timeout=10))
        assert expected in raised.value.reason
        assert not raised.value.temporary  # a configuration mismatch: retrying will not help
        assert sink.snapshot() == []


def not_ready_because(notifier: Notifier, why: bytes) -> bool:
    """Whether the notifier's /readyz answers 503 naming ``why``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{notifier.env['OMBOARD_WEB_PORT']}/readyz", timeout=2):
            return False
    except urllib.error.HTTPError as answer:
        return answer.code == 503 and why in answer.read()
    except OSError:
        return False


def test_a_full_disk_at_the_mail_sink_holds_the_mail_until_there_is_room(notifier: Notifier) -> None:
    """The sink's writes fail with ENOSPC (they go to /dev/full, the kernel's full disk): it answers
    452, the notifier holds the mail and says why, and sends it once when the disk has room."""
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    request = notification(provider_id)

    def to_full_disk(path: Path, content: bytes) -> None:
        with open("/dev/full", "wb") as full:
            full.write(content)
            full.flush()

    notifier.sink.write = to_full_disk
    try:
        publish_request(notifier, request)
        eventually(lambda: not_ready_because(notifier, b"Insufficient system storage"), "readiness to say why",
                   timeout=60, explain=notifier.log)
        assert notifier.mails(mid(request)) == []
    finally:
        notifier.sink.write = write_file  # room again
    notifier.wait_for_mail(mid(request), timeout=90)
    (record,) = delivery_records(notifier, request.id)
    assert record.status == "sent", "held, not marked failed"
    assert len(notifier.mails(mid(request))) == 1


def test_an_smtp_outage_holds_the_mail_until_the_server_is_back_and_sends_it_once(notifier: Notifier) -> None:
    """Last in this module: it stops the module's mail sink for a while."""
    provider_id = f"p-{uuid.uuid4().hex[:12]}"
    request = notification(provider_id)

    notifier.sink.stop()  # nothing listens on the SMTP port: connections are refused
    try:
        publish_request(notifier, request)
        eventually(lambda: not_ready_because(notifier, b"SMTP unavailable"), "readiness to say why",
                   timeout=60, explain=notifier.log)
        assert notifier.mails(mid(request)) == []
    finally:
        notifier.sink.start()  # the same port, as a relay coming back
    notifier.wait_for_mail(mid(request), timeout=90)
    (record,) = delivery_records(notifier, request.id)
    assert record.status == "sent", "held, not marked failed"
    eventually(notifier.ready, "the notifier to become ready again", timeout=30)
    assert len(notifier.mails(mid(request))) == 1

