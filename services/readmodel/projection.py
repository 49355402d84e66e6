"""Writing the read model: records of the reporting worker's task changelog into ``tasks`` and
``task_history``, of ``omboard.holdings`` into ``holdings`` and of ``omboard.verdicts`` into
``verdicts``, with how far each partition has been projected.

A batch is one transaction: rows, history and positions commit together, so a projector that
resumes from ``positions`` neither skips nor doubles anything. Replays are harmless three ways:
records below a partition's stored position are skipped, an upsert never replaces a row that
came from a later position, and history entries are keyed by their index (history only grows).
The positions part is the same for every topic (``_project``); each topic's rows are its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import psycopg

from schemas.tasks import DateVerdict, Holding
from services.domain.ledger import TaskRecord


@dataclass(frozen=True)
class ChangelogRecord:
    partition: int
    offset: int
    value: bytes | None  # TaskRecord JSON (Holding, DateVerdict on their topics), or None for a tombstone
    key: str  # the record's key: a task id, a place's or a verdict's key (all a tombstone has)


def _upsert(table: str, columns: tuple[str, ...], casts: dict[str, str]) -> str:
    """Insert a row keyed by ``id``, or replace it only with one from a later position."""
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('%s' + casts.get(column, '') for column in columns)}) "
        "ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{column} = excluded.{column}" for column in columns[1:])
        + ", projected_at = now() "
        f"WHERE ({table}.source_partition, {table}.source_offset) < (excluded.source_partition, excluded.source_offset)"
    )


_COLUMNS = ("id", "provider_id", "provider_name", "system", "responsible", "status", "due", "obligation", "action",
            "channel", "rule", "unit_id", "plan_id", "correlation_id", "depends_on", "record", "source_partition",
            "source_offset")
_CASTS = {"depends_on": "::text[]", "record": "::jsonb"}
_UPSERT = _upsert("tasks", _COLUMNS, _CASTS)
_HISTORY = (
    "INSERT INTO task_history (id, task_id, n, status, by, at, reason, change_id) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING"
)
_DELETE = "DELETE FROM tasks WHERE id = %s AND (source_partition, source_offset) < (%s, %s)"
_POSITION = (
    "INSERT INTO projection_positions (changelog, partition, next_offset) VALUES (%s, %s, %s) "
    "ON CONFLICT (changelog, partition) DO UPDATE "
    "SET next_offset = greatest(projection_positions.next_offset, excluded.next_offset)"
)

#: Writes a batch's records not projected before, on the batch's cursor.
Write = Callable[[psycopg.AsyncCursor, list[ChangelogRecord]], Awaitable[None]]


async def _project(conn: psycopg.AsyncConnection, changelog: str, records: Sequence[ChangelogRecord],
                   write: Write) -> None:
    """What every projection does: in one transaction (committed on return; a savepoint inside a
    transaction the caller has open), lock the stored positions of the batch's partitions, ``write``
    the records at or past them, and move each position past the batch's last record."""
    if not records:
        return
    async with conn.transaction(), conn.cursor() as cursor:
        partitions = sorted({record.partition for record in records})
        await cursor.execute(
            "SELECT partition, next_offset FROM projection_positions WHERE changelog = %s AND partition = ANY(%s) "
            "ORDER BY partition FOR UPDATE", (changelog, partitions))
        stored = dict(await cursor.fetchall())
        await write(cursor, [record for record in records if record.offset >= stored.get(record.partition, 0)])
        ends: dict[int, int] = {}
        for record in records:
            ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
        await cursor.executemany(_POSITION, [(changelog, partition, end) for partition, end in sorted(ends.items())])


def _latest(records: Sequence[ChangelogRecord]) -> list[ChangelogRecord]:
    """The last record of each key (a compacted topic's truth), in the order the keys came."""
    latest: dict[str, ChangelogRecord] = {}
    for record in records:
        seen = latest.get(record.key)
        if seen is None or (seen.partition, seen.offset) < (record.partition, record.offset):
            latest[record.key] = record
    return list(latest.values())


# -- tasks -------------------------------------------------------------------------------------------


def _row(record: ChangelogRecord) -> tuple[tuple, list[tuple]]:
    assert record.value is not None
    text = record.value.decode()
    parsed = TaskRecord.model_validate_json(text)
    task = parsed.task
    if task.id != record.key:
        raise ValueError(f"changelog record at {record.partition}:{record.offset} is keyed {record.key!r} "
                         f"but holds task {task.id!r}")
    row = (task.id, task.subject.provider_id, task.provider_name, task.system, task.responsible, parsed.status,
           task.due, task.obligation, task.action, task.channel, task.rule, task.subject.unit_id, task.plan_id,
           task.correlation_id, list(task.depends_on), text, record.partition, record.offset)
    history = [(f"{task.id}#{n}", task.id, n, entry.status, entry.by, entry.at, entry.reason, entry.change_id)
               for n, entry in enumerate(parsed.history)]
    return row, history


