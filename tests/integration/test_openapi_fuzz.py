"""Schemathesis against both OpenAPI documents: the intake's (``POST /v1/events``) and the status
API's, each app in-process (schemathesis' ASGI transport), with real API keys.

Each generates requests from the app's own ``/openapi.json``, valid and invalid ones, and checks:
no 5xx but the intake's documented 503 (Kafka unavailable; ``/readyz`` the same), and every 4xx body
names its field: ``errors[]`` of ``field`` and ``reason`` (the intake's 422 and 413), or a ``detail``.

The intake publishes to a real Apache Kafka (the session ``broker``), on a topic of its own so that
no worker of another test reads what the fuzzer sent. The status API reads real ledgers of planned
tasks through a fake store; status changes are applied as the reporting agent would.

Deterministic (``derandomize``) and bounded (``max_examples``): well under a minute together.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python import asgi

from schemas.catalog import load_catalog
from schemas.parsing import parse_event
from schemas.status import TaskStatusChange
from services.devtools.embedded import Broker
from services.domain.ledger import IllegalMove, Ledger, UnknownTask, change_status, record_task
from services.domain.planner import Planner
from services.domain.state import ProviderState
from services.http.access import KeyRing, key_entry
from services.intake.api import create_api
from services.intake.publisher import EventPublisher
from services.reporting.api import create_status_api
from services.runtime.broker import create_topics
from services.runtime.clock import FixedClock
from services.runtime.settings import Settings
from tests import factories as f
from tests import strategies as s
from tests.support.ledgers import FakeStore

pytestmark = pytest.mark.integration

#: Not ``omboard.events``: the workers that other tests start read that from the beginning.
FUZZ_TOPIC = "omboard.fuzz.events"

UPSTREAM = "fuzz-upstream-key-0123456789abcdef"  # may publish every type
LIMITED = "fuzz-limited-key-0123456789abcdef"  # may publish StaffLeft only
OPERATOR = "fuzz-operator-key-0123456789abcdef"
ACME = "fuzz-acme-admin-key-0123456789abcd"  # provider-admin of acme
SYSTEM = "fuzz-system-key-0123456789abcdefg"
UNKNOWN = "fuzz-unknown-key-0123456789abcdef"  # configured nowhere
KEYS = KeyRing([
    key_entry("fuzz-hr", UPSTREAM, "upstream", event_types=list(s.EVENTS)),
    key_entry("fuzz-hr-leavers", LIMITED, "upstream", event_types=["StaffLeft"]),
    key_entry("fuzz-klk-it", OPERATOR, "operator"),
    key_entry("fuzz-acme-admin", ACME, "provider-admin", provider_id="acme"),
    key_entry("fuzz-ticketing", SYSTEM, "system"),
])


def fuzz(max_examples: int):
    """Bounded and the same run every time; no shrinking to chase for minutes on a shared machine
    (a failure is reported with the request that caused it)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def names_its_field(body: Any, *, errors_required: bool) -> None:
    """A 4xx body says what was wrong: ``errors[]`` each naming a field and a reason, or a
    ``detail`` (a sentence, or FastAPI's list of problems each with its ``loc``)."""
    assert isinstance(body, dict), body
    errors = body.get("errors")
    if errors_required or errors is not None:
        assert isinstance(errors, list) and errors, body
        for error in errors:
            assert isinstance(error, dict) and str(error.get("field", "")).strip() and str(error.get("reason", "")).strip(), body
        return
    detail = body.get("detail")
    if isinstance(detail, list):
        assert detail and all(isinstance(item, dict) and item.get("loc") for item in detail), body
    else:
        assert isinstance(detail, str) and detail.strip(), body


def check(case: schemathesis.Case, response: schemathesis.Response, *, documented_5xx: set[tuple[str, int]]) -> None:
    status = response.status_code
    where = f"{case.method} {case.formatted_path}"
    assert status < 500 or (case.path, status) in documented_5xx, f"{where}: {status} {response.text[:500]}"
    if 400 <= status < 500:
        names_its_field(response.json(), errors_required=case.path == "/v1/events" and status in (413, 422))


# -- the intake ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def intake_app(broker: Broker) -> Iterator[Any]:
    create_topics(broker.bootstrap, [FUZZ_TOPIC], 1)
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    publisher = EventPublisher(broker.bootstrap, settings, topic=FUZZ_TOPIC, timeout=10)
    app = create_api(settings, publisher=publisher, keys=KEYS)
    try:
        yield app
    finally:
        asgi.shutdown_lifespans()  # the app's lifespan, which schemathesis started: stops the producer


