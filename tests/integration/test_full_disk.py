"""The broker's data directory fills up under the intake API: no event is answered 202 and then
lost. While the disk is full the API answers 503 (nothing accepted); once there is room again and
the broker is back, every event that got a 202 is on the topic.

The disk is a real one: a 96 MB tmpfs mounted for the test (so the test needs to be allowed to
mount; it says so and skips where it is not).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schemas.topics import EVENTS
from services.devtools.apache_kafka import ApacheKafka
from services.devtools.processes import free_port
from services.entrypoints.launcher import Stack
from tests import factories as f
from tests.conftest import TEST_PARTITIONS, needs_apache_kafka
from tests.support.kafka import TopicReader

pytestmark = [pytest.mark.integration, needs_apache_kafka]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    tried = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)],
                           capture_output=True, text=True)
    if tried.returncode != 0:
        pytest.skip(f"cannot mount a small disk here: {tried.stderr.strip() or tried.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no room left."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 20)
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    return filler


def test_a_full_data_disk_refuses_events_and_loses_none_it_accepted(small_disk, tmp_path):
    broker = ApacheKafka(small_disk / "kafka").start()
    stack = Stack(var_dir=tmp_path / "var", bootstrap=broker.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, services=())
    accepted: list[str] = []
    answers: list[int] = []
    try:
        with stack.running(timeout=60):
            api = httpx.Client(base_url=stack.api_url, headers=stack.auth("upstream"), timeout=30)
            for i in range(5):
                event = f.provider_started(f"disk-{i}")
                assert api.post("/v1/events", json=event).status_code == 202
                accepted.append(event["id"])
            filler = fill(small_disk)
            deadline = time.monotonic() + 60
            i = 5
            while time.monotonic() < deadline and 503 not in answers[-3:]:
                event = f.provider_started(f"disk-{i}")
                response = api.post("/v1/events", json=event)
                answers.append(response.status_code)
                assert response.status_code in (202, 503), response.text
                if response.status_code == 202:
                    accepted.append(event["id"])
                else:
                    assert "Kafka is unavailable" in response.json()["detail"]
                i += 1
            assert 503 in answers, f"the API went on accepting on a full disk: {answers[-5:]}"
            broker.stop(keep_data=True)
            filler.unlink()  # room again
            broker.start()
            reader = TopicReader(broker.bootstrap, EVENTS)
            try:
                ids = lambda records: {r.headers.get("ce_id", b"").decode() for r in records}  # noqa: E731
                records = reader.wait_for(lambda rs: set(accepted) <= ids(rs), timeout=60,
                                          what="every accepted event after the disk had room again")
            finally:
                reader.close()
            assert set(accepted) <= ids(records)
            print(f"full disk: {len(accepted)} accepted, all kept; {answers.count(503)} refused with 503")
    finally:
        broker.stop(keep_data=True)
