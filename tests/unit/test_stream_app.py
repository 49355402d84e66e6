"""The stream runtime's batch without a broker: what a batch produces, records and commits, in
that order; a handler that raises costs only its message; a commit that does not move is reported."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from services.runtime.settings import Settings
from services.runtime.stream_app import COMMIT_STUCK_AFTER, StreamApp
from services.runtime.streams import Outgoing, Received

EVENTS = "omboard.events"


@dataclass
class Record:  # the parts of an aiokafka ConsumerRecord the runtime reads
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple = ()
    timestamp: int = 0


@dataclass
class Log:
    """What reached the broker, in order: produced messages and commits."""

    entries: list[tuple[str, Any]] = field(default_factory=list)

    async def send(self, topic, value, key, partition, timestamp, headers) -> Any:
        self.entries.append(("produce", (topic, key, value)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def commit(self, offsets: dict) -> None:
        self.entries.append(("commit", dict(offsets)))

    def seek(self, tp, offset) -> None:
        self.entries.append(("seek", (tp, offset)))

    def pause(self, *tps) -> None:
        self.entries.append(("pause", tps))

    def resume(self, *tps) -> None:
        self.entries.append(("resume", tps))


def app_with(log: Log) -> StreamApp:
    app = StreamApp("orgstructure", Settings(web_port=1))
    app.producer = log
    app.consumer = log  # type: ignore[assignment]
    app.assigned = frozenset({TopicPartition(EVENTS, 0)})
    return app


def fetched(*values: bytes) -> dict:
    return {TopicPartition(EVENTS, 0): [Record(EVENTS, 0, n, b"p1", value) for n, value in enumerate(values)]}


def test_a_batch_is_produced_then_recorded_then_committed():
    log = Log()
    app = app_with(log)
    table = app.table("providers")

    @app.agent(EVENTS, name="plan")
    async def plan(batch: list[Received]) -> list[Outgoing]:
        for received in batch:
            table.set(b"p1", received.value, received.partition)
        return [Outgoing("omboard.tasks.siebel", b"p1", received.value) for received in batch]

    asyncio.run(app._process(fetched(b"a", b"b")))

    assert log.entries == [
        ("produce", ("omboard.tasks.siebel", b"p1", b"a")),
        ("produce", ("omboard.tasks.siebel", b"p1", b"b")),
        ("produce", ("omboard-orgstructure-providers-changelog", b"p1", b"b")),  # the last state only
        ("commit", {TopicPartition(EVENTS, 0): 2}),
    ]
    assert table.get(b"p1") == b"b"


def test_a_handler_that_raises_is_rolled_back_and_only_its_message_is_dead_lettered():
    log = Log()
    app = app_with(log)
    table = app.table("providers")

    @app.agent(EVENTS, name="plan")
    async def plan(batch: list[Received]) -> list[Outgoing]:
        out = []
        for received in batch:
            table.set(b"seen-" + received.value, b"1", received.partition)
            if received.value == b"poison":
                raise RuntimeError("a bug")
            out.append(Outgoing("omboard.tasks.siebel", b"p1", received.value))
        return out

    asyncio.run(app._process(fetched(b"a", b"poison", b"c")))

    produced = [entry[1] for entry in log.entries if entry[0] == "produce"]
    assert ("omboard.tasks.siebel", b"p1", b"a") in produced and ("omboard.tasks.siebel", b"p1", b"c") in produced
    assert ("omboard.deadletter.orgstructure", b"p1", b"poison") in produced
    assert table.get(b"seen-poison") is None, "the failing message's writes are rolled back"
    assert table.get(b"seen-a") == b"1" and table.get(b"seen-c") == b"1"
    assert log.entries[-1] == ("commit", {TopicPartition(EVENTS, 0): 3})


def test_records_of_a_partition_no_longer_held_are_left_for_its_new_owner():
    log = Log()
    app = app_with(log)
    app.assigned = frozenset()  # revoked while the records were on their way

    @app.agent(EVENTS, name="plan")
    async def plan(batch: list[Received]) -> list[Outgoing]:
        raise AssertionError("not handled here")

    asyncio.run(app._process(fetched(b"a")))
    assert log.entries == []


def test_a_partition_whose_commit_does_not_move_while_messages_wait_is_reported():
    app = app_with(Log())
    tp = TopicPartition(EVENTS, 0)
    app.committed[tp] = 10
    app._commit_moved_at[tp] = 100.0
    app.end_offsets[tp] = 25
    assert app.lag() == {EVENTS: 15}
    assert app.stuck_partitions(now=100.0 + COMMIT_STUCK_AFTER - 1) == []
    assert app.stuck_partitions(now=100.0 + COMMIT_STUCK_AFTER + 5) == [
        f"{EVENTS}[0]: 15 message(s) wait and the commit has not moved for {COMMIT_STUCK_AFTER + 5:.0f}s"]
    app.end_offsets[tp] = 10  # nothing waits: an idle partition is not stuck
    assert app.stuck_partitions(now=1_000_000.0) == []


def test_a_held_partition_commits_up_to_the_held_message_and_is_read_again_from_it_when_released():
    log = Log()
    app = app_with(log)
    other = TopicPartition(EVENTS, 1)
    app.assigned = frozenset({TopicPartition(EVENTS, 0), other})
    ready = False

    @app.agent(EVENTS, name="mail")
    async def mail(batch: list[Received]) -> list[Outgoing]:
        out = []
        for received in batch:
            if received.partition == 0 and received.offset >= 1:
                app.hold(received, until=lambda: ready)
                continue
            out.append(Outgoing("omboard.notifications.sent", b"p1", received.value))
        return out

    records = fetched(b"a", b"b", b"c") | {other: [Record(EVENTS, 1, 0, b"p2", b"x")]}
    asyncio.run(app._process(records))

    held = TopicPartition(EVENTS, 0)
    assert ("seek", (held, 1)) in log.entries and ("pause", (held,)) in log.entries
    assert log.entries[-1] == ("commit", {held: 1, other: 1})
    app._release_holds()
    assert ("resume", (held,)) not in log.entries, "held while the condition is false"
    ready = True
    app._release_holds()
    assert log.entries[-1] == ("resume", (held,))
