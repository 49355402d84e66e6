"""Tables without a broker: staged writes are seen at once, kept only when settled, and a
worker keeps only the partitions it holds; the same in memory and on disk."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from services.runtime.tables import DiskStore, MemoryStore, Table, restore


@pytest.fixture(params=["memory", "disk"])
def new_table(request, tmp_path):
    """Tables of one kind of store."""
    def make(name: str = "t", changelog: str = "c") -> Table:
        return Table(name, changelog, DiskStore(tmp_path, name) if request.param == "disk" else None)
    return make


def test_a_staged_write_is_read_at_once_and_becomes_a_changelog_record_on_its_partition(new_table):
    table = new_table("providers", "omboard-x-providers-changelog")
    table.set(b"p1", b"state-1", partition=1)
    assert table.get(b"p1") == b"state-1"
    assert [(r.topic, r.key, r.value, r.partition) for r in table.staged_records()] == [
        ("omboard-x-providers-changelog", b"p1", b"state-1", 1)]
    table.apply_staged()
    assert table.staged_records() == []
    assert table.get(b"p1") == b"state-1" and table.partition_of(b"p1") == 1


def test_discarding_staged_writes_restores_what_was_there(new_table):
    table = new_table()
    table.apply(0, b"k", b"old")
    table.set(b"k", b"new")  # a key already held stays on its partition
    table.set(b"n", b"fresh", partition=0)
    assert dict(table.items()) == {b"k": b"new", b"n": b"fresh"}
    table.discard_staged()
    assert dict(table.items()) == {b"k": b"old"}


def test_a_new_key_needs_its_partition(new_table):
    with pytest.raises(KeyError, match="needs the partition"):
        new_table().set(b"k", b"v")


def test_a_deletion_is_a_tombstone_and_hides_the_key(new_table):
    table = new_table()
    table.apply(0, b"k", b"v")
    table.delete(b"k")
    assert table.get(b"k") is None and b"k" not in table
    assert [r.value for r in table.staged_records()] == [None]
    table.apply_staged()
    assert len(table) == 0


def test_keep_only_forgets_other_partitions_and_where_they_were_read(new_table):
    table = new_table()
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
            fetched[tp] = [SimpleNamespace(key=k, value=v, headers=()) for k, v in records]
            self.at[tp] += len(records)
        return fetched

    async def position(self, tp) -> int:
        return self.at[tp]


def test_restore_reads_each_partition_to_its_end_and_on_from_where_it_was_next_time(new_table):
    table = new_table()
    tp = TopicPartition("c", 0)
    reader = ChangelogReader({tp: [(b"a", b"1"), (b"b", b"2"), (b"a", None)]})  # a tombstone last
    asyncio.run(restore([table], {0}, reader))
    assert dict(table.items()) == {b"b": b"2"} and table.positions == {0: 3}

    reader.logs[tp].append((b"c", b"3"))  # written while this worker held the partition
    asyncio.run(restore([table], {0}, reader))
    assert reader.read_from[tp] == 3, "read on from where it was, not from the start"
    assert dict(table.items()) == {b"b": b"2", b"c": b"3"}


def test_a_disk_store_pages_through_more_rows_than_a_page(tmp_path):
    store = DiskStore(tmp_path, "big")
    store.write(0, [(f"k{i:05d}".encode(), b"v" * 100) for i in range(DiskStore.PAGE * 2 + 7)])
    store.write(1, [(b"k00003", None), (b"z", b"first"), (b"z", None), (b"z", b"last")])
    keys = [key for key, _ in store.items()]
    assert len(keys) == len(set(keys)) == DiskStore.PAGE * 2 + 7 and keys == sorted(keys)
    assert store.get(b"k00003") is None and store.partition_of(b"z") == 1 and store.partition_of(b"k00004") == 0
    store.keep_only({1})
    assert list(store.items()) == [(b"z", b"last")] and len(store) == 1
    store.close()


def test_a_disk_store_written_in_bulk_reads_the_same_and_serves_again_after(tmp_path):
    store = DiskStore(tmp_path, "bulk")

    def options() -> str:  # RocksDB writes its options to a new file on every change
        return max(store.path.glob("OPTIONS-*"), key=lambda path: int(path.name.split("-")[1])).read_text()

    with store.loading():
        assert "disable_auto_compactions=true" in options() and "compression=kNoCompression" in options()
        for start in range(0, 30_000, 1000):
            store.write(start % 3, [(f"k{i:05d}".encode(), b"v" * 200) for i in range(start, start + 1000)])
    store.write(0, [(b"after", b"1")])
    assert store.get(b"k12345") == b"v" * 200 and store.partition_of(b"k12345") == 0 and store.get(b"after") == b"1"
    assert "disable_auto_compactions=false" in options() and "compression=kSnappyCompression" in options()
    assert "level0_stop_writes_trigger=2000" in options(), "what a bulk load piles up stalls no write after it"
    store.close()


def test_restore_loads_each_table_in_bulk_while_it_reads_the_changelog():
    class Recorded(MemoryStore):
        def __init__(self):
            super().__init__()
            self.loading_while: list[int] = []  # rows held when a load began and ended

        @contextlib.contextmanager
        def loading(self):
            self.loading_while.append(len(self))
            yield
            self.loading_while.append(len(self))

    store = Recorded()
    table = Table("t", "c", store)
    asyncio.run(restore([table], {0}, ChangelogReader({TopicPartition("c", 0): [(b"a", b"1"), (b"b", b"2")]})))
    assert store.loading_while == [0, 2], "the records were written while loading"


def test_a_disk_store_leaves_nothing_behind_and_clears_what_a_killed_process_left(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left_by_a_killed_worker = tmp_path / f"tasks-{int(gone.stdout)}-12345-abc_9"
    left_by_a_killed_worker.mkdir()
    (left_by_a_killed_worker / "000001.sst").write_bytes(b"x")
    other_table = tmp_path / "tasks-archive-1-1-abc"  # not a store of this table's
    other_table.mkdir()

    store, neighbour = DiskStore(tmp_path, "tasks"), DiskStore(tmp_path, "tasks")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([store.path.name, neighbour.path.name, other_table.name])
    store.write(0, [(b"k", b"v")])
    store.close()
    assert not store.path.exists() and neighbour.path.exists(), "a live store's directory is its own"
    neighbour.close()
