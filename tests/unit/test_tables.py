"""Tables without a broker: staged writes are seen at once, kept only when settled, and a
worker keeps only the partitions it holds."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from services.runtime.tables import Table, restore


def test_a_staged_write_is_read_at_once_and_becomes_a_changelog_record_on_its_partition():
    table = Table("providers", "omboard-x-providers-changelog")
    table.set(b"p1", b"state-1", partition=1)
    assert table.get(b"p1") == b"state-1"
    assert [(r.topic, r.key, r.value, r.partition) for r in table.staged_records()] == [
        ("omboard-x-providers-changelog", b"p1", b"state-1", 1)]
    table.apply_staged()
    assert table.staged_records() == []
    assert table.get(b"p1") == b"state-1" and table.partition_of(b"p1") == 1


def test_discarding_staged_writes_restores_what_was_there():
    table = Table("t", "c")
    table.apply(0, b"k", b"old")
    table.set(b"k", b"new")  # a key already held stays on its partition
    table.set(b"n", b"fresh", partition=0)
    assert dict(table.items()) == {b"k": b"new", b"n": b"fresh"}
    table.discard_staged()
    assert dict(table.items()) == {b"k": b"old"}


def test_a_new_key_needs_its_partition():
    with pytest.raises(KeyError, match="needs the partition"):
        Table("t", "c").set(b"k", b"v")


def test_a_deletion_is_a_tombstone_and_hides_the_key():
    table = Table("t", "c")
    table.apply(0, b"k", b"v")
    table.delete(b"k")
    assert table.get(b"k") is None and b"k" not in table
    assert [r.value for r in table.staged_records()] == [None]
    table.apply_staged()
    assert len(table) == 0


def test_keep_only_forgets_other_partitions_and_where_they_were_read():
    table = Table("t", "c")
    table.apply(0, b"a", b"1")
    table.apply(1, b"b", b"2")
    table.positions.update({0: 5, 1: 7})
    table.keep_only({1})
    assert dict(table.items()) == {b"b": b"2"}
    assert table.positions == {1: 7}


class ChangelogReader:
    """The parts of an aiokafka consumer ``restore`` uses, over records held in memory."""

    def __init__(self, logs: dict):
        self.logs = logs  # TopicPartition -> [(key, value)], offset = index
        self.at: dict = {}
        self.read_from: dict = {}

    def assign(self, tps) -> None:
        self.at = {tp: 0 for tp in tps}

    async def end_offsets(self, tps) -> dict:
        return {tp: len(self.logs.get(tp, [])) for tp in tps}

    def seek(self, tp, offset: int) -> None:
        self.at[tp] = self.read_from[tp] = offset

    async def getmany(self, *tps, timeout_ms: int):
        fetched = {}
        for tp in tps:
            records = self.logs.get(tp, [])[self.at[tp]:]
            fetched[tp] = [SimpleNamespace(key=k, value=v) for k, v in records]
            self.at[tp] += len(records)
        return fetched

    async def position(self, tp) -> int:
        return self.at[tp]


def test_restore_reads_each_partition_to_its_end_and_on_from_where_it_was_next_time():
    table = Table("t", "c")
    tp = TopicPartition("c", 0)
    reader = ChangelogReader({tp: [(b"a", b"1"), (b"b", b"2"), (b"a", None)]})  # a tombstone last
    asyncio.run(restore([table], {0}, reader))
    assert dict(table.items()) == {b"b": b"2"} and table.positions == {0: 3}

    reader.logs[tp].append((b"c", b"3"))  # written while this worker held the partition
    asyncio.run(restore([table], {0}, reader))
    assert reader.read_from[tp] == 3, "read on from where it was, not from the start"
    assert dict(table.items()) == {b"b": b"2", b"c": b"3"}
