"""The intake HTTP API: ``POST /v1/events`` takes one structured-mode CloudEvent.

Routes only decode, call and emit: ``parse_event`` decides what is valid, ``EventPublisher``
decides how it looks on Kafka. 202 means the broker acknowledged the event (acks=all); 422 names
every bad field and never the value (it may be a personal identity number); 503 means Kafka is
unavailable and nothing was accepted, so the sender should retry.

Every POST needs an upstream API key allowed to publish the event's type
(``services.http.access``): 401 without a known key, 403 when the key may not publish it. The
type is checked after validation, so a bad event is a 422 whoever sends it. ``GET /metrics`` is the
Prometheus exposition of this process, without a key (the API listens on 127.0.0.1 by default;
keep it behind the network boundary when it does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from schemas.events import Envelope
from schemas.parsing import FieldError, InvalidEvent, parse_event
from schemas.wire import EventTooLarge
from services.http.access import (
    Forbidden,
    KeyRing,
    authenticate,
    count_requests,
    forbidden,
    install_validation_errors,
)
from services.intake.confirmations import roster_confirmation
from services.intake.publisher import EventPublisher, KafkaUnavailable
from services.runtime import metrics
from services.runtime.settings import Settings, get_settings

log = logging.getLogger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
#: A CloudEvent is small; refuse anything that could only be a mistake or an attack.
MAX_BODY_BYTES = 1_000_000
#: Seconds between attempts to reach Kafka while it is unavailable (doubling up to the maximum).
RECONNECT_MIN, RECONNECT_MAX = 0.5, 10.0
RETRY_AFTER_SECONDS = "5"


class RosterConfirmation(BaseModel):
    as_of: str = Field(description="The held roster's date, YYYY-MM-DD, as its roster-held warning gives it")
    roster: str | None = Field(None, description="Which roster, as the warning gives it: only that one is confirmed")


def _errors(errors: list[FieldError], status: int = 422) -> JSONResponse:
    return JSONResponse({"errors": [error.model_dump() for error in errors]}, status_code=status)


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse(
        {"detail": f"Kafka is unavailable, the event was not accepted; retry later ({reason})"},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


async def _keep_connected(publisher: EventPublisher) -> None:
    """Start the producer, retrying with back-off until it succeeds (Kafka may come up later)."""
    delay = RECONNECT_MIN
    while not publisher.started:
        try:
            await publisher.start()
            log.info("connected to Kafka at %s", publisher.bootstrap)
            return
        except KafkaUnavailable as error:
            log.warning("%s; retrying in %.1fs", error, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX)


def _rejected(response: JSONResponse) -> JSONResponse:
    metrics.API_EVENTS_REJECTED.labels(str(response.status_code)).inc()
    return response


def _document_the_event_body(app: FastAPI) -> None:
    """Put the body of ``POST /v1/events`` in the OpenAPI document: the route reads the raw body, so
    that ``parse_event`` names every bad field, and FastAPI cannot see what it expects."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()  # FastAPI's document, kept as app.openapi_schema: completed in place
            envelope = Envelope.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(envelope.pop("$defs", {}))
            schemas["Envelope"] = envelope
            document["paths"]["/v1/events"]["post"]["requestBody"] = {
                "required": True,
                "description": "One structured-mode CloudEvent (docs/events.md)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}},
            }
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def create_api(
    settings: Settings | None = None, publisher: EventPublisher | None = None, keys: KeyRing | None = None
) -> FastAPI:
    """The intake app; ``keys`` defaults to ``OMBOARD_API_KEYS`` (a broken value raises KeyConfigError)."""
    settings = settings or get_settings()
    publisher = publisher or EventPublisher(settings.kafka_bootstrap, settings)
    keys = keys if keys is not None else KeyRing.from_settings(settings.api_keys, "intake API")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Try once before serving, so a healthy set-up is ready at once; keep trying in the
        # background otherwise. The API still answers: /healthz 200, /readyz and POST 503.
        try:
            await publisher.start()
        except KafkaUnavailable as error:
            log.warning("%s; the API answers 503 until Kafka is reachable", error)
        connecting = asyncio.create_task(_keep_connected(publisher))
        try:
            yield
        finally:
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
            await publisher.stop()

    app = FastAPI(
        title="omboard intake",
        version="1",
        description="Domain events from upstream HR and contract systems, as structured-mode CloudEvents 1.0.",
        lifespan=lifespan,
    )
    app.state.publisher = publisher
    count_requests(app)
    _document_the_event_body(app)
    install_validation_errors(app)  # no route validates parameters today; one added later cannot echo input

    @app.post(
        "/v1/events",
        status_code=202,
        responses={
            202: {"description": "Published to omboard.events and acknowledged by Kafka"},
            401: {"description": "No API key, or an unknown one (send Authorization: Bearer <key>)"},
            403: {"description": "The key may not publish this event type"},
            413: {"description": "Body larger than 1 MB, or an event too large for a Kafka record"},
            422: {"description": "Invalid event: every bad field with the reason (never the value)"},
            503: {"description": "Kafka unavailable: nothing was published; retry later"},
        },
    )
    async def post_event(request: Request) -> JSONResponse:
        try:
            principal = authenticate(keys, request)
            principal.require_publisher()
        except HTTPException as refused:
            metrics.API_EVENTS_REJECTED.labels(str(refused.status_code)).inc()
            raise
        except Forbidden as error:
            metrics.API_EVENTS_REJECTED.labels("403").inc()
            raise forbidden(error) from None
        declared = request.headers.get("content-length", "")
        too_large = declared.isdigit() and int(declared) > MAX_BODY_BYTES
        body = b"" if too_large else await request.body()
        if too_large or len(body) > MAX_BODY_BYTES:
            return _rejected(_errors([FieldError(field="(body)", reason=f"is larger than {MAX_BODY_BYTES} bytes")], 413))
        correlation_id = request.headers.get(CORRELATION_HEADER)
        if correlation_id is not None and not _CORRELATION_ID.match(correlation_id):
            return _rejected(_errors([FieldError(
                field=CORRELATION_HEADER,
                reason="must be 1-200 letters, digits or . _ : / - and start with a letter or digit",
            )]))  # fmt: skip
        try:
            event = parse_event(body)
        except InvalidEvent as invalid:
            return _rejected(_errors(invalid.errors))
        if not principal.may_publish(event.type):
            metrics.API_EVENTS_REJECTED.labels("403").inc()
            log.info("refused %s event %s from key %s", event.type, event.id, principal.name)
            return JSONResponse({"detail": f"key {principal.name!r} may not publish {event.type}"}, status_code=403)
        try:
            sent = await publisher.publish(event, correlation_id)
        except EventTooLarge as too_large:  # it could never be delivered: not a retry later
            return _rejected(_errors(too_large.errors, 413))
        except KafkaUnavailable as error:
            log.warning("event %s not published: %s", event.id, error)
            return _rejected(_unavailable(str(error)))
        metrics.API_EVENTS_PUBLISHED.labels(event.type).inc()
        log.info("accepted %s event %s from key %s (correlation %s)", event.type, event.id, principal.name,
                 sent.correlation_id)
        return JSONResponse(
            {"id": sent.event_id, "correlation_id": sent.correlation_id},
            status_code=202,
            headers={CORRELATION_HEADER: sent.correlation_id},
        )

    @app.post(
        "/v1/providers/{provider_id}/roster-confirmations",
        status_code=202,
        responses={
            202: {"description": "StaffRosterConfirmed published to omboard.events and acknowledged by Kafka"},
            401: {"description": "No API key, or an unknown one (send Authorization: Bearer <key>)"},
            403: {"description": "Only an operator key may confirm a roster"},
            422: {"description": "Invalid provider id or date: the field with the reason (never the value)"},
            503: {"description": "Kafka unavailable: nothing was published; retry later"},
        },
    )
    async def confirm_roster(provider_id: str, body: RosterConfirmation, request: Request) -> JSONResponse:
        """Confirm the roster held for the provider (warning ``roster-held``): its leavers leave on its
        date. The key's name is recorded as who confirmed it."""
        principal = authenticate(keys, request)
        if principal.role != "operator":
            raise forbidden(Forbidden(f"key {principal.name!r} ({principal.role}) may not confirm a roster"))
        try:
            event = roster_confirmation(provider_id, body.as_of, principal.name, dt.datetime.now(dt.UTC), body.roster)
        except InvalidEvent as invalid:
            return _errors(invalid.errors)
        try:
            sent = await publisher.publish(event, None)
        except KafkaUnavailable as error:
            return _unavailable(str(error))
        metrics.API_EVENTS_PUBLISHED.labels(event.type).inc()
        log.info("key %s confirmed the roster of %s for provider %s", principal.name, body.as_of, provider_id)
        return JSONResponse({"id": sent.event_id, "correlation_id": sent.correlation_id}, status_code=202,
                            headers={CORRELATION_HEADER: sent.correlation_id})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if publisher.started:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "detail": "not connected to Kafka"}, status_code=503)

    return app
