"""Shared fixtures: one embedded Tansu broker per test session, every registry topic created up front."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from schemas.topics import ALL_TOPICS
from services.runtime.broker import EmbeddedBroker, create_topics

TEST_PARTITIONS = 2


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    # Topics first: a topic Tansu auto-creates on first use gets 4 partitions and breaks Faust.
    with EmbeddedBroker() as embedded:
        create_topics(embedded.bootstrap, ALL_TOPICS, TEST_PARTITIONS)
        yield embedded
