"""reporting: the tasks in a table (a record each), status changes, and the deadline sweep."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from schemas.notifications import NotificationRequest
from schemas.topics import EVENTS, HOLDINGS, NOTIFICATIONS, TASK_STATUS, VERDICTS
from schemas.wire import model_to_kafka
from services.adapters.messages import task_message
from services.adapters.provider_store import ProviderStore
from services.domain.ledger import Overlay, TaskRecord, fire_due
from services.domain.planner import Planner
from services.readmodel.pool import connection_pool
from services.readmodel.projection import project_holdings, project_verdicts
from services.readmodel.projector import Projector
from services.readmodel.reader import PostgresReader
from services.reporting.api import install_status_api
from services.reporting.handlers import TOPICS, Context, Effect, decode, handle
from services.reporting.store import TaskStore
from services.runtime import metrics
from services.runtime.clock import Clock, clock_from_settings
from services.runtime.deadletter import handle_each
from services.runtime.metrics import metric_event_type
from services.runtime.settings import Settings
from services.runtime.stream_app import StreamApp
from services.runtime.streams import Outgoing, Received, RecordTooLarge, send_all

log = logging.getLogger(__name__)
SERVICE = "reporting"


def build(settings: Settings, planner: Planner, clock: Clock | None = None, **app_options) -> StreamApp:
    app = StreamApp(SERVICE, settings, **app_options)
    clock = clock or clock_from_settings(settings.clock_file, settings.timezone)
    zone = ZoneInfo(settings.timezone)
    # One record per task, on the partition of the task's provider; on disk: a municipality's
    # million open tasks took 1.8 GB in memory (make bench-scale).
    store = TaskStore(app.table("tasks", on_disk=True))
    # The provider facts monthly reports need, folded from the events like the planners do.
    providers = ProviderStore(app.table("provider-state"))
    # The read model: every task projected into PostgreSQL, which the status API reads.
    pool = connection_pool(settings)
    projector = Projector(app, store.table.changelog, pool)
    app.readiness_check(projector.problem)
    app.server("read model projection", projector.start, projector.stop)
    # And the places people took in their units' orders, for the access register (its own pool:
    # each projector closes its pool when it stops).
    holdings = Projector(app, HOLDINGS, connection_pool(settings), apply=project_holdings)
    app.readiness_check(holdings.problem)
    app.server("read model projection of holdings", holdings.start, holdings.stop)
    # And each plan's verdict on its date, the latest per subject, for the status page's dates at risk.
    verdicts = Projector(app, VERDICTS, connection_pool(settings), apply=project_verdicts)
    app.readiness_check(verdicts.problem)
    app.server("read model projection of verdicts", verdicts.start, verdicts.stop)
    install_status_api(app, PostgresReader(pool), settings, clock, planner.catalog)  # after restore
    opened_month: str | None = None  # the last month whose service reports this worker opened

    @app.on_assigned
    async def _partitions_moved(assigned) -> None:
        providers.rebuild()  # the tasks' indexes are kept as their records are restored

    @app.agent(*TOPICS, name="reporting-ledger")
    async def keep_ledger(batch: list[Received]) -> list[Outgoing]:
        outgoing: list[Outgoing] = []
        changed: dict[str, TaskRecord] = {}  # task id -> its record after the batch so far
        placed: dict[str, tuple[int, bytes]] = {}  # task id -> (partition, the record encoded)
        ctx = Context(Overlay(store, changed), providers.state, planner, clock.now())

        def record(received: Received) -> Checked:
            checked = _checked(handle(decode(received), ctx))
            if checked.effect.state is not None:
                providers.write(checked.effect.state, received.partition, checked.state)
            return checked

        async for received, checked in handle_each(SERVICE, batch, record, _kind, outgoing):
            for task_id, record in checked.effect.records.items():
                changed[task_id] = record
                placed[task_id] = (received.partition, checked.records[task_id])
            outgoing += checked.messages
            _count(checked.effect)
        # Staged here, recorded by the runtime after the requests are produced: after a crash the
        # same requests (same ids) are asked again, and the notifier sends each once.
        for task_id, record in changed.items():
            partition, encoded = placed[task_id]
            store.put(record, partition, encoded)
        return outgoing

    async def open_monthly_reports(today: dt.date) -> None:
        """On the first sweep of a month, open last month's service-report tasks (SB3) for every
        provider here, by publishing them like any task: the ledger adds each id once."""
        nonlocal opened_month
        month = (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
        if month == opened_month:
            return
        tasks = [
            task
            for provider_id in providers.provider_ids()
            for task in planner.plan_monthly_reports(providers.state(provider_id), month)
            if task.id not in store
        ]
        await send_all(app, [task_message(task, task.correlation_id or task.plan_id) for task in tasks])
        opened_month = month
        if tasks:
            log.info("opened %d service-report task(s) for %s", len(tasks), month)

    @app.timer(settings.sweep_interval, name="reporting-sweep")
    async def sweep() -> None:
        started = time.perf_counter()
        now = clock.now()
        today = now.astimezone(zone).date()
        await open_monthly_reports(today)
        taken = store.due_keys(today)
        try:
            for provider_id, records in sorted(store.read(taken).items()):
                await _fire(provider_id, records, today, now)
        finally:
            store.requeue(taken)  # what did not fire (an error, a record too large) comes again next sweep
        for (system, responsible), (opened, overdue) in store.stats.counts(today).items():
            metrics.TASKS_OPEN.labels(system, responsible).set(opened)
            metrics.TASKS_OVERDUE.labels(system, responsible).set(overdue)
        metrics.SWEEP_SECONDS.observe(time.perf_counter() - started)

    async def _fire(provider_id: str, records: list[TaskRecord], today: dt.date, now: dt.datetime) -> None:
        fired, requests = fire_due(provider_id, records, today, now)
        try:
            checked = _checked(Effect(records=fired, requests=requests))
        except RecordTooLarge as error:
            # Nothing is asked that could not be recorded as asked (it would be asked again on
            # every sweep); the tasks stay as they were, and say so each sweep.
            log.error("reporting: reminders for provider %s held back: %s", provider_id, error)
            metrics.RECORDS_TOO_LARGE.labels(SERVICE).inc()
            return
        # Asked, then recorded as asked (the runtime records the staged records after this).
        await send_all(app, checked.messages)
        for task_id, record in fired.items():
            store.put(record, None, checked.records[task_id])
        for request in requests:
            metrics.NOTIFICATIONS_REQUESTED.labels(request.kind).inc()

    return app


@dataclass(frozen=True)
class Checked:
    """An effect with what it writes already encoded and measured against the record limit."""

    effect: Effect
    messages: list[Outgoing]
    records: dict[str, bytes]  # task id -> its record as stored
    state: list[tuple[bytes, bytes]] | None  # the provider-state records


def _checked(effect: Effect) -> Checked:
    """Encode what ``effect`` writes; RecordTooLarge if any of it would not fit in a record, so the
    message behind it is dead-lettered and the rest of the batch goes on."""
    messages = [_request_message(request).checked() for request in effect.requests]
    records = {task_id: TaskStore.encode(record) for task_id, record in effect.records.items()}
    state = ProviderStore.encode(effect.state) if effect.state is not None else None
    return Checked(effect, messages, records, state)


def _kind(received) -> str:
    """The ``type`` label: the event type on omboard.events, else what the topic carries."""
    if received.topic == EVENTS:
        return metric_event_type(received)
    return "TaskStatusChange" if received.topic == TASK_STATUS else "Task"


def _count(effect: Effect) -> None:
    for task in effect.created:
        metrics.TASKS_CREATED.labels(task.system, task.responsible).inc()
    for change in effect.changes:
        metrics.TASK_STATUS_CHANGES.labels(change.status).inc()
        if change.status == "done" and change.task_id in effect.records:
            record = effect.records[change.task_id]
            metrics.TASKS_COMPLETED.labels(record.task.system, record.task.responsible).inc()
            if record.late_by_days:
                metrics.COMPLETED_LATE.labels(record.task.system, record.task.obligation).inc()


def _request_message(request: NotificationRequest) -> Outgoing:
    return Outgoing(NOTIFICATIONS, *model_to_kafka(request, request.provider_id, request.correlation_id))
