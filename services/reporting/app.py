"""reporting: the task ledger in a Faust table and the deadline sweep that asks for reminders."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from zoneinfo import ZoneInfo

import faust

from schemas.notifications import NotificationRequest
from schemas.tasks import Task
from schemas.topics import NOTIFICATIONS, TASK_TOPICS
from schemas.wire import model_from_kafka, model_to_kafka
from services.reporting.ledger import Ledger, record_task, reminders_due
from services.runtime.clock import Clock, clock_from_settings
from services.runtime.deadletter import dead_letter
from services.runtime.faust_app import create_app
from services.runtime.settings import Settings
from services.runtime.streams import Outgoing, batches, send_all

log = logging.getLogger(__name__)
SERVICE = "reporting"


def build(settings: Settings, clock: Clock | None = None, **app_options) -> faust.App:
    app = create_app(SERVICE, settings, **app_options)
    clock = clock or clock_from_settings(settings.clock_file, settings.timezone)
    zone = ZoneInfo(settings.timezone)
    tasks_in = app.topic(*TASK_TOPICS, key_serializer="raw", value_serializer="raw")
    ledgers = app.Table(
        "ledgers", key_type=bytes, value_type=bytes,
        use_partitioner=True,
    )
    # The ledger agent and the sweep both rewrite a provider's ledger across awaits.
    ledger_lock = asyncio.Lock()
    # provider id -> the earliest date a sweep has work for it, so a sweep visits only providers
    # with something due. Rebuilt from the table whenever partitions move between workers.
    next_due: dict[str, dt.date] = {}
    index_stale = True

    def load(provider_id: str) -> Ledger:
        raw = ledgers.get(provider_id.encode())
        return Ledger.model_validate_json(raw) if raw else Ledger(provider_id=provider_id)

    def store(ledger: Ledger) -> None:
        ledgers[ledger.provider_id.encode()] = ledger.model_dump_json().encode()
        upcoming = ledger.next_reminder()
        if upcoming is None:
            next_due.pop(ledger.provider_id, None)
        else:
            next_due[ledger.provider_id] = upcoming

    @app.on_rebalance_complete.connect
    async def _partitions_moved(sender, **kwargs) -> None:
        nonlocal index_stale
        index_stale = True

    @app.agent(tasks_in, concurrency=1, name="reporting-ledger")
    async def record_tasks(stream):
        async for batch in batches(stream, 500, 0.05):
            rejected: list[Outgoing] = []
            async with ledger_lock:
                updated: dict[str, Ledger] = {}
                for received in batch:
                    try:
                        task = model_from_kafka(Task, received.value)
                    except Exception as error:  # noqa: BLE001 - recorded, and the agent goes on
                        rejected.append(dead_letter(SERVICE, received, f"{type(error).__name__}: {error}"))
                        continue
                    provider_id = task.subject.provider_id
                    ledger, added = record_task(updated.get(provider_id) or load(provider_id), task)
                    if added:
                        updated[provider_id] = ledger
                for ledger in updated.values():
                    store(ledger)
            await send_all(app, rejected)

    @app.timer(settings.sweep_interval, name="reporting-sweep")
    async def sweep() -> None:
        nonlocal index_stale
        if app.in_recovery:
            return  # the table is still being restored; an index built now would miss providers
        now = clock.now()
        today = now.astimezone(zone).date()
        async with ledger_lock:
            if index_stale:
                next_due.clear()
                for key, raw in list(ledgers.items()):
                    upcoming = Ledger.model_validate_json(raw).next_reminder()
                    if upcoming is not None:
                        next_due[key.decode()] = upcoming
                index_stale = False
            for provider_id in [pid for pid, day in next_due.items() if day <= today]:
                ledger, requests = reminders_due(load(provider_id), today, now)
                # Ask first, then record: after a crash the same requests (same ids) are asked
                # again and the notifier sends each once.
                await send_all(app, [_request_message(request) for request in requests])
                store(ledger)
                if requests:
                    log.info("reminded %d party(ies) of provider %s", len(requests), provider_id)

    app.service_agents = [record_tasks]
    return app


def _request_message(request: NotificationRequest) -> Outgoing:
    return Outgoing(NOTIFICATIONS, *model_to_kafka(request, request.provider_id, request.correlation_id))
