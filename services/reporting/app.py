"""reporting: the task ledger in a table, status changes, and the deadline sweep."""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from schemas.catalog import load_catalog
from schemas.notifications import NotificationRequest
from schemas.topics import EVENTS, NOTIFICATIONS, TASK_STATUS
from schemas.wire import model_to_kafka
from services.planning.handlers import decode_state, task_message
from services.planning.planner import Planner
from services.planning.state import ProviderState
from services.reporting.api import install_status_api
from services.reporting.handlers import HANDLERS, Context, Effect
from services.reporting.ledger import Ledger, notifications_due
from services.reporting.stats import LedgerStats
from services.runtime import metrics
from services.runtime.clock import Clock, clock_from_settings
from services.runtime.deadletter import handle_or_dead_letter
from services.runtime.metrics import metric_event_type
from services.runtime.settings import Settings
from services.runtime.stream_app import StreamApp
from services.runtime.streams import Outgoing, Received, RecordTooLarge, check_fits, one_at_a_time, send_all
from services.runtime.tables import Table

log = logging.getLogger(__name__)
SERVICE = "reporting"


class LedgerStore:
    """The ``ledgers`` table plus what is derived from it in memory: which provider has work on
    which date (so a sweep visits only providers with something due), which provider owns which
    task (for the status API), and the open/overdue counts for metrics."""

    def __init__(self, table: Table):
        self.table = table
        self.stats = LedgerStats()
        self._next: dict[str, dt.date] = {}
        self._heap: list[tuple[dt.date, str]] = []
        self._owner: dict[str, str] = {}  # task id -> provider id

    def load(self, provider_id: str) -> Ledger:
        raw = self.table.get(provider_id.encode())
        return Ledger.model_validate_json(raw) if raw else Ledger(provider_id=provider_id)

    def provider_of(self, task_id: str) -> str | None:
        return self._owner.get(task_id)

    def ledgers(self) -> list[Ledger]:
        return [Ledger.model_validate_json(raw) for raw in list(self.table.values())]

    def store(self, ledger: Ledger, before: Ledger | None = None, encoded: bytes | None = None,
              partition: int | None = None) -> None:
        """Stage the ledger on ``partition`` (that of the message that changed it; a ledger
        already here stays where it is) and index it."""
        self.table.set(ledger.provider_id.encode(), encoded or ledger.model_dump_json().encode(), partition)
        self._index(ledger, before)

    def _index(self, ledger: Ledger, before: Ledger | None) -> None:
        self.stats.replace(before, ledger)
        for task_id in ledger.tasks:
            self._owner[task_id] = ledger.provider_id
        upcoming = ledger.next_date()
        if upcoming is None:
            self._next.pop(ledger.provider_id, None)
        elif self._next.get(ledger.provider_id) != upcoming:
            self._next[ledger.provider_id] = upcoming
            heapq.heappush(self._heap, (upcoming, ledger.provider_id))

    def rebuild(self) -> None:
        """After partitions moved, derive everything again from the table as restored."""
        self.stats = LedgerStats()
        self._next.clear()
        self._heap.clear()
        self._owner.clear()
        for ledger in self.ledgers():
            self._index(ledger, None)

    def due(self, today: dt.date) -> list[str]:
        """Providers with a reminder or escalation reached by ``today``: costs what is due, not
        what is open (entries superseded by a later store are skipped lazily)."""
        found = []
        while self._heap and self._heap[0][0] <= today:
            day, provider_id = heapq.heappop(self._heap)
            if self._next.get(provider_id) == day:
                found.append(provider_id)
        return found