def test_the_intake_api_answers_no_5xx_and_names_every_bad_field(intake_app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", intake_app)
    events = schema["/v1/events"]["POST"]
    keys = st.sampled_from([UPSTREAM, UPSTREAM, UPSTREAM, LIMITED, UNKNOWN, None])
    answered: Counter[int] = Counter()

    def send(case: schemathesis.Case, key: str | None) -> None:
        response = case.call(headers=bearer(key))
        answered[response.status_code] += 1
        check(case, response, documented_5xx={("/v1/events", 503), ("/readyz", 503)})
        if response.status_code == 202:
            assert response.json()["id"] == parse_event(case.body).id

    # Schemathesis' own cases from the document, valid and invalid (a schema-valid body seldom has
    # the Luhn digits and dates in the window: nearly all of them are refused, naming the fields) ...
    @fuzz(150)
    @given(case=schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(GenerationMode.NEGATIVE), key=keys)
    def from_the_document(case: schemathesis.Case, key: str | None) -> None:
        send(case, key)

    # ... and valid events of every type, the limits among them, which reach Kafka.
    @fuzz(40)
    @given(raw=s.events(), key=keys)
    def valid_events(raw: dict, key: str | None) -> None:
        send(events.Case(body=raw, media_type="application/json"), key)

    from_the_document()
    valid_events()
    # One case of each answer for certain (which keys the runs drew is Hypothesis' choice): a type
    # the key may not publish, an event without a key, and one with an unknown key.
    for body, key in ((f.provider_started(), LIMITED), (f.staff_left(), None), (f.staff_left(), UNKNOWN)):
        send(events.Case(body=body, media_type="application/json"), key)
    # The runs went everywhere: published, refused as invalid, without a key, and for a type.
    assert {202, 401, 403, 422} <= set(answered), answered
    assert answered[503] == 0, f"Kafka was there all along: {answered}"


# -- the status API --------------------------------------------------------------------------------

PLANNER = Planner(load_catalog())
PLANNED_AT = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


def _planned(provider_id: str) -> Ledger:
    event = parse_event(f.provider_started(provider_id, event_id=f"fuzz-{provider_id}", units=[f.unit("u1"), f.unit("u2")]))
    ledger = Ledger(provider_id=provider_id)
    for task in PLANNER.plan(event, ProviderState(provider_id=provider_id)).tasks:
        ledger, _ = record_task(ledger, task, PLANNED_AT)
    return ledger


class LedgerStore(FakeStore):
    """The reporting worker's ledger table, in memory; ``reset`` puts back the planned ledgers."""

    def __init__(self, *ledgers: Ledger):
        super().__init__(*ledgers)
        self.planned = dict(self.tables)

    def reset(self) -> None:
        self.tables = dict(self.planned)


@pytest.fixture
def status_app() -> Iterator[tuple[Any, LedgerStore]]:
    store = LedgerStore(_planned("acme"), _planned("other"))

    async def publish(change: TaskStatusChange, correlation: str | None) -> None:
        # As the reporting agent applies it; a change it refuses goes to the dead letters instead.
        with contextlib.suppress(IllegalMove, UnknownTask):
            store.tables[change.provider_id] = change_status(store.load(change.provider_id), change)[0]

    # "Today" after half of acme's tasks fell due, so that some are overdue.
    dues = sorted({record.task.due for record in store.load("acme").tasks.values()})
    clock = FixedClock(dt.datetime.combine(dues[len(dues) // 2], dt.time(10, 0), tzinfo=dt.UTC))
    app = create_status_api(store, KEYS, publish, clock, Settings(status_wait_timeout=0.3), PLANNER.catalog)
    try:
        yield app, store
    finally:
        asgi.shutdown_lifespans()


def test_the_status_api_answers_no_5xx_and_names_every_bad_field(status_app):
    app, store = status_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    tasks = schema["/v1/providers/{provider_id}/tasks"]["GET"]
    status = schema["/v1/tasks/{task_id}/status"]["POST"]
    # Real ids now and then, or every path would be a 404: tasks that are open, blocked and of the
    # provider the provider-admin key may not see.
    real_tasks = sorted(store.load("acme").tasks)[:3] + sorted(store.load("other").tasks)[:1]
    blocked = [tid for tid, record in store.load("acme").tasks.items() if record.status == "blocked"][:1]
    cases = st.one_of(
        *(schema.as_strategy(mode) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)),
        *(tasks.as_strategy(mode, path_parameters={"provider_id": provider}) for mode in GenerationMode
          for provider in ("acme", "other")),
        *(status.as_strategy(mode, path_parameters={"task_id": task_id}) for mode in GenerationMode
          for task_id in real_tasks + blocked),
    )  # fmt: skip
    keys = st.sampled_from([OPERATOR, OPERATOR, ACME, ACME, SYSTEM, UPSTREAM, UNKNOWN, None])
    answered: Counter[int] = Counter()

    @fuzz(200)
    @given(case=cases, key=keys)
    def run(case: schemathesis.Case, key: str | None) -> None:
        store.reset()  # every example starts from the planned ledgers
        response = case.call(headers=bearer(key))
        answered[response.status_code] += 1
        check(case, response, documented_5xx=set())

    run()
    assert {200, 401, 403, 404, 422} <= set(answered), answered
