"""Shared fixtures: one embedded broker per test session, every registry topic created up front.

The suite runs on Apache Kafka with its shipped limits (``OMBOARD_EMBEDDED_BROKER=tansu`` runs it
on Tansu instead); the smoke tests marked ``tansu`` also run on a Tansu broker of their own, so
the fallback of a machine without Java keeps working.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from schemas.topics import ALL_TOPICS
from services.devtools.embedded import Broker, choose, embedded_broker
from services.devtools.postgres import EmbeddedPostgres
from services.devtools.tansu import TansuBroker
from services.runtime.broker import create_topics

TEST_PARTITIONS = 2
#: The broker the suite runs on: Apache Kafka unless ``OMBOARD_EMBEDDED_BROKER=tansu``.
SUITE_BROKER = os.environ.get("OMBOARD_EMBEDDED_BROKER") or "kafka"
#: For tests of what only Apache Kafka has: its log on disk, a cluster of several nodes.
needs_apache_kafka = pytest.mark.skipif(SUITE_BROKER == "tansu", reason="the suite runs on Tansu (OMBOARD_EMBEDDED_BROKER)")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    # Apache Kafka unless the environment asks for Tansu: a machine that cannot run it fails here,
    # naming why, rather than testing on the fallback unnoticed.
    choice = choose(SUITE_BROKER)  # type: ignore[arg-type]
    data = tmp_path_factory.mktemp("broker")
    embedded = embedded_broker(choice, data, log_path=data / "broker.log").start()
    try:
        # Topics first: Faust crashes on a topic auto-created with another partition count.
        create_topics(embedded.bootstrap, ALL_TOPICS, TEST_PARTITIONS)
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuBroker]:
    with TansuBroker() as embedded:
        create_topics(embedded.bootstrap, ALL_TOPICS, TEST_PARTITIONS)
        yield embedded


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """One embedded PostgreSQL for the session; a test takes a database of its own
    (``postgres.create_database(name)`` returns its URL)."""
    data = tmp_path_factory.mktemp("postgres")
    server = EmbeddedPostgres(data / "pg", log_path=data / "postgres.log")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def database_url(postgres: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    """A database of this test's own on the session's PostgreSQL (for a worker started by hand)."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:8]
    return postgres.create_database(name)
