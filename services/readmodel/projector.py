"""The projection: a reporting worker's task changelog followed into the read model.

Each reporting worker projects the changelog partitions of the input partitions it holds, from
where PostgreSQL says that partition was projected to (``projection_positions``), in
transactions of up to a few thousand records. The changelog is the truth and the read model its
copy: a projector that stops (a kill, a rebalance, the database away) resumes from the stored
position, and replays write the same rows (``services.readmodel.projection``).

While the database cannot be reached the worker goes on recording its tasks; the projection falls
behind, readiness says "read model behind", and it catches up when the database returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import ValidationError

from services.readmodel.migrate import migrate
from services.readmodel.projection import ChangelogRecord, positions, project
from services.runtime import metrics
from services.runtime.broker import aiokafka_client_config, bootstrap_servers
from services.runtime.deadletter import reason_of

log = logging.getLogger(__name__)

#: Seconds between attempts while the database cannot be reached.
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)
#: A projection that has not reached where its changelog ended this many seconds ago is reported.
BEHIND_AFTER = 30.0
#: Seconds between measurements of where the changelog ends.
MEASURE_EVERY = 1.0

UNREACHABLE = (psycopg.OperationalError, PoolTimeout)
#: How a batch is written: ``project`` (task records), ``project_holdings`` or ``project_verdicts``.
Apply = Callable[[psycopg.AsyncConnection, str, Sequence[ChangelogRecord]], Awaitable[None]]


class Projector:
    """Follows ``changelog`` (the worker's task changelog; or, with ``apply=project_holdings``,
    ``omboard.holdings``, with ``apply=project_verdicts``, ``omboard.verdicts``) on the partitions
    the worker holds, into the read model."""

    def __init__(self, app: Any, changelog: str, pool: AsyncConnectionPool, apply: Apply = project):
        self.app = app
        self.changelog = changelog
        self.pool = pool
        self.apply = apply
        self.unreachable: str | None = "not started"  # why the database cannot be written now
        self.projected: dict[int, int] = {}  # changelog partition -> next offset to project
        #: when the changelog's ends were last measured, and what they were
        self._target: tuple[float, dict[int, int]] | None = None
        self._caught_up_at = time.monotonic()  # the projection had reached the ends measured then
        self._measured_at = 0.0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._partitions: frozenset[int] = frozenset()

    # -- readiness ---------------------------------------------------------------------------------

    def problem(self, now: float | None = None) -> str | None:
        """Why the read model does not show what the worker recorded, if it does not. Under a
        steady stream the projection trails by a batch; it is behind only when it has not reached,
        for ``BEHIND_AFTER`` seconds, where the changelog ended back then."""
        if self.unreachable:
            return f"read model behind: {self.unreachable}"
        now = time.monotonic() if now is None else now
        if now - self._caught_up_at > BEHIND_AFTER:
            return (f"read model behind: {self.behind()} changelog record(s) to project; it has not caught up "
                    f"for {now - self._caught_up_at:.0f}s")
        return None

    def behind(self) -> int:
        ends = self._target[1] if self._target else {}
        return sum(max(0, end - self.projected.get(p, 0)) for p, end in ends.items() if p in self._partitions)

    # -- running -----------------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.app.settings
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(settings.kafka_bootstrap), client_id=f"{self.app.id}-projector-{self.changelog}",
            group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            **aiokafka_client_config(settings))
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"{self.app.service}-projector-{self.changelog}")
        self._task.add_done_callback(self._died)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.remove_done_callback(self._died)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        with contextlib.suppress(Exception):
            await self.pool.close()

    def _died(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.app.crashed = f"read model projection of {self.changelog} crashed: {reason_of(task.exception())}"
            log.error("%s: %s", self.app.service, self.app.crashed, exc_info=task.exception())

    async def _run(self) -> None:
        attempt = 0
        migrated = False
        while True:
            try:
                if not migrated:
                    await self.pool.open(wait=False)
                    async with self.pool.connection() as conn:
                        applied = await migrate(conn)
                    if applied:
                        log.info("read model: applied migration(s) %s", ", ".join(applied))
                    migrated = True
                await self._follow()
            except (*UNREACHABLE, KafkaError) as error:
                what = "its changelog cannot be read" if isinstance(error, KafkaError) else "its database cannot be reached"
                if self.unreachable != what:
                    log.warning("read model: %s (%s); the projection falls behind and catches up when it can",
                                what, type(error).__name__)
                self.unreachable = what
                self._partitions = frozenset()  # positions are read again once it answers
                await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
                attempt += 1
            else:
                attempt = 0

    async def _follow(self) -> None:
        """Project until the database fails (raises) or is cancelled."""
        assert self._consumer is not None
        while True:
            wanted = frozenset(tp.partition for tp in self.app.assigned)
            if wanted != self._partitions:
                await self._seek(wanted)
            if not self._partitions:
                self.unreachable = None
                await asyncio.sleep(0.2)
                continue
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=self.app.settings.projection_batch_size)
            records = [
                ChangelogRecord(tp.partition, message.offset, message.value, message.key.decode())
                for tp, messages in fetched.items() if tp.partition in self._partitions
                for message in messages if message.key is not None
            ]
            if records:
                await self._project(records)
                for record in records:
                    self.projected[record.partition] = max(self.projected.get(record.partition, 0), record.offset + 1)
            self.unreachable = None
            await self._measure()

    async def _project(self, records: list[ChangelogRecord]) -> None:
        """Project ``records``; one that cannot be read as a task is logged, counted and passed over
        (it stays in the changelog, and the worker's table has it), the rest projected."""
        try:
            async with self.pool.connection() as conn:
                await self.apply(conn, self.changelog, records)
            return
        except (ValueError, ValidationError):
            pass
        for record in records:
            try:
                async with self.pool.connection() as conn:
                    await self.apply(conn, self.changelog, [record])
            except (ValueError, ValidationError) as error:
                log.error("read model: %s[%d]@%d cannot be read, not projected: %s", self.changelog,
                          record.partition, record.offset, reason_of(error))
                metrics.READ_MODEL_SKIPPED.inc()
                async with self.pool.connection() as conn:  # past it, so it is not read again
                    await self.apply(conn, self.changelog, [ChangelogRecord(record.partition, record.offset, None, "")])

    async def _seek(self, partitions: frozenset[int]) -> None:
        assert self._consumer is not None
        async with self.pool.connection() as conn:
            stored = await positions(conn, self.changelog)
        tps = [TopicPartition(self.changelog, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        for tp in tps:
            self._consumer.seek(tp, stored.get(tp.partition, 0))
            self.projected[tp.partition] = stored.get(tp.partition, 0)
        self._partitions = partitions
        self._target = None

    async def _measure(self) -> None:
        """Note when the projection reached the ends last measured, and measure them again."""
        assert self._consumer is not None
        now = time.monotonic()
        if self._target is not None and not self.behind():
            self._caught_up_at = self._target[0]
            self._target = None
        if self._target is None and now - self._measured_at >= MEASURE_EVERY:
            tps = [TopicPartition(self.changelog, p) for p in sorted(self._partitions)]
            ends = await self._consumer.end_offsets(tps)
            self._target = (now, {tp.partition: offset for tp, offset in ends.items()})
            self._measured_at = now
