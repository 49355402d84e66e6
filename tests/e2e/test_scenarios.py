"""Issue 3's scenarios through the real broker: each history is published to ``omboard.events``
and the planning services' tasks on the task topics must be exactly the dry run's (the same
planning code, so they cannot drift), and right for the scenario."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kafka import KafkaProducer

from schemas.catalog import load_catalog
from schemas.events import parse_event
from schemas.topics import EVENTS, NOTIFICATIONS, TASK_TOPICS
from schemas.wire import event_to_kafka
from services.devtools.processes import free_port
from services.domain.planner import Planner
from services.domain.state import ProviderState, evolve
from services.entrypoints.launcher import Stack
from tests import factories as f
from tests.conftest import TEST_PARTITIONS
from tests.support.kafka import TopicReader

pytestmark = pytest.mark.integration

CATALOG = load_catalog()
NURSE = f.hsa_id("SCN0001")
SENT = "2026-01-05T09:00:00+01:00"


def scenario_events(name: str) -> list[dict]:
    p = f"scn-{name}"
    unit = f"{p}-u1"
    started = dict(start_date="2026-04-01", units=[f.unit(unit, staff_count=12, field_groups=["Grupp A"])])
    if name == "takeover":
        return [f.provider_started(p, regi="privat", services=["hemtjanst"], hsl=True, takeover_from="scn-old", **started)]
    if name == "egen-special-housing":
        return [f.provider_started(p, regi="egen", services=["sarskilt_boende"], hsl=True, uses_flexite=True, **started)]
    if name == "ceases":
        return [f.provider_started(p, **started),
                f.staff_joined(p, unit_id=unit, person_id=NURSE, start_date="2026-03-20"),
                f.unit_closed(p, unit_id=unit, closing_date="2026-09-30")]
    if name == "taken-over":
        return [f.provider_started(p, **started),
                f.unit_closed(p, unit_id=unit, closing_date="2026-09-30", taken_over_by="scn-newcomer")]
    if name == "subcontractor":
        return [f.provider_started(p, **started),
                f.subcontractor_started(p, subcontractor_id=f"{p}-sub", start_date="2026-05-04"),
                f.staff_joined(p, unit_id=f"{p}-sub", person_id=f.hsa_id("SCN0002"), start_date="2026-05-04"),
                f.subcontractor_ended(p, subcontractor_id=f"{p}-sub", end_date="2026-10-30")]
    if name == "late-org-change":
        return [f.provider_started(p, **started),
                f.org_change_requested(p, size="large", decided_on="2026-05-04", effective_date="2026-06-01",
                                       unit_ids=[unit], time="2026-05-04T10:00:00+02:00")]
    if name == "nurse":
        return [f.provider_started(p, uses_flexite=True, **started),
                f.staff_joined(p, unit_id=unit, person_id=NURSE, start_date="2026-04-01"),
                f.staff_role_changed(p, person_id=NURSE, role="omvardnadspersonal", licensed=False, effective_date="2026-06-01"),
                f.staff_left(p, person_id=NURSE, end_date="2026-08-31")]
    raise KeyError(name)


SCENARIOS = ("takeover", "egen-special-housing", "ceases", "taken-over", "subcontractor", "late-org-change", "nurse")


def dry_run(events: list[dict]) -> list[dict]:
    """The plan of every event of the history, folded as the services fold it."""
    planner = Planner(CATALOG)
    states: dict[str, ProviderState] = {}
    tasks = []
    for raw in events:
        event = parse_event(raw)
        state = states.get(event.provider_id) or ProviderState(provider_id=event.provider_id)
        plan = planner.plan(event, state)
        states[event.provider_id] = evolve(state, event, plan, CATALOG)
        tasks += [task.model_dump(mode="json") for task in plan.tasks]
    return tasks


@pytest.fixture(scope="module")
def planners(broker, tmp_path_factory) -> Iterator[Stack]:
    stack = Stack(var_dir=tmp_path_factory.mktemp("scenarios"), bootstrap=broker.bootstrap, api_port=free_port(),
                  partitions=TEST_PARTITIONS, services=("orgstructure", "permissions"))
    with stack.running(timeout=90):
        yield stack


@pytest.fixture(scope="module")
def published(planners, broker) -> dict[str, list[dict]]:
    """Every scenario's history published at once; the planners work through them in parallel."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    histories = {name: scenario_events(name) for name in SCENARIOS}
    for events in histories.values():
        for raw in events:
            key, value, headers = event_to_kafka(parse_event(raw))
            producer.send(EVENTS, key=key, value=value, headers=headers)
    producer.flush()
    producer.close()
    return histories


@pytest.fixture(scope="module")
def emitted(published, broker) -> dict[str, dict]:
    """Task id -> task, of everything the planners emitted for the scenarios."""
    expected = {task["id"] for events in published.values() for task in dry_run(events)}
    reader = TopicReader(broker.bootstrap, *TASK_TOPICS)
    try:
        reader.wait_for(lambda rs: expected <= {json.loads(r.value)["id"] for r in rs}, timeout=60,
                        what=f"{len(expected)} scenario tasks")
        return {task["id"]: task for task in (json.loads(r.value) for r in reader.records)
                if task["subject"]["provider_id"].startswith("scn-")}
    finally:
        reader.close()


