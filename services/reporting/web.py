"""The status page: server-rendered HTML (Jinja2) over the same StatusService as the JSON API.

Browser sign-in: ``/login`` takes an API key and sets it in an ``omboard_key`` cookie (HttpOnly,
SameSite=Strict, Secure when served over https, 12 hours). The cookie holds the key itself, so
nothing is kept on the server and a restart signs nobody out; SameSite=Strict keeps other sites'
forms from using it, and every POST also has its ``Origin`` checked (``null`` is refused; the
pages' ``Referrer-Policy: same-origin`` is what makes the browser send the real origin on our own
forms, where ``no-referrer`` made it send ``null``). A client that sends
``Authorization: Bearer <key>`` needs no cookie. A page asked for without a key redirects to
``/login?next=<page>``, so the links in mails land on the page after signing in.

After "done" the checklist shows a notice or an error carried in the redirect's query string. Each
is signed with an HMAC under a secret made when the process starts (``Messages``), so a link made
elsewhere cannot put its own words on the page; an unsigned, forged or stale message shows nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from schemas.catalog.model import Catalog
from schemas.events import SYSTEMS
from schemas.status import StatusRequest
from schemas.tasks import Responsible, TaskStatus
from services.domain.ledger import IllegalMove
from services.http.access import COOKIE_NAME, Forbidden, KeyRing, Principal, authenticate
from services.readmodel.reader import ReadModelUnavailable
from services.reporting.access import (
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
from services.reporting.status import NotFound, StatusService, task_view, verdict_view

TEMPLATES = Path(__file__).parent / "templates"
COOKIE_MAX_AGE = 12 * 3600
MAX_FORM_BYTES = 10_000
#: The most tasks one checklist page shows (the filters narrow it; the JSON API pages on).
PAGE_TASKS = 1000
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, browsers send "Origin: null" on our own form posts (seen in chromium),
    # and a null origin is what a forged post from a sandboxed frame or data: page sends too.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
SYSTEM_LABELS = {
    "siebel": "Siebel", "siths": "SITHS", "prator": "Prator", "flexite": "Flexite", "phoniro": "Phoniro",
    "natthemsjukvard": "Natthemsjukvård", "boka": "BOKA", "klk-it": "KLK IT",
}
RESPONSIBLE = list(Responsible.__args__)  # type: ignore[attr-defined]
STATUSES = list(TaskStatus.__args__)  # type: ignore[attr-defined]


def _env(channel_labels: Mapping[str, str]) -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["system"] = lambda value: SYSTEM_LABELS.get(value, value)
    env.filters["channel"] = lambda value: channel_labels.get(value, value)
    env.filters["action"] = lambda value: value.replace("-", " ").capitalize()
    env.filters["path"] = lambda value: quote(value, safe="")
    return env


def _pick(value: str | None, allowed: list[str]) -> str | None:
    """A filter value from a query string: empty or unknown means no filter."""
    return value if value in allowed else None


def _safe_next(target: str | None, default: str = "/providers") -> str:
    """Only a path on this site (no scheme, no host, no '//'), so a link cannot send anyone away."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


MESSAGE_KINDS = ("notice", "error")
SIGNATURE = "sig"


