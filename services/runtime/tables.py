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
(``DiskStore``, RocksDB) for a table that grows with a municipality's work: a million task records
held in a dict took 1.8 GB of the reporting worker (``make bench-scale``). Either is a cache of the
changelog, filled again from it on every start: the changelog is the truth.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import rocksdict
from aiokafka import TopicPartition

from services.runtime.streams import Header, Outgoing


class Store(Protocol):
    """Where a table's settled values live."""

    def get(self, key: bytes) -> bytes | None: ...
    def partition_of(self, key: bytes) -> int | None: ...
    def write(self, partition: int, rows: Iterable[tuple[bytes, bytes | None]]) -> None: ...
    def items(self) -> Iterator[tuple[bytes, bytes]]: ...
    def keep_only(self, partitions: set[int]) -> None: ...
    def loading(self) -> contextlib.AbstractContextManager[None]: ...
    def close(self) -> None: ...
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

    def loading(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def close(self) -> None:
        self._data.clear()
        self._partition_of.clear()

    def __len__(self) -> int:
        return len(self._data)


class DiskStore:
    """Values in a RocksDB database of this process's own under ``directory`` (rocksdict, the
    binding Faust's own RocksDB store uses).

    RocksDB appends what it is given to a memory table and sorts it into files in background
    threads, so restoring a million task records cost 2.4 us a record against 12 us for SQLite,
    which kept a B-tree index up to date or built it at the end (``make bench-scale``); a read
    costs about what SQLite's did (8-12 us, the record read from the page cache).

    The directory lives as long as the process: ``close`` removes it, and a directory whose
    process is gone (a killed worker) is removed by the next store opened beside it. Nothing is
    logged or synced: the changelog is the log, and it fills the next store.
    """

    #: Rows per page while iterating (by key: writes meanwhile neither repeat nor skip a row).
    PAGE = 2000
    #: A value is stored behind the partition of its key, in two bytes.
    _PARTITION = struct.Struct(">H")
    #: While a changelog is read back, files are neither compacted nor compressed: the background
    #: work shared the worker's cores with it, and writing a million records took 5.2-6.0 s with it
    #: against 2.9-3.5 s without (``make bench-scale``): RocksDB's own advice for a bulk load, which
    #: Kafka Streams followed while restoring until 2.6. Compaction catches up in the background
    #: once the store serves again, and the level-0 limits set below keep it from stalling writes.
    _LOADING: ClassVar[dict[str, str]] = {"disable_auto_compactions": "true", "compression": "kNoCompression"}
    _SERVING: ClassVar[dict[str, str]] = {"disable_auto_compactions": "false", "compression": "kSnappyCompression"}

    def __init__(self, directory: Path, name: str, memtable_mb: int = 64, cache_mb: int = 32):
        self.path = _own_directory(directory, name)
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(memtable_mb << 20)
        options.set_max_background_jobs(max(2, os.cpu_count() or 2))
        table_options = rocksdict.BlockBasedOptions()
        # Planning asks for keys that are not there (a task about to be created): a Bloom filter
        # answers those without reading a block.
        table_options.set_bloom_filter(10, False)
        table_options.set_block_cache(rocksdict.Cache(cache_mb << 20))
        options.set_block_based_table_factory(table_options)
        options.set_compression_type(rocksdict.DBCompressionType.snappy())  # what _SERVING puts back
        # Level-0 files pile up while a restore loads without compacting (a million records left 19;
        # two million would pass the default stop at 36), and RocksDB would then stall the next
        # writes, with the GIL held, until compaction caught up: reads check a few more files instead.
        options.set_level_zero_slowdown_writes_trigger(1000)
        options.set_level_zero_stop_writes_trigger(2000)
        self._db = rocksdict.Rdict(str(self.path), options)
        unlogged = rocksdict.WriteOptions()
        unlogged.disable_wal = True
        self._db.set_write_options(unlogged)

    def get(self, key: bytes) -> bytes | None:
        stored = self._db.get(key)
        return stored[self._PARTITION.size:] if stored is not None else None

    def partition_of(self, key: bytes) -> int | None:
        stored = self._db.get(key)
        return self._PARTITION.unpack_from(stored)[0] if stored is not None else None

    def write(self, partition: int, rows: Iterable[tuple[bytes, bytes | None]]) -> None:
        prefix = self._PARTITION.pack(partition)
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in rows:  # in order: the last value of a key is the one that stands
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, prefix + value)
        self._db.write(batch)

    def _stored(self) -> Iterator[tuple[bytes, bytes]]:
        after: bytes | None = None
        while True:
            rows = self._db.items(from_key=after) if after is not None else self._db.items()
            page = [row for row in itertools.islice(rows, self.PAGE + 1) if row[0] != after][: self.PAGE]
            del rows  # an open iterator pins what it reads from
            yield from page
            if len(page) < self.PAGE:
                return
            after = page[-1][0]

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        size = self._PARTITION.size
        for key, stored in self._stored():
            yield key, stored[size:]

    def keep_only(self, partitions: set[int]) -> None:
        # A scan: partitions move seldom, and keying by partition would cost every read a lookup per partition.
        unpack = self._PARTITION.unpack_from
        stale = [key for key, stored in self._stored() if unpack(stored)[0] not in partitions]
        for start in range(0, len(stale), self.PAGE):
            self.write(0, [(key, None) for key in stale[start:start + self.PAGE]])

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """Bulk writes meanwhile (a restore)."""
        self._db.set_options(self._LOADING)
        try:
            yield
        finally:
            self._db.set_options(self._SERVING)

    def __len__(self) -> int:
        """A scan: RocksDB only estimates its count, and nothing but tests asks."""
        return sum(1 for _ in self._stored())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), None if there is no such process: a
    pid and its start time name one process, even where pids are reused (a container's first)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _own_directory(directory: Path, name: str) -> Path:
    """A new directory for a store of this process; those of processes that are gone are removed."""
    directory.mkdir(parents=True, exist_ok=True)
    owner = re.compile(rf"{re.escape(name)}-(\d+)-(\d+)-[a-z0-9_]+")
    for found in directory.iterdir():
        if (match := owner.fullmatch(found.name)) and _started(int(match[1])) != match[2]:
            shutil.rmtree(found, ignore_errors=True)
    pid = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f"{name}-{pid}-{_started(pid) or 0}-", dir=directory))


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
        #: called with the changelog records of one partition read back while restoring, in their
        #: order: (partition, records), each with ``key`` (None: no key, not the table's), ``value``
        #: and ``headers``
        self.on_restore: list[Callable[[int, Sequence[Any]], None]] = []
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
        self._store.write(partition, ((record.key, record.value) for record in records if record.key is not None))
        for on_restore in self.on_restore:
            on_restore(partition, records)

    def keep_only(self, partitions: set[int]) -> None:
        """Forget every key on a partition this worker no longer holds."""
        self._store.keep_only(partitions)
        for forget in self.on_forget:
            forget(partitions)
        for partition in list(self.positions):
            if partition not in partitions:
                del self.positions[partition]

    def restoring(self) -> contextlib.AbstractContextManager[None]:
        """What the store needs around a restore (a store on disk loads in bulk)."""
        return self._store.loading()

    def close(self) -> None:
        """Let go of the store (a store on disk removes its files)."""
        self._store.close()


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
        with contextlib.ExitStack() as loading:
            for table in tables:
                loading.enter_context(table.restoring())
            await _read_changelogs(tables, partitions, restorer)
    finally:
        if collecting:
            gc.freeze()
            gc.enable()


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