async def _write_tasks(cursor: psycopg.AsyncCursor, records: list[ChangelogRecord]) -> None:
    rows, history, deletes = [], [], []
    for record in _latest(records):
        if record.value is None:
            deletes.append((record.key, record.partition, record.offset))
        else:
            row, entries = _row(record)
            rows.append(row)
            history += entries
    if rows:
        await cursor.executemany(_UPSERT, rows)
    if history:
        await cursor.executemany(_HISTORY, history)
    if deletes:
        await cursor.executemany(_DELETE, deletes)


async def project(conn: psycopg.AsyncConnection, changelog: str, records: Sequence[ChangelogRecord]) -> None:
    """Apply a batch of changelog records in one transaction, committed on return (inside a
    transaction the caller has open, it is a savepoint of it). The last record of a task wins."""
    await _project(conn, changelog, records, _write_tasks)


# -- holdings ----------------------------------------------------------------------------------------

_HOLDING = (
    "INSERT INTO holdings (id, provider_id, task_id, grant_rule, unit_id, record, source_partition, source_offset) "
    "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s) ON CONFLICT (id) DO NOTHING"
)


async def _write_holdings(cursor: psycopg.AsyncCursor, records: list[ChangelogRecord]) -> None:
    rows = []
    for record in records:
        if record.value is None:
            continue
        holding = Holding.model_validate_json(record.value)
        if holding.provider_id is None:
            raise ValueError(f"holding at {record.partition}:{record.offset} names no provider")
        rows.append((holding.key, holding.provider_id, holding.task_id, holding.grant_rule, holding.unit_id,
                     record.value.decode(), record.partition, record.offset))
    if rows:
        await cursor.executemany(_HOLDING, rows)


async def project_holdings(conn: psycopg.AsyncConnection, topic: str, records: Sequence[ChangelogRecord]) -> None:
    """Apply a batch of ``omboard.holdings`` records (``Holding`` JSON) in one transaction, with the
    positions they reach; a place is recorded once, and never changes."""
    await _project(conn, topic, records, _write_holdings)


# -- verdicts ----------------------------------------------------------------------------------------

_VERDICT_COLUMNS = ("id", "provider_id", "subject", "event_id", "event_type", "date", "at_risk", "earliest_feasible",
                    "record", "source_partition", "source_offset")
_VERDICT = _upsert("verdicts", _VERDICT_COLUMNS, {"record": "::jsonb"})
_VERDICT_DELETE = "DELETE FROM verdicts WHERE id = %s AND (source_partition, source_offset) < (%s, %s)"


async def _write_verdicts(cursor: psycopg.AsyncCursor, records: list[ChangelogRecord]) -> None:
    rows, deletes = [], []
    for record in _latest(records):
        if record.value is None:
            deletes.append((record.key, record.partition, record.offset))
            continue
        text = record.value.decode()
        verdict = DateVerdict.model_validate_json(text)
        if verdict.key != record.key:
            raise ValueError(f"verdict at {record.partition}:{record.offset} is keyed {record.key!r} "
                             f"but is of {verdict.key!r}")
        rows.append((verdict.key, verdict.provider_id, verdict.subject, verdict.event_id, verdict.event_type,
                     verdict.date, verdict.at_risk, verdict.earliest_feasible, text, record.partition, record.offset))
    if rows:
        await cursor.executemany(_VERDICT, rows)
    if deletes:
        await cursor.executemany(_VERDICT_DELETE, deletes)


async def project_verdicts(conn: psycopg.AsyncConnection, topic: str, records: Sequence[ChangelogRecord]) -> None:
    """Apply a batch of ``omboard.verdicts`` records (``DateVerdict`` JSON) in one transaction, with
    the positions they reach: the latest verdict of each subject replaces the one before (an
    ``at_risk`` false one clears it from the dates at risk), a tombstone removes it."""
    await _project(conn, topic, records, _write_verdicts)


async def positions(conn: psycopg.AsyncConnection, changelog: str) -> dict[int, int]:
    """Changelog partition -> the next offset to project from it (a partition never projected is absent)."""
    async with conn.transaction():  # not left idle in a transaction, which would swallow the next project()
        cursor = await conn.execute(
            "SELECT partition, next_offset FROM projection_positions WHERE changelog = %s ORDER BY partition",
            (changelog,))
        return dict(await cursor.fetchall())
