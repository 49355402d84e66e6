"""Fixtures of the integration tests that need a database of their own."""

from __future__ import annotations

import uuid

import pytest

from services.devtools.postgres import EmbeddedPostgres
from services.readmodel.migrate import migrate
from tests.support.readmodel import connect, run


@pytest.fixture
def database(postgres: EmbeddedPostgres) -> str:
    """The URL of a new, empty database of this test's own."""
    return postgres.create_database(f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def migrated(database: str) -> str:
    async def body() -> None:
        async with await connect(database) as conn:
            await migrate(conn)

    run(body)
    return database
