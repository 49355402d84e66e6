"""Liveness and readiness pages on each worker's Faust web server.

A crashed agent leaves its worker running and idle, so readiness looks at the agents themselves,
not just at the process.
"""

from __future__ import annotations

import faust
from faust.web import Request, Response, View


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
    for name, agent in app.agents.items():
        actors = list(agent._actors)  # Faust keeps no public list; this is what its supervisor watches
        if not actors:
            problems.append(f"agent {name} has no running actor")
        for actor in actors:
            task = getattr(actor, "actor_task", None)
            if actor.crashed or (task is not None and task.done()):
                problems.append(f"agent {name} crashed")
    return problems


def install_health(app: faust.App) -> None:
    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            problems = readiness_problems(app)
            if problems:
                return self.json({"status": "not ready", "problems": problems}, status=503)
            return self.json({"status": "ready"})
