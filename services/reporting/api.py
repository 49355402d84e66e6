"""The status API and page: every provider's checklist from the read model, and marking work done.

Served inside the reporting worker, by a uvicorn server in the worker's event loop on
``OMBOARD_STATUS_HOST:OMBOARD_STATUS_PORT`` (127.0.0.1:8001). It starts once the tables are first
restored; the worker owns SIGTERM/SIGINT and stops it.

Reads come from the read model in PostgreSQL (``services.readmodel``), which every reporting
worker projects its tasks into: any worker, and any number of them, shows every provider. While
the database cannot be reached, reads answer 503 with the reason. A status change is checked
against the read model (``check_move``), then published to ``omboard.task-status`` like any other
system's change; the reporting agent, the tasks' only writer, applies it (and refuses it, with a
dead letter, if the task moved meanwhile), and the route waits (bounded) until the read model
shows it. Every route needs an API key (``services.runtime.access``); a provider-admin key sees
only its own provider. People appear by pseudonym, never by HSA-id.

Routes: ``/v1/...`` (JSON; ``/v1/tasks`` also CSV) and, for people, ``/providers`` and
``/providers/{id}`` (server-rendered HTML; see ``services/reporting/web.py``).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from schemas.catalog import Catalog, load_catalog
from schemas.events import SystemId
from schemas.identifiers import pseudonym
from schemas.status import StatusRequest, TaskStatusChange
from schemas.tasks import Responsible, TaskStatus
from services.reporting.ledger import IllegalMove, TaskRecord, UnknownTask, allowed_move
from services.runtime.access import (
    Forbidden,
    KeyRing,
    Principal,
    count_requests,
    install_validation_errors,
    require_key,
)
from services.runtime.clock import Clock
from services.runtime.logs import redact
from services.runtime.settings import Settings

log = logging.getLogger(__name__)

#: Publishes one change to ``omboard.task-status`` (with the task's correlation id) and returns
#: once the broker acknowledged it.
Publish = Callable[[TaskStatusChange, str | None], Awaitable[None]]
POLL_SECONDS = 0.05
#: The most tasks one request returns; ``offset`` pages on.
MAX_LIMIT = 5000


class ReadModelUnavailable(RuntimeError):
    """The read model cannot answer now (its database is unreachable); the message says why."""


@dataclass(frozen=True)
class Row:
    """A task as the read model has it, with the prerequisites that still hold it up."""

    record: TaskRecord
    waiting_for: list[str]

    @property
    def provider_id(self) -> str:
        return self.record.task.subject.provider_id


class TaskReader(Protocol):
    """What the API reads (``services.readmodel.reader.PostgresReader``); each raises
    ReadModelUnavailable when it cannot answer."""

    async def summaries(self, today: dt.date, provider_id: str | None = None) -> list[dict[str, Any]]: ...
    async def provider_tasks(self, provider_id: str, today: dt.date, *, system: str | None, responsible: str | None,
                             status: str | None, limit: int, offset: int) -> list[Row]: ...
    async def overdue(self, today: dt.date, *, provider_id: str | None, system: str | None,
                      responsible: str | None, limit: int, offset: int) -> list[Row]: ...
    async def tasks(self, today: dt.date, *, limit: int, offset: int, **filters: Any) -> list[Row]: ...
    async def task(self, task_id: str) -> Row | None: ...


# -- views: what a person or a client sees of a task (pure) ----------------------------------------


def task_view(row: Row, today: dt.date) -> dict[str, Any]:
    record = row.record
    task = record.task
    return {
        "id": task.id,
        "provider_id": task.subject.provider_id,
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
        "waiting_for": row.waiting_for if record.status == "blocked" else [],
        "catalog_version": task.catalog_version,
        "history": [entry.model_dump(mode="json") for entry in record.history],
    }


#: The columns of ``GET /v1/tasks?format=csv``: what a spreadsheet needs, one task per line.
CSV_COLUMNS = ("id", "provider_id", "provider_name", "system", "status", "due", "overdue", "days_overdue",
               "obligation", "action", "channel", "responsible", "unit_id", "person", "quantity",
               "waiting_for", "last_change_at", "last_change_by")


def csv_line(row: Row, today: dt.date) -> dict[str, Any]:
    view = task_view(row, today)
    last = row.record.history[-1] if row.record.history else None
    line = {column: view.get(column) for column in CSV_COLUMNS}
    line["waiting_for"] = " ".join(view["waiting_for"])
    line["last_change_at"] = last.at.isoformat() if last else ""
    line["last_change_by"] = last.by if last else ""
    return {column: _as_text(value) for column, value in line.items()}


def _as_text(value: Any) -> Any:
    """A cell a spreadsheet shows as written: text it would run as a formula (a provider's name
    from upstream starting with "=", say) gets a leading apostrophe, as OWASP advises."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def check_move(row: Row | None, provider_id: str, task_id: str, status: TaskStatus) -> TaskRecord:
    """As ``services.reporting.ledger.check_move``, on what the read model shows."""
    if row is None or row.provider_id != provider_id:
        raise UnknownTask(f"no task {task_id} for provider {provider_id}")
    return allowed_move(row.record, status, lambda: row.waiting_for)


