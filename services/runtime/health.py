"""Liveness, readiness and metrics pages on each worker's Faust web server.

A crashed agent leaves its worker running and idle, so readiness looks at the agents themselves,
not just at the process.
"""

from __future__ import annotations

import faust
from faust.web import Request, Response, View

from services.runtime import metrics
from services.runtime.streams import stalled


def crashed_agents(app: faust.App) -> list[str]:
    """Agents with no live actor: Faust leaves the worker running and idle, so only a restart
    brings them back."""
    problems = []
    for name, agent in app.agents.items():
        actors = list(agent._actors)  # Faust keeps no public list; this is what its supervisor watches
        if not actors:
            problems.append(f"agent {name} has no running actor")
        for actor in actors:
            task = getattr(actor, "actor_task", None)
            if actor.crashed or (task is not None and task.done()):
                problems.append(f"agent {name} crashed")
    return problems


def readiness_problems(app: faust.App) -> list[str]:
    problems = []
    if getattr(app, "rebalancing", False):
        problems.append("rebalancing")
    if getattr(app, "in_recovery", False):
        problems.append("recovering tables")
    try:
        assigned = app.consumer.assignment()
    except Exception:  # noqa: BLE001 - no consumer yet means not ready, whatever the reason
        assigned = set()
    if not assigned:
        problems.append("no partitions assigned yet")
    if why := stalled(app):
        problems.append(f"stalled: {why}")
    return problems + crashed_agents(app)


def consumer_lag(app: faust.App) -> dict[str, int]:
    """Messages not yet read, per topic, over this worker's assigned partitions."""
    consumer = app.consumer
    lag: dict[str, int] = {}
    for tp in consumer.assignment():
        if tp.topic.endswith("-changelog"):
            continue  # read only during recovery
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        read = consumer._read_offset.get(tp)  # Faust keeps no public read position
        position = read + 1 if read is not None else (consumer._committed_offset.get(tp) or 0)
        lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - position)
    return lag


def install_health(app: faust.App, service: str) -> None:
    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            body, content_type = metrics.exposition()
            return self.bytes(body, content_type=content_type.split(";")[0])

    @app.timer(5.0, name=f"{service}-lag")
    async def measure_lag() -> None:
        try:
            lags = consumer_lag(app)
        except Exception:  # noqa: BLE001 - no consumer yet: nothing to measure
            return
        for topic, value in lags.items():
            metrics.CONSUMER_LAG.labels(service, topic).set(value)

    @app.page("/healthz")
    class Health(View):
        # Liveness: a crashed agent is a broken process (Faust keeps it running, idle), so an
        # orchestrator should restart it. Rebalancing or recovering is only "not ready".
        async def get(self, request: Request) -> Response:
            crashed = [problem for problem in crashed_agents(app) if "crashed" in problem]
            if crashed:
                return self.json({"status": "broken", "problems": crashed}, status=503)
            return self.json({"status": "ok"})

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            problems = readiness_problems(app)
            if problems:
                return self.json({"status": "not ready", "problems": problems}, status=503)
            return self.json({"status": "ready"})
