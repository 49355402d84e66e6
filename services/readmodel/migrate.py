"""Versioned migrations of the read model: ``migrations/NNNN_name.sql``, applied once each, in order.

Each file runs in a transaction of its own and is recorded in ``schema_migrations``; a
transaction-scoped advisory lock lets two workers that start at once migrate one after the other
(the second finds nothing left to do). A database that has a version this code does not know was
migrated by a newer omboard: it is refused rather than read with the wrong schema.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
from psycopg import pq

MIGRATIONS = Path(__file__).parent / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
#: pg_advisory_xact_lock key of the read model's migrations (any bigint of our own; "omboard" in ASCII).
LOCK_KEY = 0x6F6D626F617264

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version int PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


class MigrationError(RuntimeError):
    pass


def migration_files(folder: Path = MIGRATIONS) -> list[tuple[int, str, Path]]:
    """``(version, name, path)`` of every migration, oldest first; name is the file's stem
    (``0001_read_model``). Versions must run 1, 2, 3, ... with no gap and no repeat."""
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"migration {path.name} is not named NNNN_lowercase_name.sql")
        found.append((int(match.group(1)), path.stem, path))
    versions = [version for version, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migrations in {folder} must be numbered 1, 2, 3, ... once each; found {versions}")
    return found


async def _applied(conn: psycopg.AsyncConnection) -> dict[int, str]:
    cursor = await conn.execute("SELECT version, name FROM schema_migrations")
    return {version: name for version, name in await cursor.fetchall()}


async def migrate(conn: psycopg.AsyncConnection) -> list[str]:
    """Apply every migration the database lacks; returns the names applied (empty: up to date).

    ``conn`` must not be inside a transaction (each migration commits on its own)."""
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise MigrationError("migrate needs a connection outside a transaction (each migration commits on its own)")
    files = migration_files()
    known = {version: name for version, name, _ in files}
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        await conn.execute(_CREATE_TABLE)
        applied = await _applied(conn)
    newer = sorted(set(applied) - set(known))
    if newer:
        raise MigrationError(
            f"the database has read-model schema version {newer[-1]} ({applied[newer[-1]]}), newer than this "
            f"omboard knows (up to {len(files)}): run a newer omboard, or point OMBOARD_DATABASE_URL elsewhere")
    renamed = {version: (applied[version], known[version]) for version in applied if applied[version] != known[version]}
    if renamed:
        raise MigrationError(f"applied migrations differ from the files (version: applied, file): {renamed}")
    done: list[str] = []
    for version, name, path in files:
        if version in applied:
            continue
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            # Another worker may have applied it while we waited for the lock.
            cursor = await conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,))
            if await cursor.fetchone() is not None:
                continue
            await conn.execute(path.read_text().encode())  # no parameters: several statements at once
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
        done.append(name)
    return done