# -- the service behind the routes -------------------------------------------------------------------


@dataclass
class Outcome:
    status_code: int  # 200 applied (or nothing to change), 202 published but not yet shown
    changed: bool
    task: dict[str, Any] | None
    detail: str


class StatusService:
    """Reads the read model for a principal and moves tasks through the one writer (the agent)."""

    def __init__(self, reader: TaskReader, publish: Publish, clock: Clock, zone: str, wait_timeout: float):
        self.reader = reader
        self.publish = publish
        self.clock = clock
        self.zone = ZoneInfo(zone)
        self.wait_timeout = wait_timeout

    def today(self) -> dt.date:
        return self.clock.now().astimezone(self.zone).date()

    @staticmethod
    def scope(principal: Principal) -> str | None:
        """The one provider a key sees, or None for a key that sees them all."""
        principal.require_reader()
        return None if principal.sees_all() else principal.provider_id or ""

    async def summaries(self, principal: Principal) -> list[dict[str, Any]]:
        return await self.reader.summaries(self.today(), self.scope(principal))

    async def provider(self, principal: Principal, provider_id: str) -> dict[str, Any]:
        principal.require_sees(provider_id)
        found = await self.reader.summaries(self.today(), provider_id)
        if not found or not found[0]["total"]:
            raise HTTPException(404, f"no tasks for provider {provider_id}")
        return found[0]

    async def move(self, principal: Principal, task_id: str, request: StatusRequest,
                   provider_id: str | None = None) -> Outcome:
        """Check, publish, wait. Raises HTTPException 403/404/409."""
        principal.require_reader()
        row = await self.reader.task(task_id)
        if row is None or (provider_id is not None and row.provider_id != provider_id):
            raise HTTPException(404, f"no task {redact(task_id)}" + (f" for provider {provider_id}" if provider_id else ""))
        owner = row.provider_id
        principal.require_change(owner)
        try:
            record = check_move(row, owner, task_id, request.status)
        except UnknownTask as error:
            raise HTTPException(404, str(error)) from None
        except IllegalMove as error:
            raise HTTPException(409, str(error)) from None
        today = self.today()
        if record.status == request.status:
            return Outcome(200, False, task_view(row, today), f"task {task_id} is already {record.status}")
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
            try:
                row = await self.reader.task(change.task_id)
            except ReadModelUnavailable:
                row = None  # published: the change stands; the answer says it is not shown yet
            if row is not None:
                record = row.record
                today = self.today()
                if any(entry.change_id == change.id for entry in record.history):
                    return Outcome(200, True, task_view(row, today), f"task {change.task_id} is {record.status}")
                if record.status == change.status:  # someone else made the same move first
                    return Outcome(200, False, task_view(row, today), f"task {change.task_id} is already {record.status}")
                try:
                    check_move(row, change.provider_id, change.task_id, change.status)
                except IllegalMove as error:  # the task moved meanwhile; the agent refuses the change
                    raise HTTPException(409, str(error)) from None
            if loop.time() >= deadline:
                return Outcome(202, False, None, f"change {change.id} was published but the read model has not "
                                                 f"shown it within {self.wait_timeout:g}s; look again shortly")
            await asyncio.sleep(POLL_SECONDS)


# -- the app -----------------------------------------------------------------------------------------


