"""The whole pipeline in one thread, without a broker: the services' own handlers chained through
topics held in lists, and their tables in memory.

An event published here is planned by both planners (``services.planning.handlers.handle_event``,
each with its scopes; what they cannot plan is dead-lettered, as the agents do), its tasks and the status changes published after it are kept by
reporting's handlers (``services.reporting.handlers``) in a ``TaskStore``, the deadline sweep fires
through the ledger's ``fire_due``, and each notification request is routed to its recipients by
the notifier's domain (``services.domain.mail``). Scenario tests of the whole pipeline run at
unit-test speed here; the broker tests keep what needs a broker (crash, restart, rebalance).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from zoneinfo import ZoneInfo

from schemas.events import Envelope
from schemas.notifications import NotificationRequest
from schemas.status import TaskStatusChange
from schemas.topics import EVENTS, NOTIFICATIONS, TASK_STATUS
from schemas.wire import event_to_kafka, model_from_kafka, model_to_kafka
from services.adapters.provider_store import ProviderStore
from services.domain.ledger import Overlay, TaskRecord, fire_due
from services.domain.mail import MailPlan, ProviderContacts, fold, route
from services.domain.planner import Planner
from services.orgstructure.app import SCOPES as ORGSTRUCTURE
from services.permissions.app import SCOPES as PERMISSIONS
from services.planning.handlers import handle_event
from services.reporting.handlers import Context, decode, handle
from services.reporting.store import TaskStore
from services.runtime.deadletter import handle_or_dead_letter
from services.runtime.settings import Settings
from services.runtime.streams import Outgoing, Received
from services.runtime.tables import Table


class MemorySystem:
    def __init__(self, planner: Planner, now: dt.datetime, settings: Settings | None = None):
        self.planner = planner
        self.now = now
        self.settings = settings or Settings()
        self.topics: dict[str, list[Received]] = defaultdict(list)
        self._read: dict[tuple[str, str], int] = defaultdict(int)  # (reader, topic) -> next offset
        self.planners = {name: (ProviderStore(Table(f"{name}-state", f"{name}-changelog")), scopes)
                         for name, scopes in (("orgstructure", ORGSTRUCTURE), ("permissions", PERMISSIONS))}
        self.tasks = TaskStore(Table("tasks", "tasks-changelog"))
        self.providers = ProviderStore(Table("provider-state", "reporting-changelog"))
        self.contacts: dict[str, ProviderContacts] = {}
        self.mails: list[tuple[NotificationRequest, MailPlan]] = []

    # -- what goes in ------------------------------------------------------------------------------

    def publish(self, event: Envelope) -> None:
        self._append(Outgoing(EVENTS, *event_to_kafka(event)))

    def change_status(self, change: TaskStatusChange) -> None:
        self._append(Outgoing(TASK_STATUS, *model_to_kafka(change, change.provider_id, None)))

    def sweep(self, now: dt.datetime) -> None:
        """The reporting worker's deadline sweep at ``now``."""
        self.now = now
        today = now.astimezone(ZoneInfo(self.settings.timezone)).date()
        taken = self.tasks.due_keys(today)
        for provider_id, records in sorted(self.tasks.read(taken).items()):
            fired, requests = fire_due(provider_id, records, today, now)
            for record in fired.values():
                self.tasks.put(record, None)
            for request in requests:
                self._append(Outgoing(NOTIFICATIONS, *model_to_kafka(request, provider_id, request.correlation_id)))
        self.tasks.table.apply_staged()
        self.tasks.requeue(taken)

    def run(self) -> None:
        """Deliver every message to every service reading its topic, until nothing is left."""
        moved = True
        while moved:
            moved = self._step()

    # -- the services ------------------------------------------------------------------------------

    def _step(self) -> bool:
        moved = False
        for name, (store, scopes) in self.planners.items():
            for received in self._unread(name, EVENTS):
                outcome, rejected = handle_or_dead_letter(
                    name, received, lambda r: handle_event(decode(r), None, store.state, self.planner, scopes),
                    "event")  # fmt: skip
                if rejected is not None:  # as the agents do: recorded, and on to the next
                    self._append(rejected)
                    moved = True
                    continue
                if outcome.changes is not None:
                    store.write(outcome.changes, received.partition)
                store.table.apply_staged()
                for message in outcome.messages:
                    self._append(message)
                moved = True
        for topic in sorted(self.topics):
            if topic == EVENTS or topic == TASK_STATUS or topic.startswith("omboard.tasks."):
                for received in self._unread("reporting", topic):
                    self._report(received)
                    moved = True
        for received in self._unread("notifier", EVENTS):
            event = decode(received)
            if (updated := fold(self.contacts.get(event.provider_id), event)) is not None:
                self.contacts[event.provider_id] = updated
        for received in self._unread("notifier", NOTIFICATIONS):
            request = model_from_kafka(NotificationRequest, received.value)
            known = self.contacts.get(request.provider_id)
            contacts = request.contacts if request.contacts is not None else (known.contacts if known else [])
            self.mails.append((request, route(contacts, request, self.settings)))
            moved = True
        return moved

    def _report(self, received: Received) -> None:
        changed: dict[str, TaskRecord] = {}
        effect = handle(decode(received), Context(Overlay(self.tasks, changed), self.providers.state, self.planner,
                                                  self.now))
        if effect.state is not None:
            self.providers.write(effect.state, received.partition)
            self.providers.table.apply_staged()
        for record in effect.records.values():
            self.tasks.put(record, received.partition)
        self.tasks.table.apply_staged()
        for request in effect.requests:
            self._append(Outgoing(NOTIFICATIONS, *model_to_kafka(request, request.provider_id, request.correlation_id)))

    # -- the topics --------------------------------------------------------------------------------

    def _append(self, message: Outgoing) -> None:
        log = self.topics[message.topic]
        log.append(Received(message.topic, 0, len(log), message.key, message.value, tuple(message.headers)))

    def _unread(self, reader: str, topic: str) -> list[Received]:
        log = self.topics.get(topic, [])
        start = self._read[(reader, topic)]
        self._read[(reader, topic)] = len(log)
        return log[start:]

    def records(self, provider_id: str) -> dict[str, TaskRecord]:
        """Reporting's record of every task of ``provider_id``."""
        found = {}
        for key, raw in self.tasks.table.items():
            record = TaskRecord.model_validate_json(raw)
            if record.task.subject.provider_id == provider_id:
                found[key.decode()] = record
        return found
