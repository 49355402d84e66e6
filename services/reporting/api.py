"""The status API and page: every provider's checklist from the task ledger, and marking work done.

Served inside the reporting worker (the ledger is a table local to that worker), by a uvicorn
server in the worker's event loop on ``OMBOARD_STATUS_HOST:OMBOARD_STATUS_PORT`` (127.0.0.1:8001).
It starts once the tables are first restored; the worker owns SIGTERM/SIGINT and stops it.

Reads come from the local ledger. A status change is checked against the current ledger
(``check_move``), then published to ``omboard.task-status`` like any other system's change; the
reporting agent, the ledger's only writer, applies it, and the route waits (bounded) until the
ledger shows it. Every route needs an API key (``services.runtime.access``); a provider-admin key
sees only its own provider. People appear by pseudonym, never by HSA-id.

Routes: ``/v1/...`` (JSON) and, for people, ``/providers`` and ``/providers/{id}`` (server-rendered
HTML; see ``services/reporting/web.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from schemas.catalog import Catalog, load_catalog
from schemas.events import SystemId
from schemas.identifiers import pseudonym
from schemas.status import StatusRequest, TaskStatusChange
from schemas.tasks import Responsible, TaskStatus
from services.reporting.ledger import IllegalMove, Ledger, TaskRecord, UnknownTask, check_move, waiting_for
from services.runtime.access import (
    Forbidden,
    KeyRing,
    Principal,
    count_requests,
    install_validation_errors,
    require_key,
)
from services.runtime.clock import Clock
from services.runtime.settings import Settings

log = logging.getLogger(__name__)

#: Publishes one change to ``omboard.task-status`` (with the task's correlation id) and returns
#: once the broker acknowledged it.
Publish = Callable[[TaskStatusChange, str | None], Awaitable[None]]
POLL_SECONDS = 0.05


class LedgerReader(Protocol):
    """What the API needs of ``services.reporting.app.LedgerStore`` (read only)."""

    def load(self, provider_id: str) -> Ledger: ...
    def provider_of(self, task_id: str) -> str | None: ...
    def ledgers(self) -> list[Ledger]: ...


# -- views: what a person or a client sees of the ledger (pure) ------------------------------------


def task_view(record: TaskRecord, ledger: Ledger, today: dt.date) -> dict[str, Any]:
    task = record.task
    return {
        "id": task.id,
        "provider_id": ledger.provider_id,
        "provider_name": task.provider_name,
        "system": task.system,
        "status": record.status,
        "due": task.due.isoformat(),
        "overdue": record.overdue(today),
        "days_overdue": (today - task.due).days if record.overdue(today) else 0,
        "obligation": task.obligation,
        "action": task.action,
        "channel": task.channel,
        "responsible": task.responsible,
        "unit_id": task.subject.unit_id,
        "person": pseudonym(task.subject.person_id) if task.subject.person_id else None,
        "quantity": task.quantity,
        "instructions": task.instructions.model_dump(),
        "depends_on": list(task.depends_on),
        "waiting_for": waiting_for(ledger, record) if record.status == "blocked" else [],
        "catalog_version": task.catalog_version,
        "history": [entry.model_dump(mode="json") for entry in record.history],
    }


def order(record: TaskRecord, today: dt.date) -> tuple:
    """Overdue work first, then the rest of the active work, then what is finished; each by due date."""
    rank = 0 if record.overdue(today) else 1 if record.active else 2
    return (rank, record.task.due, record.task.system, record.task.obligation, record.task.id)


def provider_summary(ledger: Ledger, today: dt.date) -> dict[str, Any]:
    records = list(ledger.tasks.values())
    counts = {status: sum(1 for r in records if r.status == status) for status in ("open", "blocked", "done", "cancelled", "failed")}
    active_due = [r.task.due for r in records if r.active]
    name = next((r.task.provider_name for r in records if r.task.provider_name), None)
    total = len(records)
    finished = counts["done"] + counts["cancelled"]
    return {
        "id": ledger.provider_id,
        "name": name,
        "total": total,
        **counts,
        "overdue": sum(1 for r in records if r.overdue(today)),
        "next_due": min(active_due).isoformat() if active_due else None,
        "progress": round(100 * finished / total) if total else 100,
    }


def matches(record: TaskRecord, system: str | None, responsible: str | None, status: str | None) -> bool:
    task = record.task
    return ((system is None or task.system == system) and (responsible is None or task.responsible == responsible)
            and (status is None or record.status == status))


# -- the service behind the routes -------------------------------------------------------------------


@dataclass
class Outcome:
    status_code: int  # 200 applied (or nothing to change), 202 published but not yet shown
    changed: bool
    task: dict[str, Any] | None
    detail: str


class StatusService:
    """Reads ledgers for a principal and moves tasks through the one writer (the agent)."""

    def __init__(self, store: LedgerReader, publish: Publish, clock: Clock, zone: str, wait_timeout: float):
        self.store = store
        self.publish = publish
        self.clock = clock
        self.zone = ZoneInfo(zone)
        self.wait_timeout = wait_timeout

    def today(self) -> dt.date:
        return self.clock.now().astimezone(self.zone).date()

    def visible_ledgers(self, principal: Principal) -> list[Ledger]:
        principal.require_reader()
        if principal.sees_all():
            return [ledger for ledger in self.store.ledgers() if ledger.tasks]
        ledger = self.store.load(principal.provider_id or "")
        return [ledger] if ledger.tasks else []

    def provider(self, principal: Principal, provider_id: str) -> Ledger:
        principal.require_sees(provider_id)
        ledger = self.store.load(provider_id)
        if not ledger.tasks:
            raise HTTPException(404, f"no tasks for provider {provider_id}")
        return ledger

    def owner(self, task_id: str) -> str | None:
        provider_id = self.store.provider_of(task_id)
        if provider_id is not None:
            return provider_id
        # The in-memory index is rebuilt by the sweep after a rebalance; until then, look.
        return next((ledger.provider_id for ledger in self.store.ledgers() if task_id in ledger.tasks), None)

    async def move(self, principal: Principal, task_id: str, request: StatusRequest,
                   provider_id: str | None = None) -> Outcome:
        """Check, publish, wait. Raises HTTPException 403/404/409."""
        principal.require_reader()
        owner = self.owner(task_id)
        if owner is None or (provider_id is not None and owner != provider_id):
            raise HTTPException(404, f"no task {task_id}" + (f" for provider {provider_id}" if provider_id else ""))
        principal.require_change(owner)
        ledger = self.store.load(owner)
        try:
            record = check_move(ledger, task_id, request.status)
        except UnknownTask as error:
            raise HTTPException(404, str(error)) from None
        except IllegalMove as error:
            raise HTTPException(409, str(error)) from None
        today = self.today()
        if record.status == request.status:
            return Outcome(200, False, task_view(record, ledger, today), f"task {task_id} is already {record.status}")
        change = TaskStatusChange(
            id=str(uuid.uuid4()), task_id=task_id, provider_id=owner, status=request.status, reason=request.reason,
            by=principal.name, at=self.clock.now(), source="api",
        )
        await self.publish(change, record.task.correlation_id)
        log.info("key %s asked to move task %s of %s to %s (change %s)", principal.name, task_id, owner,
                 request.status, change.id)
        return await self._wait_applied(change)

    async def _wait_applied(self, change: TaskStatusChange) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        while True:
            ledger = self.store.load(change.provider_id)
            record = ledger.tasks.get(change.task_id)
            if record is not None:
                today = self.today()
                if any(entry.change_id == change.id for entry in record.history):
                    return Outcome(200, True, task_view(record, ledger, today), f"task {change.task_id} is {record.status}")
                if record.status == change.status:  # someone else made the same move first
                    return Outcome(200, False, task_view(record, ledger, today), f"task {change.task_id} is already {record.status}")
                try:
                    check_move(ledger, change.task_id, change.status)
                except IllegalMove as error:  # the task moved meanwhile; the agent refuses the change
                    raise HTTPException(409, str(error)) from None
            if loop.time() >= deadline:
                return Outcome(202, False, None, f"change {change.id} was published but the ledger has not shown it "
                                                 f"within {self.wait_timeout:g}s; look again shortly")
            await asyncio.sleep(POLL_SECONDS)


# -- the app -----------------------------------------------------------------------------------------


def create_status_api(store: LedgerReader, keys: KeyRing, publish: Publish, clock: Clock,
                      settings: Settings, catalog: Catalog | None = None) -> FastAPI:
    from services.reporting.web import install_pages

    service = StatusService(store, publish, clock, settings.timezone, settings.status_wait_timeout)
    api = FastAPI(
        title="omboard status",
        version="1",
        description="Every provider's tasks from the reporting ledger, and marking them done. "
                    "Authenticate with 'Authorization: Bearer <key>'.",
    )
    api.state.service = service
    count_requests(api)
    install_validation_errors(api)
    principal_of = require_key(keys)

    @api.exception_handler(Forbidden)
    async def _forbidden(request: Request, error: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=403)

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/v1/providers")
    async def providers(principal: Principal = Depends(principal_of)) -> dict[str, Any]:
        """Every provider the key sees, with its progress; those with overdue work first."""
        today = service.today()
        summaries = [provider_summary(ledger, today) for ledger in service.visible_ledgers(principal)]
        summaries.sort(key=lambda s: (-s["overdue"], s["next_due"] or "9999", s["id"]))
        return {"today": today.isoformat(), "providers": summaries}

    @api.get("/v1/providers/{provider_id}/tasks")
    async def provider_tasks(
        provider_id: str,
        system: SystemId | None = Query(None),
        responsible: Responsible | None = Query(None),
        status: TaskStatus | None = Query(None),
        principal: Principal = Depends(principal_of),
    ) -> dict[str, Any]:
        """The provider's checklist: overdue work first, then by due date."""
        ledger = service.provider(principal, provider_id)
        today = service.today()
        records = sorted((r for r in ledger.tasks.values() if matches(r, system, responsible, status)),
                         key=lambda r: order(r, today))
        return {"today": today.isoformat(), "provider": provider_summary(ledger, today),
                "tasks": [task_view(r, ledger, today) for r in records]}

    @api.get("/v1/tasks/overdue")
    async def overdue(
        system: SystemId | None = Query(None),
        responsible: Responsible | None = Query(None),
        principal: Principal = Depends(principal_of),
    ) -> dict[str, Any]:
        """Open or blocked tasks past their due date (today in Europe/Stockholm), oldest first."""
        today = service.today()
        found = [
            (record, ledger)
            for ledger in service.visible_ledgers(principal)
            for record in ledger.tasks.values()
            if record.overdue(today) and matches(record, system, responsible, None)
        ]
        found.sort(key=lambda pair: order(pair[0], today))
        return {"today": today.isoformat(), "tasks": [task_view(r, ledger, today) for r, ledger in found]}

    @api.post(
        "/v1/tasks/{task_id}/status",
        responses={
            200: {"description": "Applied (or the task already had this status: changed is false)"},
            202: {"description": "Published, but the ledger did not show it in time"},
            403: {"description": "The key may not change this provider's tasks"},
            404: {"description": "No such task"},
            409: {"description": "The move is not allowed now; the detail says why"},
        },
    )
    async def set_status(task_id: str, body: StatusRequest,
                         principal: Principal = Depends(principal_of)) -> JSONResponse:
        outcome = await service.move(principal, task_id, body)
        return JSONResponse({"changed": outcome.changed, "detail": outcome.detail, "task": outcome.task},
                            status_code=outcome.status_code)

    catalog = catalog or load_catalog(settings.catalog_path)
    install_pages(api, service, keys, {channel: info.sv for channel, info in catalog.channels.items()})
    return api


# -- inside the reporting worker ---------------------------------------------------------------------


def install_status_api(app: Any, store: LedgerReader, settings: Settings, clock: Clock,
                       catalog: Catalog | None = None) -> None:
    """Serve the status API from the reporting worker (a StreamApp), once its tables are restored.

    Raises KeyConfigError when ``OMBOARD_API_KEYS`` is broken: better not to start than to guess.
    """
    from schemas.topics import TASK_STATUS
    from schemas.wire import model_to_kafka
    from services.runtime.asgi import in_loop
    from services.runtime.streams import Outgoing, send_all

    keys = KeyRing.from_settings(settings.api_keys, "status API")

    async def publish(change: TaskStatusChange, correlation: str | None) -> None:
        await send_all(app, [Outgoing(TASK_STATUS, *model_to_kafka(change, change.provider_id, correlation))])

    api = create_status_api(store, keys, publish, clock, settings, catalog)
    serve, stop = in_loop(api, settings.status_host, settings.status_port, settings.log_level)

    async def start() -> None:
        await serve()
        log.info("status API and page on http://%s:%d/providers", settings.status_host, settings.status_port)

    app.server("status API", start, stop)