class Messages:
    """Signs the notices and errors the server puts into a redirect, and verifies them on the page.

    The secret lives only in this process: a restart makes old message links show nothing, which
    costs a person one flash message and keeps a secret out of the configuration.
    """

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def sign(self, kind: str, provider_id: str, text: str) -> str:
        # The provider is signed too, so a message cannot be moved to another provider's page.
        payload = "\0".join((kind, provider_id, text)).encode()
        return hmac.new(self._secret, payload, hashlib.sha256).hexdigest()[:32]

    def verified(self, kind: str, provider_id: str, text: str | None, signature: str | None) -> str | None:
        if not text or not signature:
            return None
        expected = self.sign(kind, provider_id, text).encode()
        return text if hmac.compare_digest(expected, signature.encode()) else None

    def redirect(self, target: str, provider_id: str, kind: str, text: str) -> str:
        """``target`` with this one message, signed, in place of any message it carried."""
        parts = urlsplit(target)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in (*MESSAGE_KINDS, SIGNATURE)]
        query += [(kind, text), (SIGNATURE, self.sign(kind, provider_id, text))]
        return parts.path + "?" + urlencode(query)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _same_origin(request: Request) -> None:
    """Refuse a form POST that another site made (belt and braces beside SameSite=Strict, which
    does not cover /login: login CSRF needs no cookie). ``null`` is refused: browsers send it from
    sandboxed frames, data: pages and cross-site redirects, and on this site's own forms only under
    ``Referrer-Policy: no-referrer`` (hence ``same-origin`` above). A request without ``Origin`` is
    not a browser's form post (browsers send it on every POST)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(403, "cross-site form post refused")


def install_pages(api: FastAPI, service: StatusService, keys: KeyRing, catalog: Catalog) -> None:
    """The catalog names the channels in Swedish (it owns that wording) and says which rules give
    and end access."""
    env = _env({channel: info.sv for channel, info in catalog.channels.items()})
    rules, closing_rules = access_rules(catalog), closing_rules_of(catalog)
    messages = Messages()

    def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)

    def signed_in(request: Request) -> Principal | RedirectResponse:
        try:
            return authenticate(keys, request, cookie=True)
        except HTTPException:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    def refused(principal: Principal, error: Forbidden) -> HTMLResponse:
        return render("error.html", 403, principal=principal, message=str(error))

    def unavailable(principal: Principal, error: Exception) -> HTMLResponse:
        return render("error.html", 503, principal=principal,
                      message=f"Uppgifterna kan inte visas just nu / the tasks cannot be shown now: {error}")

    @api.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/providers", status_code=303)

    @api.get("/login", include_in_schema=False)
    async def login_form(next: str | None = None) -> HTMLResponse:
        return render("login.html", next=_safe_next(next), error=None, keys_configured=not keys.empty)

    @api.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        _same_origin(request)
        form = await _form(request)
        target = _safe_next(form.get("next"))
        key = form.get("key", "").strip()
        principal = keys.lookup(key) if key else None
        if principal is None:
            return render("login.html", 401, next=target, error="Okänd nyckel / unknown key",
                          keys_configured=not keys.empty)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE_NAME, key, max_age=COOKIE_MAX_AGE, path="/", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    @api.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> RedirectResponse:
        _same_origin(request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
        return response

    @api.get("/providers", include_in_schema=False)
    async def providers_page(request: Request) -> Response:
        principal = signed_in(request)
        if isinstance(principal, Response):
            return principal
        try:
            summaries = await service.summaries(principal)
        except Forbidden as error:
            return refused(principal, error)
        except ReadModelUnavailable as error:
            return unavailable(principal, error)
        return render("providers.html", principal=principal, today=service.today(), providers=summaries)

    @api.get("/providers/{provider_id}", include_in_schema=False)
    async def provider_page(request: Request, provider_id: str, system: str | None = None,
                            responsible: str | None = None, status: str | None = None,
                            notice: str | None = None, error: str | None = None,
                            sig: str | None = None) -> Response:
        principal = signed_in(request)
        if isinstance(principal, Response):
            return principal
        filters = {"system": _pick(system, list(SYSTEMS)), "responsible": _pick(responsible, RESPONSIBLE),
                   "status": _pick(status, STATUSES)}
        today = service.today()
        try:
            summary, rows = await service.provider_tasks(principal, provider_id, limit=PAGE_TASKS, offset=0, **filters)
            waited_for = {dep for row in rows for dep in row.waiting_for} - {row.record.task.id for row in rows}
            others = [found for dep in sorted(waited_for) if (found := await service.task_if_shown(dep)) is not None]
            verdicts = [verdict_view(verdict) for verdict in await service.verdicts(principal, provider_id)]
        except Forbidden as refusal:
            return refused(principal, refusal)
        except ReadModelUnavailable as failure:
            return unavailable(principal, failure)
        except NotFound:
            return render("error.html", 404, principal=principal, message=f"Inga uppgifter för {provider_id} / no tasks for this provider")
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in rows:  # groups in the order of their most urgent task
            groups.setdefault(row.record.task.system, []).append(task_view(row, today))
        labels = {row.record.task.id: f"{row.record.task.obligation} {row.record.task.action.replace('-', ' ')}"
                  for row in [*rows, *others]}
        back = request.url.path + (f"?{urlencode({k: v for k, v in filters.items() if v})}" if any(filters.values()) else "")
        return render(
            "provider.html", principal=principal, today=today, provider=summary,
            groups=groups, filters=filters, systems=list(SYSTEMS), responsibles=RESPONSIBLE, statuses=STATUSES,
            labels=labels, may_change=principal.may_change(provider_id), back=back, verdicts=verdicts,
            notice=messages.verified("notice", provider_id, notice, sig),
            error=messages.verified("error", provider_id, error, sig),
            shown=len(rows),
        )

    def csv_download(text: str, kind: str, provider_id: str) -> Response:
        filename = csv_filename(kind, provider_id, service.today())
        return Response(text, media_type="text/csv; charset=utf-8", headers={
            **SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'})

    @api.get("/providers/{provider_id}/access", include_in_schema=False)
    async def access_page(request: Request, provider_id: str, format: str | None = None) -> Response:
        principal = signed_in(request)
        if isinstance(principal, Response):
            return principal
        try:
            rows, places = await service.access(principal, provider_id, [*rules, *closing_rules])
        except Forbidden as refusal:
            return refused(principal, refusal)
        except ReadModelUnavailable as failure:
            return unavailable(principal, failure)
        accesses, show_ids = register(rows, catalog, places), principal.sees_person_ids()
        if format == "csv":
            return csv_download(access_csv(accesses, show_ids), "access", provider_id)
        return render("access.html", principal=principal, provider_id=provider_id, today=service.today(),
                      people=people_view(accesses, show_ids), held=sum(a.held for a in accesses),
                      closures=closures(rows, catalog))

    @api.get("/providers/{provider_id}/closures/{plan_id}", include_in_schema=False)
    async def closure_page(request: Request, provider_id: str, plan_id: str, format: str | None = None) -> Response:
        principal = signed_in(request)
        if isinstance(principal, Response):
            return principal
        try:
            rows, places = await service.access(principal, provider_id, [*rules, *closing_rules])
            report = closure_report(rows, catalog, plan_id, places)
        except Forbidden as refusal:
            return refused(principal, refusal)
        except ReadModelUnavailable as failure:
            return unavailable(principal, failure)
        if report is None:
            return render("error.html", 404, principal=principal, message="Ingen sådan stängning / no such closure")
        units, accesses = report
        show_ids = principal.sees_person_ids()
        if format == "csv":
            return csv_download(access_csv(accesses, show_ids), "closure", provider_id)
        held = [access for access in accesses if access.held]
        return render("closure.html", principal=principal, provider_id=provider_id, plan_id=plan_id, units=units,
                      access=[access_view(access, show_ids) for access in accesses], held=len(held))

    @api.post("/providers/{provider_id}/tasks/{task_id}/done", include_in_schema=False)
    async def mark_done(request: Request, provider_id: str, task_id: str) -> Response:
        principal = signed_in(request)
        if isinstance(principal, Response):
            return principal
        _same_origin(request)
        form = await _form(request)
        back = _safe_next(form.get("back"), f"/providers/{quote(provider_id, safe='')}")
        if not back.startswith(f"/providers/{quote(provider_id, safe='')}"):
            back = f"/providers/{quote(provider_id, safe='')}"
        try:
            outcome = await service.move(principal, task_id, StatusRequest(status="done"), provider_id=provider_id)
        except Forbidden as refusal:
            return refused(principal, refusal)
        except ReadModelUnavailable as failure:
            return unavailable(principal, failure)
        except (NotFound, IllegalMove) as failure:
            return RedirectResponse(messages.redirect(back, provider_id, "error", str(failure)), status_code=303)
        task = outcome.task or {}
        label = f"{task.get('obligation', '')} {str(task.get('action', '')).replace('-', ' ')}".strip() or task_id
        message = f"Klart: {label}" if outcome.status_code == 200 else f"Skickat, visas strax: {label}"
        return RedirectResponse(messages.redirect(back, provider_id, "notice", message) + f"#task-{task_id}",
                                status_code=303)
