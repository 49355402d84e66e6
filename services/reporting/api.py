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
shows it. Every route needs an API key (``services.http.access``); a provider-admin key sees
only its own provider. In tasks people appear by pseudonym, never by HSA-id; in a provider's access
register and closure reports by HSA-id for operator and provider-admin keys (who order and cancel
that access), by pseudonym for the others.

Routes: ``/v1/...`` (JSON; ``/v1/tasks``, the access register and closure reports also CSV) and, for
people, ``/providers``, ``/providers/{id}`` and its closures (server-rendered HTML; see
``services/reporting/web.py``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from schemas.catalog import Catalog
from schemas.events import SystemId
from schemas.identifiers import redact
from schemas.status import StatusRequest, TaskStatusChange
from schemas.tasks import Responsible, TaskStatus
from services.domain.ledger import IllegalMove
from services.http.access import (
    Forbidden,
    KeyRing,
    Principal,
    count_requests,
    install_validation_errors,
    require_key,
)
from services.readmodel.reader import ReadModelUnavailable, TaskReader
from services.reporting.access import (
    Access,
    access_csv,
    access_rules,
    access_view,
    closing_rules_of,
    closure_report,
    closures,
    csv_filename,
    people_view,
    register,
)
from services.reporting.status import CSV_COLUMNS, NotFound, Publish, StatusService, csv_line, task_view, verdict_view
from services.reporting.web import install_pages
from services.runtime.clock import Clock
from services.runtime.settings import Settings

log = logging.getLogger(__name__)

#: The most tasks one request returns; ``offset`` pages on.
MAX_LIMIT = 5000

# -- the app -----------------------------------------------------------------------------------------


def create_status_api(reader: TaskReader, keys: KeyRing, publish: Publish, clock: Clock,
                      settings: Settings, catalog: Catalog) -> FastAPI:
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

    @api.exception_handler(NotFound)
    async def _not_found(request: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @api.exception_handler(IllegalMove)
    async def _illegal(request: Request, error: IllegalMove) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

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
        summary, rows = await service.provider_tasks(principal, provider_id, system=system, responsible=responsible,
                                                     status=status, limit=limit, offset=offset)
        today = service.today()
        return {"today": today.isoformat(), "provider": summary, "tasks": [task_view(r, today) for r in rows]}

    @api.get("/v1/providers/{provider_id}/verdicts", responses={503: {"description": "The read model cannot answer now"}})
    async def provider_verdicts(provider_id: str, principal: Principal = Depends(principal_of)) -> dict[str, Any]:
        """The provider's dates at risk, earliest first: for each subject (its start, a unit opened or
        closed, an organisation change, a subcontractor, a person joining ...) whose latest plan cannot
        be done by its date, the date, the earliest date it can (``earliest_feasible``) and the
        critical chain of tasks that decides it. Empty when every date can be met. People by
        pseudonym only."""
        verdicts = await service.verdicts(principal, provider_id)
        return {"today": service.today().isoformat(), "provider_id": provider_id,
                "verdicts": [verdict_view(verdict) for verdict in verdicts]}

    @api.get("/v1/tasks/overdue", responses={503: {"description": "The read model cannot answer now"}})
    async def overdue(
        system: SystemId | None = Query(None),
        responsible: Responsible | None = Query(None),
        limit: int = Query(500, ge=1, le=MAX_LIMIT),
        offset: int = Query(0, ge=0),
        principal: Principal = Depends(principal_of),
    ) -> dict[str, Any]:
        """Open or blocked tasks past their due date (today in Europe/Stockholm), oldest first."""
        rows = await service.overdue(principal, system=system, responsible=responsible, limit=limit, offset=offset)
        today = service.today()
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
        rows = await service.tasks(principal, provider_id, system=system, responsible=responsible, status=status,
                                   obligation=obligation, overdue=overdue, due_from=due_from, due_to=due_to,
                                   limit=limit, offset=offset)
        today = service.today()
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

    rules, closing_rules = access_rules(catalog), closing_rules_of(catalog)

    def export(lines: list[Access], show_ids: bool, kind: str, provider_id: str) -> Response:
        filename = csv_filename(kind, provider_id, service.today())
        return Response(access_csv(lines, show_ids), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @api.get("/v1/providers/{provider_id}/access", responses={
        200: {"content": {"application/json": {}, "text/csv": {}},
              "description": "Who holds what: JSON by person, or (format=csv) one access a line"},
        503: {"description": "The read model cannot answer now"},
    })
    async def provider_access(provider_id: str, format: str = Query("json", pattern="^(json|csv)$"),
                              principal: Principal = Depends(principal_of)) -> Response:
        """The provider's people and their access: who holds what in which system, since when,
        through which task, and what ended it. ``held`` counts what has not ended; a provider that
        has ceased is done when it is 0. HSA-ids for operator and provider-admin keys, pseudonyms
        for the others."""
        rows, places = await service.access(principal, provider_id, rules)
        accesses = register(rows, catalog, places)
        show_ids = principal.sees_person_ids()
        if format == "csv":
            return export(accesses, show_ids, "access", provider_id)
        return JSONResponse({"today": service.today().isoformat(), "provider_id": provider_id,
                             "held": sum(access.held for access in accesses), "people": people_view(accesses, show_ids)})

    @api.get("/v1/providers/{provider_id}/closures", responses={503: {"description": "The read model cannot answer now"}})
    async def provider_closures(provider_id: str, principal: Principal = Depends(principal_of)) -> dict[str, Any]:
        """The provider's closures (of a unit or a subcontractor's organisation), each by the id of the
        event that planned it; ``/closures/{plan_id}`` is its report."""
        return {"provider_id": provider_id,
                "closures": closures((await service.access(principal, provider_id, closing_rules))[0], catalog)}

    @api.get("/v1/providers/{provider_id}/closures/{plan_id}", responses={
        200: {"content": {"application/json": {}, "text/csv": {}},
              "description": "The closure report: every access on the closed units and what ended it"},
        404: {"description": "No closure with that id for the provider"},
        503: {"description": "The read model cannot answer now"},
    })
    async def closure(provider_id: str, plan_id: str, format: str = Query("json", pattern="^(json|csv)$"),
                      principal: Principal = Depends(principal_of)) -> Response:
        """Every access that was held on the closed units, with the revocation that ended it, who
        confirmed it and when. ``complete`` only when nothing is held any more."""
        rows, places = await service.access(principal, provider_id, [*rules, *closing_rules])
        report = closure_report(rows, catalog, plan_id, places)
        if report is None:
            raise NotFound(f"no closure {redact(plan_id)} for provider {provider_id}")
        units, accesses = report
        show_ids = principal.sees_person_ids()
        if format == "csv":
            return export(accesses, show_ids, "closure", provider_id)
        held = [access for access in accesses if access.held]
        return JSONResponse({"provider_id": provider_id, "plan_id": plan_id, "units": units, "complete": not held,
                             "held": len(held), "access": [access_view(access, show_ids) for access in accesses]})

    @api.get("/v1/tasks/{task_id}", responses={404: {"description": "No such task"},
                                               503: {"description": "The read model cannot answer now"}})
    async def one_task(task_id: str, principal: Principal = Depends(principal_of)) -> dict[str, Any]:
        """One task with its whole history: the audit trail from the event that planned it (``plan_id``)
        through every change, who made it and when."""
        row = await service.task(principal, task_id)
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

    install_pages(api, service, keys, catalog)
    return api


# -- inside the reporting worker ---------------------------------------------------------------------


def install_status_api(app: Any, reader: TaskReader, settings: Settings, clock: Clock,
                       catalog: Catalog) -> None:
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
