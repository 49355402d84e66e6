"""The streaming side of a planning service: read events in batches, plan, store state, emit tasks.

orgstructure and permissions are the same machine with different scopes of rules.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from schemas.topics import EVENTS
from schemas.wire import correlation_id, event_from_kafka
from services.adapters.provider_store import ProviderStore
from services.domain.planner import Planner
from services.planning.handlers import Outcome, handle_event
from services.runtime import metrics
from services.runtime.deadletter import handle_each
from services.runtime.settings import Settings
from services.runtime.stream_app import StreamApp
from services.runtime.streams import Outgoing, Received

log = logging.getLogger(__name__)


def build_planning_app(service: str, scopes: Collection[str], settings: Settings, planner: Planner,
                       **app_options) -> StreamApp:
    app = StreamApp(service, settings, **app_options)
    # One record per entity of each provider, on the partition of the provider's events.
    store = ProviderStore(app.table("provider-state"))

    @app.on_assigned
    async def _partitions_moved(assigned) -> None:
        store.rebuild()

    def plan_one(received: Received) -> Outcome:
        event = event_from_kafka(received.value, received.headers)  # raises InvalidEvent, naming the field
        outcome = handle_event(event, correlation_id(received.headers), store.state, planner, scopes)
        # Measured here, so that what the producer would refuse is this event's dead letter.
        for message in outcome.messages:
            message.checked()
        if outcome.changes is not None:
            # Staged: the next event of this provider in the batch sees it; the runtime records
            # it only after the batch's tasks are produced, so a crash replays rather than loses.
            store.write(outcome.changes, received.partition)
        return outcome

    @app.agent(EVENTS, name=f"{service}-plan")
    async def plan_events(batch: list[Received]) -> list[Outgoing]:
        rejected: list[Outgoing] = []
        async for _, outcome in handle_each(service, batch, plan_one, metrics.metric_event_type, rejected):
            count(service, outcome)
            await app.emit(outcome.messages)  # produced while the rest of the batch is planned
        return rejected

    return app


def count(service: str, outcome: Outcome) -> None:
    for task in outcome.tasks:
        metrics.TASKS_PLANNED.labels(service, task.system).inc()
    for task in outcome.late:
        metrics.LATE_ORDERS.labels(service, task.system).inc()
    for warning in outcome.warnings:
        metrics.PLAN_WARNINGS.labels(service, warning.code).inc()
        if warning.code != "late-order":  # those are mailed at once, task by task
            # A warning names people by pseudonym only, never by HSA-id.
            log.warning("provider %s: %s %s: %s", outcome.provider_id, warning.code, warning.obligation, warning.message)
