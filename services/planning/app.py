"""The Faust side of a planning service: read events in batches, plan, store state, emit tasks.

orgstructure and permissions are the same machine with different scopes of rules.
"""

from __future__ import annotations

from collections.abc import Collection

import faust

from schemas.catalog import load_catalog
from schemas.topics import EVENTS
from services.planning.handlers import Outcome, handle_event
from services.planning.planner import Planner
from services.runtime import metrics
from services.runtime.deadletter import handle_or_dead_letter
from services.runtime.faust_app import create_app
from services.runtime.settings import Settings
from services.runtime.streams import Outgoing, Received, batches, check_fits, one_at_a_time, send_all

BATCH_SIZE = 500
BATCH_WITHIN = 0.05  # seconds: a lone event waits at most this long for company


def build_planning_app(service: str, scopes: Collection[str], settings: Settings, **app_options) -> faust.App:
    app = create_app(service, settings, **app_options)
    planner = Planner(load_catalog(settings.catalog_path))
    events = app.topic(EVENTS, key_serializer="raw", value_serializer="raw")
    # Keyed by provider id like the events; use_partitioner puts each key's changelog record on
    # the partition its events use, so a provider's state recovers on the worker that owns it.
    providers = app.Table("providers", key_type=bytes, value_type=bytes, use_partitioner=True)

    @app.agent(events, concurrency=1, name=f"{service}-plan")
    async def plan_events(stream):
        async for batch in batches(stream, BATCH_SIZE, BATCH_WITHIN):
            outgoing: list[Outgoing] = []
            states: dict[str, bytes] = {}

            def plan_one(received: Received) -> tuple[Outcome, bytes | None]:
                # The batch's own updates first: one provider's events can share a batch.
                outcome = handle_event(received, lambda pid: states.get(pid) or providers.get(pid.encode()),
                                       planner, scopes)
                # Measured here, so that what the producer would refuse is this event's dead
                # letter and not a crash that loses the whole batch.
                for message in outcome.messages:
                    message.checked()
                if outcome.state is None:
                    return outcome, None
                return outcome, check_fits(f"the planning state of provider {outcome.provider_id}",
                                           outcome.provider_id.encode(), outcome.state.model_dump_json().encode())

            async for received in one_at_a_time(batch):
                planned, rejected = handle_or_dead_letter(
                    service, received, plan_one, metrics.metric_event_type(received)
                )
                if planned is None:
                    outgoing.append(rejected)
                    continue
                outcome, state = planned
                for task in outcome.tasks:
                    metrics.TASKS_PLANNED.labels(service, task.system).inc()
                for task in outcome.late:
                    metrics.LATE_ORDERS.labels(service, task.system).inc()
                outgoing += outcome.messages
                if state is not None:
                    states[outcome.provider_id] = state
            # Send first, then record: a crash in between replays the batch, which yields the
            # same task ids (de-duplicated downstream) instead of losing tasks.
            await send_all(app, outgoing)
            for provider_id, state in states.items():
                providers[provider_id.encode()] = state
            # Table writes go through Faust's send buffer; make them durable before this batch
            # is acknowledged (when the next one is taken), so a kill right after the commit
            # cannot lose the record that says these events were processed.
            await app.producer.flush()

    return app

