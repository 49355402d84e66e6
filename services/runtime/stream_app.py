"""The stream runtime every worker runs on: one aiokafka consumer, explicit commits, tables kept
in changelog topics. It replaced Faust's consuming loop (docs/decisions.md, "Our own consuming
loop"): Faust lost and stalled records after restarts, which this loop cannot do by construction.

One batch, under the app's lock, is always:

1. taken from the consumer (``getmany``), only from partitions this worker holds right now;
2. handed to the agent of its topics, which handles each message or dead-letters it and returns
   what to produce (table writes are staged meanwhile);
3. produced, and awaited: the broker has every message;
4. recorded: the staged table writes are produced to their changelogs, and awaited;
5. committed: the offset after the last message of each partition.

A worker killed between any two steps starts again from the last commit: the batch is handled
again, yields the same ids (de-duplicated downstream), and nothing it did is lost, because what it
records comes after what it produced. If an agent raises, its staged writes are rolled back and
the batch is handled again one message at a time, so only the failing message is dead-lettered.

A rebalance waits for the batch in flight (the lock): its commit lands before the partitions move.
Partitions assigned are restored from their changelogs before anything is consumed from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from schemas.wire import MAX_RECORD_BYTES
from services.runtime import metrics
from services.runtime.broker import aiokafka_client_config, bootstrap_servers, create_topics
from services.runtime.deadletter import dead_letter, reason_of
from services.runtime.settings import Settings
from services.runtime.streams import Outgoing, Received, mark_stalled, queue, send_all, stalled
from services.runtime.tables import DiskStore, Table, restore

log = logging.getLogger(__name__)

Handler = Callable[[list[Received]], Awaitable[list[Outgoing]]]

#: A partition with messages waiting whose commit has not moved for this long is reported stuck.
COMMIT_STUCK_AFTER = 30.0
#: Seconds between measurements of lag (a request to the broker for the end offsets).
LAG_INTERVAL = 5.0
#: A mail held for an SMTP outage holds its batch for minutes: the group must not evict the worker
#: for that (the default five minutes would move its partitions to a worker just as stuck).
MAX_POLL_INTERVAL_MS = 60 * 60 * 1000
#: Milliseconds the producer gathers emitted messages into one request: emitted one event at a
#: time while planning goes on, they would otherwise go out in requests of a few messages each.
LINGER_MS = 0
#: Seconds a stopping worker waits for the batch in flight before it lets go of it.
SHUTDOWN_WAIT = 10.0


@dataclass(frozen=True)
class Agent:
    name: str
    topics: tuple[str, ...]
    handle: Handler


@dataclass
class _Timer:
    name: str
    interval: float
    run: Callable[[], Awaitable[None]]


class StreamApp:
    """One service's worker: its agents, tables and timers over one consumer group, ``omboard-<service>``.

    ``web_port`` overrides the fixed per-service port of the health server (tests pass a free
    one); ``app_id`` lets a test or benchmark run beside the real service without joining its group.
    """

    def __init__(self, service: str, settings: Settings, *, web_port: int | None = None,
                 app_id: str | None = None):
        from schemas.topics import SERVICES

        self.service = service
        self.settings = settings
        self.id = app_id or f"omboard-{service}"
        self.web_port = web_port or settings.web_port or settings.web_port_base + SERVICES.index(service)
        self.batch_size = settings.batch_size
        self.tables: dict[str, Table] = {}
        self.agents: list[Agent] = []
        self._timers: list[_Timer] = []
        self._on_assigned: list[Callable[[frozenset[TopicPartition]], Awaitable[None]]] = []
        self._servers: list[tuple[str, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]] = []
        self._checks: list[Callable[[], str | None]] = []
        self.lock = asyncio.Lock()
        self.producer: Any = None
        self.consumer: AIOKafkaConsumer | None = None
        self._restorer: AIOKafkaConsumer | None = None
        #: input partitions this worker holds; empty between a revocation and the next assignment
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.joined = False  # the first assignment is done and restored
        self.restoring = False
        self.committed: dict[TopicPartition, int] = {}
        #: per partition, the offset after the last message handled (this batch's included)
        self.handled: dict[TopicPartition, int] = {}
        self._holds: dict[TopicPartition, tuple[int, Callable[[], bool]]] = {}
        self._emitted: list[tuple[Outgoing, Any]] = []
        self._commit_moved_at: dict[TopicPartition, float] = {}
        self.end_offsets: dict[TopicPartition, int] = {}
        self.crashed: str | None = None
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # -- declaring --------------------------------------------------------------------------

    def table(self, name: str, *, on_disk: bool = False) -> Table:
        """A table kept in ``<app id>-<name>-changelog``; ``on_disk``: its values in a RocksDB
        database of this process under ``OMBOARD_DATA_DIR`` rather than in memory (a table that
        grows with the municipality's work)."""
        store = DiskStore(self.settings.data_dir / self.id, name) if on_disk else None
        table = Table(name, f"{self.id}-{name}-changelog", store)
        self.tables[name] = table
        return table

    def agent(self, *topics: str, name: str) -> Callable[[Handler], Handler]:
        """Register ``handle(batch) -> messages to produce`` for the messages of ``topics``.
        Agents run in the order they are declared, each on its part of every batch."""
        def register(handle: Handler) -> Handler:
            self.agents.append(Agent(name, tuple(topics), handle))
            return handle
        return register

    def timer(self, interval: float, *, name: str) -> Callable[[Callable[[], Awaitable[None]]], Callable[[], Awaitable[None]]]:
        """Run the function every ``interval`` seconds once the worker holds its partitions,
        under the app's lock (never beside a batch), settling what it staged."""
        def register(run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            self._timers.append(_Timer(name, interval, run))
            return run
        return register

    def on_assigned(self, callback: Callable[[frozenset[TopicPartition]], Awaitable[None]]) -> Callable:
        """Called after each assignment, once its partitions are restored, under the lock."""
        self._on_assigned.append(callback)
        return callback

    def server(self, name: str, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
        """Something to start once the first assignment is restored (the status API) and stop last."""
        self._servers.append((name, start, stop))

    def readiness_check(self, check: Callable[[], str | None]) -> None:
        """One more thing readiness asks: ``check`` returns what is wrong, or None."""
        self._checks.append(check)

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(topic for agent in self.agents for topic in agent.topics)

    # -- what a batch does ------------------------------------------------------------------

    async def emit(self, messages: Sequence[Outgoing]) -> None:
        """Start producing ``messages`` now, while the agent goes on with the batch; the batch's
        settle waits for them. Producing overlaps planning this way: a batch of 500 events planned
        first and produced after took 2.2 s of each, one after the other (``make bench``)."""
        for message in messages:
            try:
                self._emitted.append((message, await queue(self, message)))
            except KafkaError:
                self._emitted.append((message, None))  # produced again at settle

    async def settle(self, outgoing: Sequence[Outgoing]) -> None:
        """Produce ``outgoing`` and wait for what was emitted, then produce every staged table
        write, each awaited: when this returns, the broker has both, and what was recorded never
        runs ahead of what was produced."""
        emitted, self._emitted = self._emitted, []
        refused = []
        for message, future in emitted:
            try:
                if future is None:
                    raise KafkaError("not queued")
                await future
            except KafkaError:
                refused.append(message)
        await send_all(self, [*refused, *outgoing])  # retries what the broker refused, with back-off
        await self.flush_writes()

    async def flush_writes(self) -> None:
        """Produce the staged table writes to their changelogs and wait until the broker has them."""
        records = [record for table in self.tables.values() for record in table.staged_records()]
        if not records:
            return
        await send_all(self, records)
        for table in self.tables.values():
            table.apply_staged()

    def _discard_writes(self) -> None:
        for table in self.tables.values():
            table.discard_staged()

    async def _handle(self, agent: Agent, batch: list[Received]) -> None:
        try:
            outgoing = await agent.handle(batch)
        except Exception:
            self._discard_writes()
            if len(batch) == 1:
                received = batch[0]
                log.exception("%s: %s failed on %s[%d]@%d; dead-lettering it", self.service, agent.name,
                              received.topic, received.partition, received.offset)
                metrics.DEAD_LETTERS.labels(self.service, received.topic).inc()
                await send_all(self, [dead_letter(self.service, received, f"{agent.name} failed")])
                return
            log.exception("%s: %s failed on a batch of %d; handling it one message at a time",
                          self.service, agent.name, len(batch))
            for received in batch:
                await self._handle(agent, [received])
            return
        await self.settle(outgoing)

    async def _process(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        if self.crashed:
            return
        mine = {tp: records for tp, records in fetched.items() if tp in self.assigned and records}
        if not mine:
            return
        for agent in self.agents:
            batch = [Received.from_record(record) for tp, records in mine.items() if tp.topic in agent.topics
                     for record in records]
            if batch:
                await self._handle(agent, batch)
                for tp, records in mine.items():
                    if tp.topic in agent.topics:
                        self.handled[tp] = self._holds[tp][0] if tp in self._holds else records[-1].offset + 1
        await self._commit({tp: self.handled[tp] for tp in mine})

    def hold(self, received: Received, until: Callable[[], bool]) -> None:
        """Leave ``received`` and what follows it on its partition for later: the batch commits
        up to it, and the partition is read again from it once ``until()`` holds (checked after
        each batch). The agent must skip the rest of that partition in this batch."""
        tp = TopicPartition(received.topic, received.partition)
        if tp in self._holds:
            return
        self._holds[tp] = (received.offset, until)
        assert self.consumer is not None
        self.consumer.seek(tp, received.offset)
        self.consumer.pause(tp)

    def _release_holds(self) -> None:
        assert self.consumer is not None
        for tp, (_, until) in list(self._holds.items()):
            if until():
                del self._holds[tp]
                if tp in self.assigned:
                    self.consumer.resume(tp)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self.consumer is not None
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The group moved on (this worker was too slow or was evicted): the batch is done,
            # and its new owner handles it again from the last commit. Duplicates, not loss.
            log.warning("%s: commit refused (%s); the batch will be handled again", self.service, type(error).__name__)
            return
        now = time.monotonic()
        for tp, offset in offsets.items():
            if self.committed.get(tp) != offset:
                self.committed[tp] = offset
                self._commit_moved_at[tp] = now

    # -- the loops --------------------------------------------------------------------------

    async def _consume(self) -> None:
        assert self.consumer is not None
        while not self._stopping.is_set():
            fetched = await self.consumer.getmany(timeout_ms=500, max_records=self.batch_size)
            if fetched:
                async with self.lock:
                    await self._process(fetched)
            self._release_holds()

    async def _run_timer(self, timer: _Timer) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=timer.interval)
            if self._stopping.is_set() or not self.joined or self.restoring:
                continue
            async with self.lock:
                if not self.assigned:  # between a revocation and the next assignment: nothing is ours
                    continue
                try:
                    await timer.run()
                    await self.flush_writes()
                except Exception:
                    self._discard_writes()
                    log.exception("%s: timer %s failed", self.service, timer.name)

    async def _measure_lag(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=LAG_INTERVAL)
            assigned = self.assigned
            if not assigned or self.consumer is None:
                continue
            try:
                self.end_offsets = await self.consumer.end_offsets(list(assigned))
            except (TimeoutError, KafkaError) as error:
                log.debug("%s: end offsets unavailable: %s", self.service, error)
                continue
            for topic, value in self.lag().items():
                metrics.CONSUMER_LAG.labels(self.service, topic).set(value)

    def lag(self) -> dict[str, int]:
        """Messages not yet committed, per topic, over this worker's partitions (as of the last
        measurement of the end offsets): what a restart would have to handle again or for the first time."""
        lag: dict[str, int] = {}
        for tp in self.assigned:
            end = self.end_offsets.get(tp)
            if end is None:
                continue
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - self.committed.get(tp, 0))
        return lag

    def stuck_partitions(self, now: float | None = None) -> list[str]:
        """Partitions with messages waiting whose commit has not moved for COMMIT_STUCK_AFTER seconds."""
        now = time.monotonic() if now is None else now
        stuck = []
        for tp in sorted(self.assigned):
            waiting = self.end_offsets.get(tp, 0) - self.committed.get(tp, 0)
            still = now - self._commit_moved_at.get(tp, now)
            if waiting > 0 and still > COMMIT_STUCK_AFTER:
                stuck.append(f"{tp.topic}[{tp.partition}]: {waiting} message(s) wait and the commit "
                             f"has not moved for {still:.0f}s")
        return stuck

    # -- rebalancing ------------------------------------------------------------------------

    async def _revoked(self, revoked: Sequence[TopicPartition]) -> None:
        async with self.lock:  # the batch in flight finishes and commits first
            self.assigned = frozenset()

    async def _assigned(self, assigned: Sequence[TopicPartition]) -> None:
        try:
            await self._take(assigned)
        except Exception as error:  # aiokafka would log it and go on without the tables
            # Consuming on without restored tables would plan against missing state: say so, stop
            # taking batches (nothing is committed), and let a restart try again.
            self.crashed = f"restoring tables failed: {reason_of(error)}"
            log.exception("%s: %s", self.service, self.crashed)
            self.assigned = frozenset()

    async def _take(self, assigned: Sequence[TopicPartition]) -> None:
        async with self.lock:
            self.restoring = True
            started = time.monotonic()
            try:
                partitions = {tp.partition for tp in assigned}
                assert self._restorer is not None
                await restore(self.tables.values(), partitions, self._restorer)
                now = time.monotonic()
                assert self.consumer is not None
                self._holds.clear()  # a new assignment is read from the commits, unpaused
                self.handled.clear()
                for tp in assigned:
                    committed = await self.consumer.committed(tp)
                    self.committed[tp] = self.handled[tp] = committed or 0
                    self._commit_moved_at[tp] = now
                for tp in list(self.committed):
                    if tp not in assigned:
                        self.committed.pop(tp, None)
                        self._commit_moved_at.pop(tp, None)
                self.end_offsets = {}
                self.assigned = frozenset(assigned)
                for callback in self._on_assigned:
                    await callback(self.assigned)
            finally:
                self.restoring = False
            first = not self.joined
            self.joined = True
            log.info("%s: ready with %d partition(s) of %s, tables restored in %.2fs", self.service,
                     len(partitions), ", ".join(sorted({tp.topic for tp in assigned})) or "no topic",
                     time.monotonic() - started)
        if first:
            for name, start, _ in self._servers:
                try:
                    await start()
                except Exception as error:  # noqa: BLE001 - e.g. its port is taken: liveness says so
                    self.crashed = f"{name} did not start: {reason_of(error)}"
                    log.error("%s: %s", self.service, self.crashed)

    # -- health -----------------------------------------------------------------------------

    def readiness_problems(self) -> list[str]:
        problems = []
        if self.crashed:
            problems.append(self.crashed)
        if not self.joined:
            problems.append("joining the consumer group")
        if self.restoring:
            problems.append("restoring tables")
        elif self.joined and not self.assigned:
            problems.append("no partitions assigned")
        if why := stalled(self):
            problems.append(f"stalled: {why}")
        problems += [problem for check in self._checks if (problem := check())]
        return problems + self.stuck_partitions()

    # -- running ----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Start, run until ``stop`` (SIGTERM, SIGINT) or a loop dies, and stop cleanly."""
        from services.runtime.health import health_server

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        start_health, stop_health = health_server(self)
        await start_health()
        try:
            await self._start_clients()
            self._tasks = [asyncio.create_task(self._consume(), name=f"{self.service}-consume"),
                           asyncio.create_task(self._measure_lag(), name=f"{self.service}-lag"),
                           *(asyncio.create_task(self._run_timer(timer), name=timer.name) for timer in self._timers)]
            stopping = asyncio.create_task(self._stopping.wait())
            done, _ = await asyncio.wait([stopping, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping and not task.cancelled() and task.exception() is not None:
                    # Kept running so liveness can say so; an orchestrator restarts the process.
                    self.crashed = f"{task.get_name()} crashed: {reason_of(task.exception())}"  # type: ignore[arg-type]
                    log.error("%s: %s", self.service, self.crashed, exc_info=task.exception())
                    await self._stopping.wait()
            stopping.cancel()
        finally:
            await self._shutdown()
            await stop_health()

    async def _start_clients(self) -> None:
        settings = self.settings
        servers = bootstrap_servers(settings.kafka_bootstrap)
        security = aiokafka_client_config(settings)
        changelogs = [table.changelog for table in self.tables.values()]
        # Created before anything produces to them, compacted: they hold the latest value per key.
        await asyncio.to_thread(create_topics, settings.kafka_bootstrap, changelogs, settings.partitions,
                                settings.replication_factor, settings, configs={"cleanup.policy": "compact"})
        self.producer = AIOKafkaProducer(
            bootstrap_servers=servers, client_id=self.id, acks="all", linger_ms=LINGER_MS,
            max_request_size=MAX_RECORD_BYTES + 48_576, **security)
        await self.producer.start()
        self._restorer = AIOKafkaConsumer(
            bootstrap_servers=servers, client_id=f"{self.id}-restore", group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest", **security)
        await self._restorer.start()
        session_ms = int(settings.broker_session_timeout * 1000)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=servers, client_id=self.id, group_id=self.id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            # Range assigns partition N of every topic to the same worker: a provider's events,
            # tasks and requests meet the tables that hold its state.
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=session_ms, heartbeat_interval_ms=session_ms // 3,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS, rebalance_timeout_ms=MAX_POLL_INTERVAL_MS,
            **security)
        self.consumer.subscribe(list(dict.fromkeys(self.topics)), listener=_Listener(self))
        await self.consumer.start()

    async def _shutdown(self) -> None:
        # Let the batch in flight finish and commit, unless it is held (an SMTP outage): then it
        # is handled again after the restart, as after a kill.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.lock.acquire(), timeout=SHUTDOWN_WAIT)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for _name, _, stop in reversed(self._servers):
            with contextlib.suppress(Exception):
                await stop()
        # Leaving the group at once lets another worker take the partitions without waiting for
        # the session to expire; what was not committed is handled again there.
        for client in (self.consumer, self._restorer, self.producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        for table in self.tables.values():
            table.close()
        mark_stalled(self, None)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, app: StreamApp):
        self.app = app

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self.app._revoked(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self.app._assigned(assigned)
