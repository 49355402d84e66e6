"""The shared runtime against a real embedded broker and a real Faust worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from schemas.topics import ALL_TOPICS, EVENTS, NOTIFICATIONS_SENT, dead_letter_topic
from services.devtools.embedded import Broker
from services.devtools.processes import free_port
from services.runtime.broker import create_topics
from tests.support.kafka import Record, Topics
from tests.support.wait import eventually
from tests.support.workers import spawn_logged

pytestmark = pytest.mark.integration

ECHO_WORKER = Path(__file__).with_name("_echo_worker.py")


def partitions_of(bootstrap: str, topic: str) -> set[int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, allow_auto_create_topics=False)
    try:
        consumer.topics()
        return consumer.partitions_for_topic(topic) or set()
    finally:
        consumer.close()


def test_create_topics_is_idempotent_and_keeps_partition_counts(broker: Broker) -> None:
    create_topics(broker.bootstrap, ALL_TOPICS, 2)  # the fixture already made them
    assert all(partitions_of(broker.bootstrap, topic) == {0, 1} for topic in ALL_TOPICS)

    fresh = f"omboard.test.{uuid.uuid4().hex}"
    create_topics(broker.bootstrap, [fresh], 3)
    create_topics(broker.bootstrap, [fresh, fresh], 3)
    assert partitions_of(broker.bootstrap, fresh) == {0, 1, 2}

    with pytest.raises(RuntimeError, match="other partition counts"):
        create_topics(broker.bootstrap, [fresh], 2)


def find_record(bootstrap: str, topic: str, match: Callable[[Record], bool], timeout: float) -> Record:
    topics = Topics(bootstrap)
    try:
        return topics.find(topic, match, timeout)
    finally:
        topics.close()


@pytest.fixture
def echo_worker(broker: Broker, tmp_path: Path) -> Iterator[Path]:
    """The echo worker, running and assigned its partitions; yields its log file."""
    log_path = tmp_path / "echo-worker.log"
    env = os.environ | {
        "OMBOARD_KAFKA_BOOTSTRAP": broker.bootstrap,
        "OMBOARD_PARTITIONS": "2",
        "OMBOARD_BROKER_SESSION_TIMEOUT": "6",
        "OMBOARD_DATA_DIR": str(tmp_path / "data"),
        "ECHO_WEB_PORT": str(free_port()),
        "ECHO_APP_ID": f"omboard-echo-{uuid.uuid4().hex[:8]}",  # never joins a real service's group
    }
    worker = spawn_logged([sys.executable, str(ECHO_WORKER)], env, log_path)

    def tail() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    try:
        started = time.monotonic()
        eventually(lambda: worker.poll() is not None or "ASSIGNED" in log_path.read_text(errors="replace"),
                   "the echo worker to get its partitions", timeout=30, explain=tail)
        assert worker.poll() is None, f"echo worker exited with {worker.returncode}:\n{tail()}"
        print(f"echo worker assigned after {time.monotonic() - started:.2f}s")
        yield log_path
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            pytest.fail(f"echo worker did not stop on SIGTERM:\n{tail()}")
    assert code in (0, -signal.SIGTERM), f"echo worker exited with {code}:\n{tail()}"


def test_worker_dead_letters_bad_input_and_echoes_what_follows(broker: Broker, echo_worker: Path) -> None:
    key = f"provider-{uuid.uuid4().hex}".encode()
    good = b'{"marker": "%s"}' % key
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        # Same key, same partition: the poison message comes first and must not block the next.
        bad_meta = producer.send(EVENTS, key=key, value=b"{not json", headers=[("ce_id", b"bad-1")]).get(timeout=10)
        good_meta = producer.send(EVENTS, key=key, value=good, headers=[("ce_id", b"good-1")]).get(timeout=10)
    finally:
        producer.close()
    assert good_meta.partition == bad_meta.partition and good_meta.offset > bad_meta.offset

    dead = find_record(broker.bootstrap, dead_letter_topic("notifier"), lambda r: r.key == key, timeout=20)
    headers = dict(dead.headers)
    assert dead.value == b"{not json"
    assert headers["ce_id"] == b"bad-1"
    assert headers["dlq_service"] == b"notifier"
    assert headers["dlq_topic"] == EVENTS.encode()
    assert headers["dlq_partition"] == str(bad_meta.partition).encode()
    assert headers["dlq_offset"] == str(bad_meta.offset).encode()
    assert headers["dlq_reason"].startswith(b"value is not JSON")
    assert headers["dlq_at"]

    echoed = find_record(broker.bootstrap, NOTIFICATIONS_SENT, lambda r: r.key == key, timeout=20)
    assert echoed.value == good
    assert dict(echoed.headers) == {"ce_id": b"good-1"}


def test_a_handler_that_raises_costs_only_the_message_it_raised_on(broker: Broker, echo_worker: Path) -> None:
    """The runtime rolls the batch back, handles it again one message at a time, and dead-letters
    only the message the handler raised on; the messages around it are echoed."""
    key = f"provider-{uuid.uuid4().hex}".encode()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)  # one batch, as far as it goes
    try:
        sent = [producer.send(EVENTS, key=key, value=b'{"n": %d}' % n) for n in range(5)]
        poison = producer.send(EVENTS, key=key, value=b'{"raise": true}')
        sent += [producer.send(EVENTS, key=key, value=b'{"n": %d}' % n) for n in range(5, 10)]
        producer.flush()
        poison_offset = poison.get(timeout=10).offset
    finally:
        producer.close()

    dead = find_record(broker.bootstrap, dead_letter_topic("notifier"), lambda r: r.key == key, timeout=20)
    assert dict(dead.headers)["dlq_offset"] == str(poison_offset).encode()
    assert dict(dead.headers)["dlq_reason"] == b"echo failed"
    echoed = []
    for n in range(10):
        echoed.append(find_record(broker.bootstrap, NOTIFICATIONS_SENT,
                                  lambda r, n=n: r.key == key and r.value == b'{"n": %d}' % n, timeout=20))
    assert len(echoed) == 10
