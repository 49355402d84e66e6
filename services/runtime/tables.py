"""A table: bytes to bytes, kept durable in a compacted changelog topic.

Each key lives on one changelog partition, the partition of the input it is written while
handling (every topic is keyed by provider id, so that is the provider's partition). A worker
holds the partitions of the inputs it is assigned, and nothing else.

``restore`` brings tables up to the end of their changelogs when a worker is assigned partitions.

Writes are staged: ``get`` sees them at once, but they reach the store for good and the changelog
only when the runtime settles the batch that made them (``StreamApp.settle``), after that batch's
messages were produced. A batch whose handler raised is rolled back (``discard_staged``) and
handled again one message at a time, against the state as it was.

Where the settled values live is the table's store: in memory (``MemoryStore``), or on local disk
(``DiskStore``, SQLite) for a table that grows with a municipality's work: a million task records
held in a dict took 1.8 GB of the reporting worker (``make bench-scale``). Either is a cache of the
changelog, filled again from it on every start: the changelog is the truth.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from aiokafka import TopicPartition

from services.runtime.streams import Header, Outgoing


class Store(Protocol):
    """Where a table's settled values live."""

    def get(self, key: bytes) -> bytes | None: ...
    def partition_of(self, key: bytes) -> int | None: ...
    def write(self, partition: int, rows: Iterable[tuple[bytes, bytes | None]]) -> None: ...
    def items(self) -> Iterator[tuple[bytes, bytes]]: ...
    def keep_only(self, partitions: set[int]) -> None: ...
    def bulk(self) -> contextlib.AbstractContextManager[None]: ...
    def __len__(self) -> int: ...


