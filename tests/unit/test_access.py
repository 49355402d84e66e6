"""API keys: hashing, configuration, roles, and the 401/403 answers (no broker)."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
from fastapi import Depends, FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel
from typer.testing import CliRunner

from services.entrypoints.cli import app as cli
from services.http.access import (
    ApiKey,
    Forbidden,
    KeyConfigError,
    KeyRing,
    Principal,
    generate_key,
    hash_key,
    install_validation_errors,
    key_entry,
    keys_json,
    parse_keys,
    require_key,
)
from services.runtime.settings import Settings
from tests import factories as f

HR_KEY, OPS_KEY, ACME_KEY, SYS_KEY = "hr-key-0123456789abcdef", "ops-key-0123456789abcdef", "acme-key-0123456789abcd", "sys-key-0123456789abcdef"
ENTRIES = [
    key_entry("hr", HR_KEY, "upstream", event_types=["StaffJoined", "StaffLeft"]),
    key_entry("klk-it", OPS_KEY, "operator"),
    key_entry("acme-admin", ACME_KEY, "provider-admin", provider_id="acme"),
    key_entry("ticketing", SYS_KEY, "system"),
]


def test_a_key_is_stored_as_its_sha256_and_looked_up_by_it():
    assert hash_key("secret") == hashlib.sha256(b"secret").hexdigest()
    assert all(len(entry.key_sha256) == 64 for entry in ENTRIES)
    ring = KeyRing(parse_keys(keys_json(ENTRIES)))
    assert ring.lookup(OPS_KEY) == Principal("klk-it", "operator")
    assert ring.lookup(ACME_KEY).provider_id == "acme"
    assert ring.lookup("nope") is None
    assert ring.lookup(hash_key(OPS_KEY)) is None  # the hash itself is not a key
    assert OPS_KEY not in keys_json(ENTRIES)


def test_generated_keys_are_long_and_distinct():
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20 and all(len(key) >= 40 for key in keys)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{nope", "not valid JSON"),
        ('{"name": "x"}', "must be a JSON list"),
        ('[{"name": "hr", "key_sha256": "abc", "role": "operator"}]', "entry 0 ('hr'): key_sha256"),
        ('[{"name": "hr", "key_sha256": "' + "a" * 64 + '", "role": "upstream"}]', "needs event_types"),
        ('[{"name": "hr", "key_sha256": "' + "a" * 64 + '", "role": "upstream", "event_types": ["Nope"]}]', "unknown event type(s) Nope"),
        ('[{"name": "a", "key_sha256": "' + "a" * 64 + '", "role": "provider-admin"}]', "needs provider_id"),
        ('[{"name": "a", "key_sha256": "' + "a" * 64 + '", "role": "root"}]', "role"),
        ('[{"name": "a", "key_sha256": "' + "a" * 64 + '", "role": "operator", "provider_id": "x"}]', "provider_id is for"),
        (json.dumps([e.model_dump(exclude_none=True) for e in ENTRIES[:2]] + [{**ENTRIES[1].model_dump(exclude_none=True), "key_sha256": "b" * 64}]),
         "duplicate key name(s) klk-it"),
    ],
)
def test_a_broken_key_configuration_is_refused_naming_the_entry(raw, message):
    with pytest.raises(KeyConfigError) as error:
        parse_keys(raw)
    assert message in str(error.value)
    assert "a" * 64 not in str(error.value)


def test_roles():
    hr, ops, acme, system = (Principal.of(entry) for entry in ENTRIES)
    assert hr.may_publish("StaffJoined") and not hr.may_publish("UnitClosed")
    assert not ops.may_publish("StaffJoined") and not acme.may_publish("StaffJoined")
    assert ops.sees("anyone") and system.sees("anyone") and acme.sees("acme") and not acme.sees("other")
    assert ops.may_change("x") and system.may_change("x") and acme.may_change("acme") and not acme.may_change("x")
    assert not hr.sees("acme")
    with pytest.raises(Forbidden, match="key 'hr' may not publish UnitClosed"):
        hr.require_publish("UnitClosed")
    with pytest.raises(Forbidden, match="key 'acme-admin' sees only provider acme"):
        acme.require_sees("other")
    with pytest.raises(Forbidden, match=r"key 'klk-it' \(operator\) may not publish events"):
        ops.require_publisher()
    with pytest.raises(Forbidden, match=r"key 'hr' \(upstream\) may not read task status"):
        hr.require_sees("acme")


def protected(ring: KeyRing) -> TestClient:
    api = FastAPI()

    @api.get("/who")
    async def who(principal: Principal = Depends(require_key(ring))) -> dict:
        return {"name": principal.name}

    return TestClient(api)


def test_the_dependency_takes_bearer_or_x_api_key_and_answers_401_otherwise():
    client = protected(KeyRing(ENTRIES))
    assert client.get("/who", headers={"Authorization": f"Bearer {OPS_KEY}"}).json() == {"name": "klk-it"}
    assert client.get("/who", headers={"X-API-Key": ACME_KEY}).json() == {"name": "acme-admin"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {OPS_KEY}"}, {"X-API-Key": ""}):
        response = client.get("/who", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert OPS_KEY not in response.text


def test_with_no_key_configured_everything_is_refused_and_a_warning_logged(caplog):
    with caplog.at_level(logging.WARNING):
        ring = KeyRing.from_settings(None, "test API")
    assert "no API keys configured" in caplog.text
    response = protected(ring).get("/who", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 401
    assert "no API keys are configured" in response.json()["detail"]


def test_intake_refuses_without_a_key_and_checks_the_type_after_validation():
    from services.intake.api import create_api

    class NeverPublishes:
        started = True

        async def start(self): ...
        async def stop(self): ...
        async def publish(self, event, correlation_id=None):  # pragma: no cover - not reached here
            raise AssertionError("must not publish")

    api = create_api(Settings(api_keys=keys_json(ENTRIES)), NeverPublishes())  # type: ignore[arg-type]
    with TestClient(api) as client:
        assert client.post("/v1/events", json=f.unit_closed()).status_code == 401
        bad = client.post("/v1/events", json=f.staff_left(person_id="SE1-x"), headers={"Authorization": f"Bearer {HR_KEY}"})
        assert bad.status_code == 422
        refused = client.post("/v1/events", json=f.unit_closed(), headers={"Authorization": f"Bearer {HR_KEY}"})
        assert refused.status_code == 403
        assert refused.json()["detail"] == "key 'hr' may not publish UnitClosed"
        operator = client.post("/v1/events", json=f.staff_left(), headers={"X-API-Key": OPS_KEY})
        assert operator.status_code == 403 and "may not publish events" in operator.json()["detail"]
        exposition = client.get("/metrics")
        assert exposition.status_code == 200
        assert 'omboard_api_events_rejected_total{status="403"}' in exposition.text
        assert 'omboard_api_requests_total{route="/v1/events",status="401"}' in exposition.text


class StatusBody(BaseModel):
    status: int


def test_a_request_that_fails_validation_gets_field_and_reason_and_never_its_input():
    api = FastAPI()
    install_validation_errors(api)

    @api.post("/x")
    async def x(body: StatusBody, page: int = Query(1)) -> dict[str, int]:  # pragma: no cover - never valid here
        return {"status": body.status}

    secret = "19121212-1212"
    response = TestClient(api).post("/x", params={"page": secret}, json={"status": secret})
    assert response.status_code == 422
    assert secret not in response.text
    not_an_integer = "Input should be a valid integer, unable to parse string as an integer"
    assert sorted(response.json()["errors"], key=lambda e: e["field"]) == [
        {"field": "query.page", "reason": not_an_integer}, {"field": "status", "reason": not_an_integer},
    ]


def test_keys_hash_reads_stdin_and_prints_the_hash_and_an_entry():
    result = CliRunner().invoke(cli, ["keys", "hash", "--name", "hr", "--role", "upstream", "--event-type", "StaffJoined"],
                                input=HR_KEY + "\n")
    assert result.exit_code == 0, result.output
    assert hash_key(HR_KEY) in result.stdout
    assert HR_KEY not in result.stdout
    entry = json.loads(result.stdout.strip().splitlines()[-1])
    assert ApiKey.model_validate(entry) == ENTRIES[0].model_copy(update={"event_types": ["StaffJoined"]})


def test_keys_hash_new_generates_a_key_and_refuses_short_ones():
    result = CliRunner().invoke(cli, ["keys", "hash", "--new", "--name", "ops", "--role", "operator"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    key = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("key:"))
    entry = json.loads(lines[-1])
    assert entry == {"name": "ops", "key_sha256": hash_key(key), "role": "operator"}
    short = CliRunner().invoke(cli, ["keys", "hash"], input="short\n")
    assert short.exit_code == 2
    bad_role = CliRunner().invoke(cli, ["keys", "hash", "--new", "--role", "upstream"])
    assert bad_role.exit_code == 2 and "event_types" in bad_role.output
