"""The ``omboard`` command line, through typer's CliRunner (no broker needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from schemas.catalog import DEFAULT_CATALOG, load_catalog
from schemas.events import EVENT_TYPES
from schemas.identifiers import pseudonym
from schemas.parsing import parse_event
from schemas.topics import ALL_TOPICS
from services.devtools.processes import free_port
from services.domain.planner import Planner
from services.domain.state import ProviderState, evolve
from services.entrypoints.cli import app
from tests import factories as f

runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(arg) for arg in args])


# -- catalog check -----------------------------------------------------------------------------------


def test_catalog_check_ok():
    catalog = load_catalog()
    result = invoke("catalog", "check")
    assert result.exit_code == 0, result.output
    expected = (
        f"catalog uppsala version {catalog.version}: {len(catalog.rules)} rules, {len(catalog.obligations)} obligations OK"
    )
    assert result.stdout.strip() == expected


def test_catalog_coverage_lists_every_obligation_of_the_register_with_its_rules():
    from schemas.catalog.coverage import register_ids

    result = invoke("catalog", "coverage")
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.stdout.splitlines() if line and not line.startswith(" ")}
    assert listed == set(register_ids())
    assert "siebel-send-org-structure" in result.stdout and "no task:" in result.stdout


def test_catalog_coverage_fails_naming_an_obligation_without_rule_or_reason(tmp_path):
    register = tmp_path / "OBLIGATIONS.md"
    register.write_text("- **G1** context\n- **ZZ9** an obligation the catalog never heard of\n", encoding="utf-8")
    result = invoke("catalog", "coverage", "--register", register)
    assert result.exit_code == 1
    assert "ZZ9" in result.stderr


def test_catalog_check_of_a_broken_copy_names_the_rule_and_the_field(tmp_path):
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    rule_id = raw["rules"][0]["id"]
    raw["rules"][0]["deadline"]["unit"] = "fortnights"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")

    result = invoke("catalog", "check", "--catalog", broken)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert rule_id in result.stderr
    assert "deadline.unit" in result.stderr
    assert str(broken) in result.stderr


def test_catalog_check_of_a_missing_file(tmp_path):
    result = invoke("catalog", "check", "--catalog", tmp_path / "nope.yaml")
    assert result.exit_code == 1
    assert "no such file" in result.stderr


# -- schemas export ----------------------------------------------------------------------------------


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _assert_json_schema(schema: dict) -> None:
    """Structural checks of a JSON Schema (2020-12): an object schema whose every $ref resolves."""
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["properties"] and set(schema["required"]) <= set(schema["properties"])
    assert schema.get("additionalProperties") is False  # the contract forbids unknown fields
    for ref in _refs(schema):
        assert ref.startswith("#/$defs/"), ref
        assert ref.removeprefix("#/$defs/") in schema["$defs"], ref
    json.dumps(schema)  # plain JSON all the way down


def test_schemas_export_writes_a_json_schema_for_every_type(tmp_path):
    out = tmp_path / "schemas" / "v1"
    result = invoke("schemas", "export", out)
    assert result.exit_code == 0, result.output

    names = {path.name for path in out.iterdir()}
    expected = {f"{event_type}.json" for event_type in EVENT_TYPES} | {
        "envelope.json", "task.json", "notification-request.json", "delivery-record.json", "topics.json",
        "task-status-change.json", "holding.json", "date-verdict.json", "asyncapi.json",
    }  # fmt: skip
    assert names == expected
    for name in expected:
        assert str(out / name) in result.stdout

    for event_type, model in EVENT_TYPES.items():
        schema = json.loads((out / f"{event_type}.json").read_text(encoding="utf-8"))
        _assert_json_schema(schema)
        assert schema["properties"]["type"]["const"] == event_type
        assert schema["properties"]["data"] == {"$ref": f"#/$defs/{event_type}"}
        data_schema = schema["$defs"][event_type]
        assert set(data_schema["properties"]) == set(model.model_fields)
        assert {"specversion", "id", "source", "type", "time", "data"} <= set(schema["required"])
        # Only this type's data model: another event type is not in its definitions.
        assert not (set(schema["$defs"]) & (set(EVENT_TYPES) - {event_type}))
        # A valid example has every required property of the envelope and of its data.
        example = f.BUILDERS[event_type]()
        assert set(schema["required"]) <= set(example)
        assert set(data_schema.get("required", [])) <= set(example["data"])

    envelope = json.loads((out / "envelope.json").read_text(encoding="utf-8"))
    _assert_json_schema(envelope)
    assert set(envelope["properties"]["type"]["enum"]) == set(EVENT_TYPES)
    for name in ("task.json", "notification-request.json", "delivery-record.json"):
        _assert_json_schema(json.loads((out / name).read_text(encoding="utf-8")))

    topics = json.loads((out / "topics.json").read_text(encoding="utf-8"))
    assert [topic["name"] for topic in topics] == list(ALL_TOPICS)
    by_name = {topic["name"]: topic for topic in topics}
    assert by_name["omboard.events"] == {
        "name": "omboard.events",
        "key": "provider id",
        "value": "Envelope",
        "description": by_name["omboard.events"]["description"],
    }
    assert all(set(topic) == {"name", "key", "value", "description"} for topic in topics)


# -- plan (dry run) ----------------------------------------------------------------------------------


def _expected_plan(raw_events: list[dict], catalog=None) -> dict:
    """What the services would plan for the last event, folding the others (the reference)."""
    catalog = catalog or load_catalog()
    planner = Planner(catalog)
    events = [parse_event(raw) for raw in raw_events]
    states: dict[str, ProviderState] = {}
    for event in events[:-1]:
        state = states.get(event.provider_id) or ProviderState(provider_id=event.provider_id)
        states[event.provider_id] = evolve(state, event, planner.plan(event, state), catalog)
    last = events[-1]
    state = states.get(last.provider_id) or ProviderState(provider_id=last.provider_id)
    return planner.plan(last, state).model_dump(mode="json")


def test_plan_of_a_single_provider_started(tmp_path):
    event = f.provider_started(event_id="evt-start", units=[f.unit("u1", staff_count=25), f.unit("u2", staff_count=3)])
    path = f.write_json(tmp_path / "start.json", event)

    result = invoke("plan", path)

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert set(plan) == {"event_id", "catalog_version", "tasks", "warnings", "holdings", "judged_date"}
    assert plan["event_id"] == "evt-start"
    assert plan["catalog_version"] == load_catalog().version
    assert plan["tasks"], "a ProviderStarted plans tasks"
    assert all(task["plan_id"] == "evt-start" for task in plan["tasks"])
    assert plan == _expected_plan([event])


def test_plan_of_a_history_folds_the_earlier_events(tmp_path):
    history = [
        f.provider_started(event_id="evt-1", units=[f.unit("u1"), f.unit("u2")]),
        f.staff_joined(event_id="evt-2", unit_id="u1", person_id=f.hsa_id("A1")),
        f.unit_closed(event_id="evt-3", unit_id="u2", closing_date="2026-06-30"),
    ]
    path = f.write_jsonl(tmp_path / "history.jsonl", history)

    result = invoke("plan", path)

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["event_id"] == "evt-3"
    assert plan == _expected_plan(history)


def test_plan_of_an_event_for_a_provider_never_started_names_the_line(tmp_path):
    path = f.write_jsonl(tmp_path / "history.jsonl", [f.provider_started(), f.unit_closed(provider_id="someone-else")])
    result = invoke("plan", path)
    assert result.exit_code == 2
    assert f"{path}:2: data.provider_id:" in result.stderr
    assert result.stdout == ""


def test_plan_of_bad_input_names_line_and_field(tmp_path):
    bad = f.staff_joined(start_date="2026-02-31")
    path = f.write_jsonl(tmp_path / "history.jsonl", [f.provider_started(), bad])
    result = invoke("plan", path)
    assert result.exit_code == 2
    assert f"{path}:2: data.start_date:" in result.stderr
    assert result.stdout == ""


@pytest.fixture
def catalog_with_a_person_rule(tmp_path) -> Path:
    """The Uppsala catalog plus a person-scoped rule, so a plan has a person in it."""
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    raw["obligations"]["ZZ1"] = {"title": "Test: an account for every joiner"}
    raw["rules"].append({
        "id": "test-person-account",
        "obligation": "ZZ1",
        "triggers": ["StaffJoined"],
        "scope": "person",
        "system": "siebel",
        "action": "create-account",
        "channel": "it-support",
        "responsible": "klk-it",
        "deadline": {"offset": -2, "unit": "business_days"},
        "instructions": {"sv": "Skapa ett konto.", "en": "Create an account."},
    })  # fmt: skip
    raw["rules"].append({  # whatever is granted, leaving takes away again
        "id": "test-person-account-cancel",
        "obligation": "ZZ1",
        "triggers": ["StaffLeft"],
        "scope": "person",
        "revokes": "test-person-account",
        "system": "siebel",
        "action": "cancel-account",
        "channel": "it-support",
        "responsible": "klk-it",
        "deadline": {"offset": 0, "unit": "days"},
        "instructions": {"sv": "Avsluta kontot.", "en": "Close the account."},
    })  # fmt: skip
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_plan_table_shows_a_pseudonym_never_the_hsa_id(tmp_path, catalog_with_a_person_rule):
    person_id = f.hsa_id("NURSE42")
    history = [f.provider_started(), f.staff_joined(person_id=person_id, event_id="evt-join")]
    path = f.write_jsonl(tmp_path / "history.jsonl", history)

    table = invoke("plan", path, "--catalog", catalog_with_a_person_rule, "--format", "table")
    as_json = invoke("plan", path, "--catalog", catalog_with_a_person_rule)

    assert table.exit_code == 0, table.output
    assert person_id not in table.stdout
    assert "NURSE42" not in table.stdout
    assert pseudonym(person_id) in table.stdout
    header = next(line for line in table.stdout.splitlines() if line.startswith("due"))
    assert re.split(r"\s{2,}", header) == [
        "due", "checklist", "status", "system", "obligation", "action", "channel", "responsible", "unit", "person", "quantity",
    ]  # fmt: skip
    assert "create-account" in table.stdout
    # JSON is what the services emit: the subject carries the HSA-id.
    plan = json.loads(as_json.stdout)
    [task] = [task for task in plan["tasks"] if task["rule"] == "test-person-account"]
    assert task["subject"]["person_id"] == person_id


def test_plan_table_lists_every_task_and_the_warnings(tmp_path):
    # Sent a week before the start: the deadlines 10 and 20 business days before it have passed.
    event = f.provider_started(start_date="2026-03-02", time=f.at("2026-02-23"))
    path = f.write_json(tmp_path / "late.json", event)
    plan = json.loads(invoke("plan", path).stdout)
    assert plan["warnings"]

    result = invoke("plan", path, "--format", "table")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for task in plan["tasks"]:
        assert any(task["action"] in line and task["due"] in line for line in lines), task["action"]
    warnings_at = lines.index("warnings:")
    header_at = lines.index(next(line for line in lines if line.startswith("due")))
    assert header_at < warnings_at
    # The date-at-risk verdict is told first, with its chain; the other warnings after the tasks.
    (verdict,) = [warning for warning in plan["warnings"] if warning["code"] == "date-at-risk"]
    assert lines[2] == (f"verdict: DATE AT RISK. 2026-03-02 cannot be met; the earliest date that can is "
                        f"{verdict['earliest_feasible']}")
    assert lines[3] == "critical chain:"
    chain = lines[4:4 + len(verdict["chain"])]
    assert [step["action"] for step in verdict["chain"]] == [line.split()[-1] if " on " not in line else
                                                            line.split(" on ")[0].split()[-1] for line in chain]
    assert all(line.lstrip().startswith(f"{number}. ") for number, line in enumerate(chain, 1)) and 4 + len(chain) < header_at
    assert len(lines[warnings_at + 1:]) == len(plan["warnings"]) - 1
    # Each task's checklist date stands beside the date it is due, where they differ.
    late = next(task for task in plan["tasks"] if task["checklist_due"])
    assert any(late["due"] in line and late["checklist_due"] in line and late["action"] in line for line in lines)


def test_plan_table_says_a_date_can_be_met(tmp_path):
    path = f.write_json(tmp_path / "early.json", f.provider_started(start_date="2026-09-01", time=f.at("2026-02-23")))
    lines = invoke("plan", path, "--format", "table").stdout.splitlines()
    assert lines[2] == "verdict: 2026-09-01 can be met: every task the checklist needs by then is due by then"


def test_the_dry_run_of_a_roster_shows_the_places_people_took_by_pseudonym(tmp_path):
    nurse = f.hsa_id("CLI0001")
    events = [f.provider_started(units=[f.unit(f.UNIT_ID, staff_count=3)], event_id="start"),
              f.staff_roster_reported(persons=[f.roster_person(nurse)], event_id="roster")]
    path = f.write_jsonl(tmp_path / "roster.jsonl", events)
    plan = json.loads(invoke("plan", path).stdout)
    assert plan["tasks"] == [] and {holding["person_id"] for holding in plan["holdings"]} == {nurse}

    table = invoke("plan", path, "--format", "table").stdout
    assert "places taken in the units' orders" in table and pseudonym(nurse) in table and nurse not in table


def test_the_dry_run_folds_a_unit_taken_over_into_the_takers_history(tmp_path):
    events = [f.provider_started("taker", units=[f.unit("t1")], org=f.org_number(7), event_id="taker-start"),
              f.provider_started("hander", units=[f.unit("u1", staff_count=6)], event_id="hander-start"),
              f.unit_closed("hander", unit_id="u1", closing_date="2026-09-30", taken_over_by="taker", event_id="closed"),
              f.unit_closed("taker", unit_id="u1", closing_date="2027-09-30", event_id="taker-closes")]
    plan = json.loads(invoke("plan", f.write_jsonl(tmp_path / "takeover.jsonl", events)).stdout)
    cancelled = {task["rule"]: task for task in plan["tasks"] if task["rule"] == "closure-siebel-cancel-permissions"}
    assert cancelled and cancelled["closure-siebel-cancel-permissions"]["quantity"] == 6, \
        "the taker ordered the unit's accounts when it took the unit over, and its closure cancels them"


# -- publish -----------------------------------------------------------------------------------------


def test_publish_with_a_bad_line_exits_2_naming_it_and_publishes_nothing(tmp_path, monkeypatch):
    import kafka

    def no_producer(*args, **kwargs):
        raise AssertionError("publish must validate every line before it connects")

    monkeypatch.setattr(kafka, "KafkaProducer", no_producer)
    personnummer = f.personal_number_shaped(42)
    path = f.write_jsonl(
        tmp_path / "events.jsonl",
        [
            f.provider_started(),
            f.provider_started(provider_id="prov-2", org=personnummer),
            f.staff_left(),
            "{this is not json",
        ],
    )

    # Nothing listens on this port: had it tried to publish, it would exit 3, not 2.
    result = invoke("publish", path, "--bootstrap", f"127.0.0.1:{free_port()}")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{path}:2: data.provider.org_number: " in result.stderr
    assert f"{path}:4: (body): is not valid JSON" in result.stderr
    assert f"{path}:1:" not in result.stderr and f"{path}:3:" not in result.stderr
    assert personnummer not in result.stderr
    assert "nothing was done" in result.stderr


def test_publish_of_a_file_without_events(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    result = invoke("publish", path, "--bootstrap", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 2
    assert "holds no event" in result.stderr


def test_publish_of_a_broken_pretty_json_names_the_line(tmp_path):
    path = tmp_path / "event.json"
    path.write_text(json.dumps(f.staff_left(), indent=2).replace('"StaffLeft"', "StaffLeft"), encoding="utf-8")
    result = invoke("publish", path, "--bootstrap", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 2
    line = next(number for number, text in enumerate(path.read_text().splitlines(), 1) if "StaffLeft" in text)
    assert f"{path}:{line}: (body): is not valid JSON" in result.stderr


def test_publish_without_a_broker_exits_3(tmp_path):
    path = f.write_json(tmp_path / "event.json", f.staff_left())
    result = invoke("publish", path, "--bootstrap", f"127.0.0.1:{free_port()}", "--timeout", "0.5")
    assert result.exit_code == 3
    assert "Kafka unavailable" in result.stderr
    assert result.stdout == ""


def test_roster_confirm_names_a_bad_date_and_publishes_nothing():
    result = invoke("roster", "confirm", "prov-1", "--as-of", "2026-13-01", "--by", "Olle",
                    "--bootstrap", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 2
    assert "as_of:" in result.stderr and "nothing was published" in result.stderr


def test_roster_confirm_without_kafka_says_so():
    result = invoke("roster", "confirm", "prov-1", "--as-of", "2026-06-01", "--by", "Olle",
                    "--bootstrap", f"127.0.0.1:{free_port()}", "--timeout", "0.5")
    assert result.exit_code == 3 and "not published" in result.stderr


def test_roster_confirm_names_a_bad_roster_digest():
    result = invoke("roster", "confirm", "prov-1", "--as-of", "2026-06-01", "--by", "Olle", "--roster", "not hex",
                    "--bootstrap", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 2 and "roster:" in result.stderr and "not hex" not in result.stderr