def create_status_api(reader: TaskReader, keys: KeyRing, publish: Publish, clock: Clock,
                      settings: Settings, catalog: Catalog | None = None) -> FastAPI:
    from services.reporting.web import install_pages

    service = StatusService(reader, publish, clock, settings.timezone, settings.status_wait_timeout)
    api = FastAPI(
        title="omboard status",
        version="1",
        description="Every provider's tasks from the read model, and marking them done. "
                    "Authenticate with 'Authorization: Bearer <key>'.",
    )
    api.state.service = service
    count_requests(api)
    install_validation_errors(api)
    principal_of = require_key(keys)

    @api.exception_handler(Forbidden)
    async def _forbidden(request: Request, error: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=403)

    @api.exception_handler(ReadModelUnavailable)
    async def _unavailable(request: Request, error: ReadModelUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"the read model cannot answer now: {error}; try again shortly"},
                            status_code=503, headers={"Retry-After": "5"})

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/v1/providers", responses={503: {"description": "The read model cannot answer now"}})
    async def providers(principal: Principal = Depends(principal_of)) -> dict[str, Any]:
        """Every provider the key sees, with its progress; those with overdue work first."""
        return {"today": service.today().isoformat(), "providers": await service.summaries(principal)}

    @api.get("/v1/providers/{provider_id}/tasks", responses={503: {"description": "The read model cannot answer now"}})
    async def provider_tasks(
        provider_id: str,
        system: SystemId | None = Query(None),
        responsible: Responsible | None = Query(None),
        status: TaskStatus | None = Query(None),
        limit: int = Query(500, ge=1, le=MAX_LIMIT),
        offset: int = Query(0, ge=0),
        principal: Principal = Depends(principal_of),
    ) -> dict[str, Any]:
        """The provider's checklist: overdue work first, then by due date."""
        summary = await service.provider(principal, provider_id)
        today = service.today()
        rows = await service.reader.provider_tasks(provider_id, today, system=system, responsible=responsible,
                                                   status=status, limit=limit, offset=offset)
        return {"today": today.isoformat(), "provider": summary, "tasks": [task_view(r, today) for r in rows]}

    @api.get("/v1/tasks/overdue", responses={503: {"description": "The read model cannot answer now"}})
    async def overdue(
        system: SystemId | None = Query(None),
        responsible: Responsible | None = Query(None),
        limit: int = Query(500, ge=1, le=MAX_LIMIT),
        offset: int = Query(0, ge=0),
        principal: Principal = Depends(principal_of),
    ) -> dict[str, Any]:
        """Open or blocked tasks past their due date (today in Europe/Stockholm), oldest first."""
        today = service.today()
        rows = await service.reader.overdue(today, provider_id=service.scope(principal), system=system,
                                            responsible=responsible, limit=limit, offset=offset)
        return {"today": today.isoformat(), "tasks": [task_view(r, today) for r in rows]}

    @api.get("/v1/tasks", responses={
        200: {"content": {"application/json": {}, "text/csv": {}},
              "description": "The tasks, JSON or (format=csv) one CSV line each"},
        503: {"description": "The read model cannot answer now"},
    })
    async def tasks(
        provider_id: str | None = Query(None, max_length=200),
        system: SystemId | None = Query(None),
        responsible: Responsible | None = Query(None),
        status: TaskStatus | None = Query(None),
        obligation: str | None = Query(None, max_length=20),
        overdue: bool | None = Query(None),
        due_from: dt.date | None = Query(None),
        due_to: dt.date | None = Query(None),
        format: str = Query("json", pattern="^(json|csv)$"),
        limit: int = Query(1000, ge=1, le=MAX_LIMIT),
        offset: int = Query(0, ge=0),
        principal: Principal = Depends(principal_of),
    ) -> Response:
        """Every task the key sees that matches the filters, by provider and due date: JSON, or
        ``format=csv`` for a spreadsheet. Page with ``limit`` and ``offset``."""
        scope = service.scope(principal)
        if scope is not None:
            if provider_id is not None and provider_id != scope:
                principal.require_sees(provider_id)
            provider_id = scope
        today = service.today()
        rows = await service.reader.tasks(today, provider_id=provider_id, system=system, responsible=responsible,
                                          status=status, obligation=obligation, overdue=overdue, due_from=due_from,
                                          due_to=due_to, limit=limit, offset=offset)
        # A full page may have more after it: say where the next one starts.
        more = {"X-Next-Offset": str(offset + limit)} if len(rows) == limit else {}
        if format == "csv":
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
            writer.writeheader()
            writer.writerows(csv_line(row, today) for row in rows)
            return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
                "Content-Disposition": f'attachment; filename="omboard-tasks-{today}.csv"', **more})
        body = {"today": today.isoformat(), "limit": limit, "offset": offset, "tasks": [task_view(r, today) for r in rows]}
        if more:
            body["next_offset"] = offset + limit
        return JSONResponse(body, headers=more)

    @api.get("/v1/tasks/{task_id}", responses={404: {"description": "No such task"},
                                               503: {"description": "The read model cannot answer now"}})
    async def one_task(task_id: str, principal: Principal = Depends(principal_of)) -> dict[str, Any]:
        """One task with its whole history: the audit trail from the event that planned it (``plan_id``)
        through every change, who made it and when."""
        scope = service.scope(principal)
        row = await service.reader.task(task_id)
        if row is None or (scope is not None and row.provider_id != scope):
            # Another provider's task is not told apart; a path is echoed only without a personal number.
            raise HTTPException(404, f"no task {redact(task_id)}")
        view = task_view(row, service.today())
        return {**view, "plan_id": row.record.task.plan_id, "rule": row.record.task.rule}

    @api.post(
        "/v1/tasks/{task_id}/status",
        responses={
            200: {"description": "Applied (or the task already had this status: changed is false)"},
            202: {"description": "Published, but the read model did not show it in time"},
            403: {"description": "The key may not change this provider's tasks"},
            404: {"description": "No such task"},
            409: {"description": "The move is not allowed now; the detail says why"},
            503: {"description": "The read model cannot answer now"},
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


def install_status_api(app: Any, reader: TaskReader, settings: Settings, clock: Clock,
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

    api = create_status_api(reader, keys, publish, clock, settings, catalog)
    serve, stop = in_loop(api, settings.status_host, settings.status_port, settings.log_level)

    async def start() -> None:
        await serve()
        log.info("status API and page on http://%s:%d/providers", settings.status_host, settings.status_port)

    app.server("status API", start, stop)