def build(settings: Settings, clock: Clock | None = None, **app_options) -> StreamApp:
    app = StreamApp(SERVICE, settings, **app_options)
    clock = clock or clock_from_settings(settings.clock_file, settings.timezone)
    zone = ZoneInfo(settings.timezone)
    # Keyed by provider id like the task topics, on the partition of the provider's tasks.
    store = LedgerStore(app.table("ledgers"))
    # The provider facts monthly reports need, folded from the events like the planners do.
    providers = app.table("providers")
    planner = Planner(load_catalog(settings.catalog_path))
    install_status_api(app, store, settings, clock, planner.catalog)  # on settings.status_port, after restore
    opened_month: str | None = None  # the last month whose service reports this worker opened

    def load_state(provider_id: str) -> ProviderState:
        return decode_state(providers.get(provider_id.encode()), provider_id)

    @app.on_assigned
    async def _partitions_moved(assigned) -> None:
        store.rebuild()

    @app.agent(*HANDLERS, name="reporting-ledger")
    async def keep_ledger(batch: list[Received]) -> list[Outgoing]:
        outgoing: list[Outgoing] = []
        now = clock.now()
        changed: dict[str, tuple[Ledger, Ledger, int]] = {}  # provider -> (before, after, partition)
        encoded: dict[str, bytes] = {}  # provider -> the ledger as it will be stored

        def load(provider_id: str) -> Ledger:
            return changed[provider_id][1] if provider_id in changed else store.load(provider_id)

        ctx = Context(load, load_state, planner, now)

        def handle(received: Received) -> Checked:
            checked = _checked(HANDLERS[received.topic](received, ctx))
            if checked.effect.state is not None:
                pid = checked.effect.state.provider_id
                providers.set(pid.encode(), checked.state, received.partition)
            return checked

        async for received in one_at_a_time(batch):
            checked, rejected = handle_or_dead_letter(SERVICE, received, handle, _kind(received))
            if checked is None:
                outgoing.append(rejected)
                continue
            effect = checked.effect
            if effect.ledger is not None:
                provider_id = effect.ledger.provider_id
                before = changed[provider_id][0] if provider_id in changed else store.load(provider_id)
                changed[provider_id] = (before, effect.ledger, received.partition)
                encoded[provider_id] = checked.ledger
            outgoing += checked.messages
            _count(effect)
        # Staged here, recorded by the runtime after the requests are produced: after a crash the
        # same requests (same ids) are asked again, and the notifier sends each once.
        for provider_id, (before, after, partition) in changed.items():
            store.store(after, before, encoded[provider_id], partition)
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
            for raw in list(providers.values())
            for task in planner.plan_monthly_reports(ProviderState.model_validate_json(raw), month)
            if store.provider_of(task.id) is None  # the in-memory index: no ledger is read per task
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
        for provider_id in store.due(today):
            before = store.load(provider_id)
            ledger, requests = notifications_due(before, today, now)
            try:
                checked = _checked(Effect(ledger=ledger, requests=requests))
            except RecordTooLarge as error:
                # Nothing is asked that could not be recorded as asked (it would be asked
                # again on every sweep); the ledger stays as it was, and says so each sweep.
                log.error("reporting: reminders for provider %s held back: %s", provider_id, error)
                metrics.RECORDS_TOO_LARGE.labels(SERVICE).inc()
                continue
            # Asked, then recorded as asked (the runtime records the staged ledger after this).
            await send_all(app, checked.messages)
            store.store(ledger, before, checked.ledger)
            for request in requests:
                metrics.NOTIFICATIONS_REQUESTED.labels(request.kind).inc()
        store.stats.publish(today)
        metrics.SWEEP_SECONDS.observe(time.perf_counter() - started)

    return app


@dataclass(frozen=True)
class Checked:
    """An effect with what it writes already encoded and measured against the record limit."""

    effect: Effect
    messages: list[Outgoing]
    ledger: bytes | None
    state: bytes | None


def _checked(effect: Effect) -> Checked:
    """Encode what ``effect`` writes; RecordTooLarge if any of it would not fit in a record, so the
    message behind it is dead-lettered and the rest of the batch goes on (issue 9 makes state per
    task, so that a provider's ledger no longer grows with its work)."""
    messages = [_request_message(request).checked() for request in effect.requests]
    ledger = state = None
    if effect.ledger is not None:
        pid = effect.ledger.provider_id
        ledger = check_fits(f"the ledger of provider {pid}", pid.encode(), effect.ledger.model_dump_json().encode())
    if effect.state is not None:
        pid = effect.state.provider_id
        state = check_fits(f"the facts of provider {pid}", pid.encode(), effect.state.model_dump_json().encode())
    return Checked(effect, messages, ledger, state)


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
        if change.status == "done" and effect.ledger is not None:
            task = effect.ledger.tasks[change.task_id].task
            metrics.TASKS_COMPLETED.labels(task.system, task.responsible).inc()


def _request_message(request: NotificationRequest) -> Outgoing:
    return Outgoing(NOTIFICATIONS, *model_to_kafka(request, request.provider_id, request.correlation_id))