def test_the_services_emit_exactly_the_dry_run(published, emitted):
    planned = {task["id"]: task for events in published.values() for task in dry_run(events)}
    assert set(emitted) == set(planned)
    for task_id, task in planned.items():
        sent = {k: v for k, v in emitted[task_id].items() if k != "correlation_id"}
        assert sent == {k: v for k, v in task.items() if k != "correlation_id"}


def tasks_for(emitted: dict, provider_id: str) -> list[dict]:
    return [t for t in emitted.values() if t["subject"]["provider_id"] == provider_id]


def test_a_private_home_care_provider_with_health_care_taking_over(emitted):
    tasks = tasks_for(emitted, "scn-takeover")
    systems = {t["system"] for t in tasks}
    assert {"siebel", "siths", "prator", "phoniro"} <= systems and "flexite" not in systems
    assert any(t["obligation"] == "PH6" for t in tasks), "the taking-over company is registered in Phoniro"
    assert all(t["due"] < "2026-04-01" for t in tasks), "everything is in place before the start (ST1)"


def test_an_egen_regi_special_housing_provider_has_no_phoniro_and_orders_in_iris(emitted):
    tasks = tasks_for(emitted, "scn-egen-special-housing")
    assert not any(t["system"] == "phoniro" for t in tasks)
    assert {t["channel"] for t in tasks if t["obligation"] == "SB2"} == {"iris"}


def test_a_closure_that_ceases_returns_the_tokens_and_cancels_everything(emitted, published):
    tasks = tasks_for(emitted, "scn-ceases")
    _, joined_id, closed_id = [e["id"] for e in published["ceases"]]
    tokens = [t for t in tasks if t["obligation"] == "HO-SB4"]
    assert tokens and all("Verkstadsgatan 3B" in t["instructions"]["sv"] + t["instructions"]["en"] for t in tokens)
    granted = {t["system"] for t in tasks if t["subject"]["person_id"] == NURSE and t["plan_id"] == joined_id}
    cancelled = {t["system"] for t in tasks if t["subject"]["person_id"] == NURSE and t["plan_id"] == closed_id}
    assert granted and cancelled == granted, "every access the nurse got is cancelled with the unit"
    closes_flexite = [t for t in tasks if t["obligation"] == "HO-FX1"]
    deviations = [t for t in tasks if t["obligation"] == "HO-FX2"]
    assert not closes_flexite or all(set(d["id"] for d in deviations) & set(t["depends_on"]) for t in closes_flexite)


def test_a_closure_taken_over_leaves_the_tokens_and_gives_both_parties_tasks(emitted, published):
    closed_id = published["taken-over"][-1]["id"]
    handing = [t for t in tasks_for(emitted, "scn-taken-over") if t["plan_id"] == closed_id]
    taking = tasks_for(emitted, "scn-newcomer")
    assert handing and {t["responsible"] for t in handing} == {"handing-over-provider"}
    assert taking and {t["responsible"] for t in taking} == {"taking-over-provider"}
    tokens = [t for t in handing if t["obligation"] == "HO-SB4"]
    assert tokens and not any("Verkstadsgatan" in t["instructions"]["sv"] for t in tokens), "the tokens stay at the unit"


def test_a_subcontractor_from_start_to_end(emitted):
    tasks = tasks_for(emitted, "scn-subcontractor")
    obligations = {t["obligation"] for t in tasks}
    assert {"SC1", "SC2", "SC3"} <= obligations
    assert {t["responsible"] for t in tasks if t["obligation"] in ("SC2", "SC3") and t["subject"]["person_id"]} == {"main-provider"}


def test_an_organisation_change_ordered_too_late_warns_and_notifies_at_once(emitted, broker):
    tasks = tasks_for(emitted, "scn-late-org-change")
    ticket = next(t for t in tasks if t["obligation"] == "OC1")
    assert ticket["due"] < "2026-05-04"
    reader = TopicReader(broker.bootstrap, NOTIFICATIONS)

    def late_notices(records) -> set[str]:
        parties = set()
        for record in records:
            try:
                request = json.loads(record.value)
            except ValueError:
                continue  # other tests put malformed requests on this topic on purpose
            if (request.get("provider_id") == "scn-late-org-change" and request.get("kind") == "late-order"
                    and ticket["id"] in [line["task_id"] for line in request["tasks"]]):
                parties.add(request["responsible"])
        return parties

    try:
        reader.wait_for(lambda rs: late_notices(rs) >= {"provider", "klk-it"},
                        what="late-order notices to the provider and KLK IT")
    finally:
        reader.close()


def test_a_nurse_joins_changes_role_and_leaves_with_nothing_left_behind(emitted, published):
    tasks = tasks_for(emitted, "scn-nurse")
    plan_ids = [e["id"] for e in published["nurse"]]
    joined = [t for t in tasks if t["plan_id"] == plan_ids[1]]
    changed = [t for t in tasks if t["plan_id"] == plan_ids[2]]
    left = [t for t in tasks if t["plan_id"] == plan_ids[3]]
    by_system = {t["system"]: t for t in joined}
    assert {"siebel", "siths", "prator", "flexite"} <= set(by_system)
    assert by_system["siths"]["id"] in by_system["prator"]["depends_on"], "the SITHS card before Prator access"
    assert {t["system"] for t in changed} >= {"siths", "prator", "flexite"} and "siebel" not in {t["system"] for t in changed}
    assert {t["system"] for t in left} == set(by_system) - {t["system"] for t in changed}
