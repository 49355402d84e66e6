"""Who may do what over HTTP: API keys, their roles, and the FastAPI dependency that checks them.

Keys are configured by ``OMBOARD_API_KEYS``, a JSON list of entries::

    [{"name": "hr", "key_sha256": "<64 hex>", "role": "upstream", "event_types": ["StaffJoined"]},
     {"name": "klk-it", "key_sha256": "<64 hex>", "role": "operator"},
     {"name": "acme-admin", "key_sha256": "<64 hex>", "role": "provider-admin", "provider_id": "acme"},
     {"name": "ticketing", "key_sha256": "<64 hex>", "role": "system"}]

``omboard keys hash`` makes an entry. Only the SHA-256 of a key is configured; a presented key is
hashed and compared in constant time with every configured hash. Keys are never logged; a key's
*name* is what appears in logs, errors and status histories.

Roles:

| role | publishes events | reads task status | changes task status | people in the access register |
|---|---|---|---|---|
| ``upstream`` | of its ``event_types`` only | no | no | no |
| ``operator`` | confirms held rosters only | every provider | every provider | by HSA-id |
| ``provider-admin`` | no | its ``provider_id`` only | its ``provider_id`` only | by HSA-id |
| ``system`` | no | every provider | every provider (another system reporting work done) | by pseudonym |

With no key configured every request is refused (401) and the process warns at start: there is
no open mode.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.events import EVENT_TYPES
from schemas.parsing import FieldError, described, field_errors, field_name
from services.runtime import metrics

log = logging.getLogger(__name__)

Role = Literal["upstream", "operator", "provider-admin", "system"]
BEARER = "Bearer"
API_KEY_HEADER = "X-API-Key"
#: The status page's login cookie (HttpOnly, SameSite=Strict); it holds the key itself.
COOKIE_NAME = "omboard_key"
MIN_KEY_LENGTH = 16
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class KeyConfigError(ValueError):
    """``OMBOARD_API_KEYS`` cannot be used; the message names the entry and field, never a hash."""


class ApiKey(BaseModel):
    """One configured key: its name, the SHA-256 of the key, and what it may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:@-]+$")]
    key_sha256: str
    role: Role
    event_types: list[str] | None = None  # upstream only: which event types it may publish
    provider_id: str | None = None  # provider-admin only: the provider it administers

    @field_validator("key_sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.strip().lower()
        if not _HEX64.match(value):
            raise ValueError("must be the SHA-256 of the key as 64 hex digits (omboard keys hash)")
        return value

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str] | None) -> list[str] | None:
        unknown = [name for name in value or [] if name not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
        return value

    @model_validator(mode="after")
    def _fits_role(self) -> ApiKey:
        if self.role == "upstream" and not self.event_types:
            raise ValueError("an upstream key needs event_types, the event types it may publish")
        if self.role != "upstream" and self.event_types is not None:
            raise ValueError(f"event_types is for upstream keys, not {self.role}")
        if self.role == "provider-admin" and not self.provider_id:
            raise ValueError("a provider-admin key needs provider_id")
        if self.role != "provider-admin" and self.provider_id is not None:
            raise ValueError(f"provider_id is for provider-admin keys, not {self.role}")
        return self


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    """A new random key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def key_entry(name: str, key: str, role: Role, *, event_types: list[str] | None = None,
              provider_id: str | None = None) -> ApiKey:
    """The configuration entry for ``key`` (validated); ``.model_dump(exclude_none=True)`` is its JSON."""
    return ApiKey(name=name, key_sha256=hash_key(key), role=role, event_types=event_types, provider_id=provider_id)


def keys_json(entries: list[ApiKey]) -> str:
    """The value of ``OMBOARD_API_KEYS`` for ``entries``."""
    return json.dumps([entry.model_dump(exclude_none=True) for entry in entries])


def parse_keys(raw: str | None) -> list[ApiKey]:
    """Read ``OMBOARD_API_KEYS``; raises KeyConfigError naming the entry (by position and name)."""
    if raw is None or not raw.strip():
        return []
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise KeyConfigError(f"OMBOARD_API_KEYS is not valid JSON: {error.msg} at position {error.pos}") from None
    if not isinstance(data, list):
        raise KeyConfigError("OMBOARD_API_KEYS must be a JSON list of key entries")
    keys: list[ApiKey] = []
    for index, item in enumerate(data):
        label = f"entry {index}" + (f" ({item['name']!r})" if isinstance(item, dict) and isinstance(item.get("name"), str) else "")
        try:
            keys.append(ApiKey.model_validate(item))
        except ValidationError as error:
            raise KeyConfigError(f"OMBOARD_API_KEYS {label}: {described(field_errors(error, whole='(entry)'))}") from None
    names = [key.name for key in keys]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise KeyConfigError(f"OMBOARD_API_KEYS: duplicate key name(s) {', '.join(duplicates)}")
    hashes = [key.key_sha256 for key in keys]
    if len(set(hashes)) != len(hashes):
        raise KeyConfigError("OMBOARD_API_KEYS: two entries have the same key hash")
    return keys


class Forbidden(Exception):
    """A known key asked for something its role does not allow; the message says what."""


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's name and what it may do."""

    name: str
    role: Role
    event_types: frozenset[str] = frozenset()
    provider_id: str | None = None

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        return cls(key.name, key.role, frozenset(key.event_types or ()), key.provider_id)

    # -- questions -----------------------------------------------------------------------------
    def may_publish(self, event_type: str) -> bool:
        return self.role == "upstream" and event_type in self.event_types

    def sees_person_ids(self) -> bool:
        """Whether people appear by HSA-id (in the access register) rather than by pseudonym: for
        the keys of the people who order and cancel their access, KLK IT's and the provider's own."""
        return self.role in ("operator", "provider-admin")

    def sees_all(self) -> bool:
        return self.role in ("operator", "system")

    def sees(self, provider_id: str) -> bool:
        return self.sees_all() or (self.role == "provider-admin" and self.provider_id == provider_id)

    def may_change(self, provider_id: str) -> bool:
        return self.sees(provider_id)  # every role that reads a provider's tasks may also move them

    # -- checks that raise Forbidden naming what is not allowed ----------------------------------
    def require_publisher(self) -> None:
        if self.role != "upstream":
            raise Forbidden(f"key {self.name!r} ({self.role}) may not publish events")

    def require_publish(self, event_type: str) -> None:
        self.require_publisher()
        if not self.may_publish(event_type):
            raise Forbidden(f"key {self.name!r} may not publish {event_type}")

    def require_reader(self) -> None:
        if self.role == "upstream":
            raise Forbidden(f"key {self.name!r} (upstream) may not read task status")

    def require_sees(self, provider_id: str) -> None:
        self.require_reader()
        if not self.sees(provider_id):
            raise Forbidden(f"key {self.name!r} sees only provider {self.provider_id}")

    def require_change(self, provider_id: str) -> None:
        self.require_reader()
        if not self.may_change(provider_id):
            raise Forbidden(f"key {self.name!r} may change only tasks of provider {self.provider_id}")


class KeyRing:
    """The configured keys; looks a presented key up by its hash in constant time."""

    def __init__(self, keys: list[ApiKey]):
        self._keys = [(bytes.fromhex(key.key_sha256), Principal.of(key)) for key in keys]

    @classmethod
    def from_settings(cls, raw: str | None, process: str) -> KeyRing:
        """Parse ``OMBOARD_API_KEYS`` (raising KeyConfigError) and warn when it is empty."""
        ring = cls(parse_keys(raw))
        if ring.empty:
            log.warning("%s: no API keys configured (OMBOARD_API_KEYS); every request will be refused with 401. "
                        "Make one with: omboard keys hash --new", process)
        else:
            log.info("%s: %d API key(s) configured", process, len(ring))
        return ring

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def empty(self) -> bool:
        return not self._keys

    def lookup(self, presented: str) -> Principal | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for expected, principal in self._keys:  # every entry, so timing says nothing about which matched
            if hmac.compare_digest(digest, expected):
                found = principal
        return found


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": BEARER})


def presented_key(request: Request, *, cookie: bool = False) -> str | None:
    """The key from ``Authorization: Bearer``, ``X-API-Key`` or (for the page) the login cookie."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == BEARER.lower() and value.strip():
            return value.strip()
    value = request.headers.get(API_KEY_HEADER)
    if value and value.strip():
        return value.strip()
    if cookie:
        value = request.cookies.get(COOKIE_NAME)
        if value:
            return value
    return None


def authenticate(ring: KeyRing, request: Request, *, cookie: bool = False) -> Principal:
    """The principal of the request, or HTTPException 401 (with ``WWW-Authenticate: Bearer``)."""
    if ring.empty:
        raise unauthorized("no API keys are configured on this server (OMBOARD_API_KEYS); every request is refused")
    key = presented_key(request, cookie=cookie)
    if key is None:
        raise unauthorized(f"an API key is required: send 'Authorization: Bearer <key>' or '{API_KEY_HEADER}: <key>'")
    principal = ring.lookup(key)
    if principal is None:
        raise unauthorized("unknown API key")
    return principal


def require_key(ring: KeyRing, *, cookie: bool = False) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: ``principal: Principal = Depends(require_key(ring))``."""

    async def dependency(request: Request) -> Principal:
        principal = authenticate(ring, request, cookie=cookie)
        request.state.principal = principal
        return principal

    return dependency


def forbidden(error: Forbidden) -> HTTPException:
    return HTTPException(status_code=403, detail=str(error))


def count_requests(api: FastAPI) -> None:
    """Count every request in ``omboard_api_requests_total`` by route template (never the path
    itself: it may hold ids) and status."""

    @api.middleware("http")
    async def _count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            metrics.API_REQUESTS.labels(getattr(route, "path", "(unmatched)"), str(status)).inc()


def request_field_errors(error: RequestValidationError) -> list[FieldError]:
    """FastAPI's validation problems as field/reason pairs, never the input: what a client sent
    may be a personal identity number, and FastAPI's own answer echoes it."""
    result = []
    for item in error.errors():
        location = list(item.get("loc", ()))
        reason = str(item.get("msg", "is not valid")).removeprefix("Value error, ")
        if item.get("type") == "json_invalid":  # its location is a character offset, not a field
            result.append(FieldError(field="(body)", reason="is not valid JSON"))
            continue
        if location[:1] == ["body"]:  # the body's fields are named as the intake names them
            location = location[1:]
        field, named, rest = reason.partition(": ")
        if not location and named and re.fullmatch(r"[a-z_]+", field):  # a model check naming its field
            location, reason = [field], rest
        result.append(FieldError(field=field_name(location) or "(body)", reason=reason))
    return result


def install_validation_errors(api: FastAPI) -> None:
    """Answer a request FastAPI could not validate with 422 ``{"errors": [{"field", "reason"}]}``,
    the intake's shape, and a one-line ``detail`` for clients that read only that (``omboard task``)."""

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = request_field_errors(error)
        return JSONResponse({"errors": [e.model_dump() for e in errors],
                             "detail": described(errors)}, status_code=422)