class MemoryStore:
    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._partition_of: dict[bytes, int] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def partition_of(self, key: bytes) -> int | None:
        return self._partition_of.get(key)

    def write(self, partition: int, rows: Iterable[tuple[bytes, bytes | None]]) -> None:
        for key, value in rows:
            if value is None:
                self._data.pop(key, None)
                self._partition_of.pop(key, None)
            else:
                self._data[key] = value
                self._partition_of[key] = partition

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._data.items()))

    def keep_only(self, partitions: set[int]) -> None:
        for key in [key for key, partition in self._partition_of.items() if partition not in partitions]:
            del self._data[key]
            del self._partition_of[key]

    def bulk(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def __len__(self) -> int:
        return len(self._data)


class DiskStore:
    """Values in a SQLite file of this process's own, in ``directory``.

    The file is unlinked as soon as it is open: it lives as long as the process and no longer, so a
    killed worker leaves nothing behind, and no two workers can share one. Nothing is synced: a
    crash loses the file anyway, and the changelog fills the next one.
    """

    #: Rows per page while iterating (by key: writes meanwhile neither repeat nor skip a row).
    PAGE = 2000

    def __init__(self, directory: Path, name: str, cache_mb: int = 64):
        directory.mkdir(parents=True, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".sqlite", dir=directory)
        os.close(handle)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        os.unlink(path)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "locking_mode=EXCLUSIVE", "temp_store=MEMORY",
                       f"cache_size=-{cache_mb * 1024}"):
            self._db.execute(f"PRAGMA {pragma}")
        # A rowid table, the key in an index beside it: with values of a kilobyte, a table clustered
        # on the key (WITHOUT ROWID) took 29-39 us an insert against 8 us (200,000 task records).
        # ``value`` is NULL only for a tombstone read while loading (see ``bulk``).
        self._db.execute("CREATE TABLE kv (key BLOB NOT NULL, partition INTEGER NOT NULL, value BLOB)")
        self._db.execute(self._KEY_INDEX)
        self._count = 0
        self._loading = False

    _KEY_INDEX = "CREATE UNIQUE INDEX kv_key ON kv (key)"

    def get(self, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def partition_of(self, key: bytes) -> int | None:
        row = self._db.execute("SELECT partition FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def write(self, partition: int, rows: Iterable[tuple[bytes, bytes | None]]) -> None:
        if self._loading:  # appended in order; ``bulk`` keeps the last of each key at the end
            self._db.executemany("INSERT INTO kv VALUES (?, ?, ?)", [(key, partition, value) for key, value in rows])
            self._count = -1
            return
        latest = dict(rows)  # in order: the last value of a key is the one that stands
        puts = [(key, partition, value) for key, value in latest.items() if value is not None]
        deletes = [(key,) for key, value in latest.items() if value is None]
        with self.bulk():
            if puts:
                self._db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", puts)
            if deletes:
                self._db.executemany("DELETE FROM kv WHERE key = ?", deletes)
        self._count = -1  # counted again when asked

    @contextlib.contextmanager
    def bulk(self) -> Iterator[None]:
        """One transaction for every write inside (a restore): a commit per fetched batch was a
        third of what SQLite spent restoring.

        Into an empty store (a worker's first restore) the records are appended without the key's
        index, which is built once at the end, keeping the last record of each key: at 1,000,000
        records, keeping the index up to date cost 20 us an insert, more than reading the record
        from Kafka. Nothing may read the store meanwhile (restoring does not)."""
        if self._db.in_transaction:
            yield
            return
        loading = len(self) == 0
        self._db.execute("BEGIN")
        try:
            if loading:
                self._db.execute("DROP INDEX kv_key")
                self._loading = True
            yield
        finally:
            if loading:
                self._loading = False
                self._db.execute("DELETE FROM kv WHERE rowid NOT IN (SELECT max(rowid) FROM kv GROUP BY key)")
                self._db.execute("DELETE FROM kv WHERE value IS NULL")
                self._db.execute(self._KEY_INDEX)
                self._count = -1
            self._db.execute("COMMIT")

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        after = b""
        while True:
            page = self._db.execute("SELECT key, value FROM kv WHERE key > ? ORDER BY key LIMIT ?",
                                    (after, self.PAGE)).fetchall()
            yield from page
            if len(page) < self.PAGE:
                return
            after = page[-1][0]

    def keep_only(self, partitions: set[int]) -> None:
        # A scan: partitions move seldom, and an index on them cost every write (7.6 against 8.9 us).
        held = ",".join(str(int(p)) for p in sorted(partitions)) or "-1"
        self._db.execute(f"DELETE FROM kv WHERE partition NOT IN ({held})")  # integers only
        self._count = -1

    def __len__(self) -> int:
        if self._count < 0:
            self._count = self._db.execute("SELECT count(*) FROM kv").fetchone()[0]
        return self._count

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


class Table:
    def __init__(self, name: str, changelog: str, store: Store | None = None):
        self.name = name
        self.changelog = changelog
        self._store: Store = store if store is not None else MemoryStore()
        self._staged: dict[bytes, tuple[int, bytes | None, Sequence[Header]]] = {}
        #: changelog partition -> the next offset to read from it, once restored
        self.positions: dict[int, int] = {}
        #: called after staged writes were rolled back: what indexes the table must derive again
        self.on_discard: list[Callable[[], None]] = []
        #: called with each record read back while restoring: (partition, key, value, headers)
        self.on_restore: list[Callable[[int, bytes, bytes | None, Sequence[Header]], None]] = []
        #: called with the partitions kept when the others are forgotten
        self.on_forget: list[Callable[[set[int]], None]] = []
        #: called once staged writes are settled for good
        self.on_settled: list[Callable[[], None]] = []

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        if key in self._staged:
            staged = self._staged[key][1]
            return default if staged is None else staged
        found = self._store.get(key)
        return default if found is None else found

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        if not self._staged:
            return len(self._store)
        return sum(1 for _ in self.keys())

    def keys(self) -> Iterator[bytes]:
        for key, _ in self.items():
            yield key

    def values(self) -> Iterator[bytes]:
        for _, value in self.items():
            yield value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value, staged writes included; safe to write to the table meanwhile."""
        staged = dict(self._staged)
        for key, value in self._store.items():
            if key not in staged:
                yield key, value
        for key, (_, value, _) in staged.items():
            if value is not None:
                yield key, value

    def partition_of(self, key: bytes) -> int | None:
        if key in self._staged:
            return self._staged[key][0]
        return self._store.partition_of(key)

    def set(self, key: bytes, value: bytes | None, partition: int | None = None, headers: Sequence[Header] = ()) -> None:
        """Stage ``key`` = ``value`` (None deletes it) on ``partition``: the partition of the
        message being handled. A key the table already holds may leave it out and stays where it is.
        ``headers`` go with the changelog record (what an index needs of it, read back on restore)."""
        if partition is None:
            partition = self.partition_of(key)
            if partition is None:
                raise KeyError(f"table {self.name}: a new key needs the partition it belongs to")
        self._staged[key] = (partition, value, tuple(headers))

    def delete(self, key: bytes) -> None:
        self.set(key, None)

    # -- for the runtime ---------------------------------------------------------------------

    def staged_records(self) -> list[Outgoing]:
        return [Outgoing(self.changelog, key, value, headers, partition)
                for key, (partition, value, headers) in self._staged.items()]

    def apply_staged(self) -> None:
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for key, (partition, value, _) in self._staged.items():
            by_partition.setdefault(partition, []).append((key, value))
        for partition, rows in by_partition.items():
            self._store.write(partition, rows)
        self._staged.clear()
        for settled in self.on_settled:
            settled()

    def discard_staged(self) -> None:
        if self._staged:
            self._staged.clear()
            for derive_again in self.on_discard:
                derive_again()

    def apply(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        """One changelog record, as read back while restoring."""
        if key is not None:
            self._store.write(partition, [(key, value)])

    def restored(self, partition: int, records: Sequence[Any]) -> None:
        """Changelog records of one partition (aiokafka's), in their order, read back while restoring."""
        self._store.write(partition, [(record.key, record.value) for record in records if record.key is not None])
        for on_restore in self.on_restore:
            for record in records:
                if record.key is not None:
                    on_restore(partition, record.key, record.value, record.headers or ())

    def keep_only(self, partitions: set[int]) -> None:
        """Forget every key on a partition this worker no longer holds."""
        self._store.keep_only(partitions)
        for forget in self.on_forget:
            forget(partitions)
        for partition in list(self.positions):
            if partition not in partitions:
                del self.positions[partition]


async def restore(tables: Collection[Table], partitions: set[int], restorer: Any) -> None:
    """Bring every table up to the end of its changelog on ``partitions`` and drop the rest;
    ``restorer`` is an aiokafka consumer in no group.

    A partition kept from the last assignment is read on from where it was, so a rebalance costs
    what changed since; one new here is read from its start.

    The cyclic garbage collector waits meanwhile: restoring adds an index entry per record, and
    each of the collector's full passes walks everything alive, so a million records cost it more
    than reading them did (``make bench-scale``). What was restored is then frozen out of its
    reach: index entries hold no cycles, and reference counting frees them as ever.
    """
    collecting = gc.isenabled()
    gc.disable()
    gc.unfreeze()  # what the last restore froze and has since become garbage is collected again
    try:
        await _restore(tables, partitions, restorer)
    finally:
        if collecting:
            gc.freeze()
            gc.enable()


async def _restore(tables: Collection[Table], partitions: set[int], restorer: Any) -> None:
    with contextlib.ExitStack() as bulk:
        for table in tables:
            bulk.enter_context(table._store.bulk())
        await _read_changelogs(tables, partitions, restorer)


async def _read_changelogs(tables: Collection[Table], partitions: set[int], restorer: Any) -> None:
    for table in tables:
        table.keep_only(partitions)
    wanted = {TopicPartition(table.changelog, p): table for table in tables for p in partitions}
    if not wanted:
        return
    restorer.assign(list(wanted))
    ends = await restorer.end_offsets(list(wanted))
    pending: set[TopicPartition] = set()
    for tp, table in wanted.items():
        start = table.positions.get(tp.partition, 0)
        if start < ends[tp]:
            restorer.seek(tp, start)
            pending.add(tp)
        else:
            table.positions[tp.partition] = ends[tp]
    while pending:
        fetched = await restorer.getmany(*pending, timeout_ms=1000)
        for tp, records in fetched.items():
            wanted[tp].restored(tp.partition, records)
        for tp in list(pending):
            position = await restorer.position(tp)
            wanted[tp].positions[tp.partition] = position
            if position >= ends[tp]:
                pending.discard(tp)
    restorer.assign([])
