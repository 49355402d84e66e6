"""The embedded Apache Kafka launcher: its storage outlives it, it stops cleanly, it dies with its
parent, it refuses a taken port, and it keeps Kafka's limits."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
from kafka import KafkaProducer
from kafka.errors import MessageSizeTooLargeError

from services.devtools.apache_kafka import ApacheKafka
from services.runtime.broker import create_topics
from tests.conftest import needs_apache_kafka
from tests.support.kafka import TopicReader
from tests.support.wait import eventually
from tests.support.workers import REPO

pytestmark = [pytest.mark.integration, needs_apache_kafka]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited; only its parent has not reaped it
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_a_restarted_broker_has_its_records_and_ports(tmp_path):
    kafka = ApacheKafka(tmp_path / "kafka").start()
    try:
        assert kafka.fresh
        bootstrap = kafka.bootstrap
        create_topics(bootstrap, ["kept"], 1)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        producer.send("kept", b"before the stop").get(timeout=10)
        producer.close()
        pid = kafka.pid()
    finally:
        kafka.stop()
    assert not alive(pid), "stop left the JVM running"

    again = ApacheKafka(tmp_path / "kafka").start()
    try:
        assert not again.fresh and again.bootstrap == bootstrap
        reader = TopicReader(again.bootstrap, "kept")
        try:
            assert [record.value for record in reader.read_all()] == [b"before the stop"]
        finally:
            reader.close()
    finally:
        again.stop()


def test_the_broker_keeps_kafkas_record_limit(broker):
    create_topics(broker.bootstrap, ["limits"], 1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, max_request_size=2_000_000)
    try:
        with pytest.raises(MessageSizeTooLargeError):  # the broker's message.max.bytes, 1,048,588
            producer.send("limits", b"x" * 1_100_000).get(timeout=10)
    finally:
        producer.close()


def test_the_broker_dies_with_its_parent(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from services.devtools.apache_kafka import ApacheKafka
        kafka = ApacheKafka(Path({str(tmp_path / "kafka")!r})).start()
        print(kafka.pid(), flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.kill()  # no clean-up runs: only the kernel's parent-death signal stops the JVM
        parent.wait()
        eventually(lambda: not alive(pid), "the broker to die with its parent", timeout=10)
    finally:
        parent.kill()


def test_a_taken_port_is_refused_up_front(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {port} is in use"):
            ApacheKafka(tmp_path / "kafka", port=port).start()
    assert not (tmp_path / "kafka" / "node-1").exists(), "nothing is formatted for a broker that cannot start"
