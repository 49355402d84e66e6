"""A table: bytes to bytes in memory, kept durable in a compacted changelog topic.

Each key lives on one changelog partition, the partition of the input it is written while
handling (every topic is keyed by provider id, so that is the provider's partition). A worker
holds the partitions of the inputs it is assigned, and nothing else.

``restore`` brings tables up to the end of their changelogs when a worker is assigned partitions.

Writes are staged: ``get`` sees them at once, but they reach memory for good and the changelog
only when the runtime settles the batch that made them (``StreamApp.settle``), after that batch's
messages were produced. A batch whose handler raised is rolled back (``discard_staged``) and
handled again one message at a time, against the state as it was.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from aiokafka import TopicPartition

from services.runtime.streams import Outgoing


class Table:
    def __init__(self, name: str, changelog: str):
        self.name = name
        self.changelog = changelog
        self._data: dict[bytes, bytes] = {}
        self._partition_of: dict[bytes, int] = {}
        self._staged: dict[bytes, tuple[int, bytes | None]] = {}
        #: changelog partition -> the next offset to read from it, once restored
        self.positions: dict[int, int] = {}

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        if key in self._staged:
            staged = self._staged[key][1]
            return default if staged is None else staged
        return self._data.get(key, default)

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
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
        for key, value in list(self._data.items()):
            if key not in staged:
                yield key, value
        for key, (_, value) in staged.items():
            if value is not None:
                yield key, value

    def partition_of(self, key: bytes) -> int | None:
        if key in self._staged:
            return self._staged[key][0]
        return self._partition_of.get(key)

    def set(self, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        """Stage ``key`` = ``value`` (None deletes it) on ``partition``: the partition of the
        message being handled. A key the table already holds may leave it out and stays where it is."""
        if partition is None:
            partition = self.partition_of(key)
            if partition is None:
                raise KeyError(f"table {self.name}: a new key needs the partition it belongs to")
        self._staged[key] = (partition, value)

    def delete(self, key: bytes) -> None:
        self.set(key, None)

    # -- for the runtime ---------------------------------------------------------------------

    def staged_records(self) -> list[Outgoing]:
        return [Outgoing(self.changelog, key, value, (), partition) for key, (partition, value) in self._staged.items()]

    def apply_staged(self) -> None:
        for key, (partition, value) in self._staged.items():
            self.apply(partition, key, value)
        self._staged.clear()

    def discard_staged(self) -> None:
        self._staged.clear()

    def apply(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        """One changelog record, as written or as read back while restoring."""
        if key is None:
            return
        if value is None:
            self._data.pop(key, None)
            self._partition_of.pop(key, None)
        else:
            self._data[key] = value
            self._partition_of[key] = partition

    def keep_only(self, partitions: set[int]) -> None:
        """Forget every key on a partition this worker no longer holds."""
        gone = [key for key, partition in self._partition_of.items() if partition not in partitions]
        for key in gone:
            del self._data[key]
            del self._partition_of[key]
        for partition in list(self.positions):
            if partition not in partitions:
                del self.positions[partition]


async def restore(tables: Collection[Table], partitions: set[int], restorer: Any) -> None:
    """Bring every table up to the end of its changelog on ``partitions`` and drop the rest;
    ``restorer`` is an aiokafka consumer in no group.

    A partition kept from the last assignment is read on from where it was, so a rebalance costs
    what changed since; one new here is read from its start.
    """
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
            for record in records:
                wanted[tp].apply(tp.partition, record.key, record.value)
        for tp in list(pending):
            position = await restorer.position(tp)
            wanted[tp].positions[tp.partition] = position
            if position >= ends[tp]:
                pending.discard(tp)
    restorer.assign([])
