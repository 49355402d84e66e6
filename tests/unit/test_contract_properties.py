"""Properties of the event contract and the planner, over inputs hypothesis makes (docs/events.md).

- Every valid event of the ten types is accepted, and survives the trip through Kafka's binary mode.
- Every invalid one (a field dropped, of the wrong JSON type, a date out of the window, a character
  an id or a name may not hold, an unknown type, an extra field, any JSON at all) is refused with
  ``InvalidEvent`` and nothing else; every error names a field and a reason, and no reason repeats
  the rejected value.
- Every valid history of a provider plans without error, exactly as the dry run folds it: every task
  has a due date, and the same history plans to the same task ids.

No I/O; bounded (``max_examples``) and derandomized, so a run is the same run every time.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas import events as contract
from schemas.catalog import load_catalog
from schemas.events import EVENT_TYPES, Envelope
from schemas.parsing import FieldError, InvalidEvent, field_name, parse_event
from schemas.tasks import Plan
from schemas.wire import event_from_kafka, event_to_kafka
from services.domain.planner import Planner, UnknownProvider
from services.domain.state import ProviderState, evolve
from services.entrypoints.dryrun import InvalidHistory, fold_and_plan
from tests import factories as f
from tests import strategies as s
from tests.support.access import check_access
from tests.support.schedule import check_schedule

CATALOG = load_catalog()
PLANNER = Planner(CATALOG)


def bounded(max_examples: int):
    """Few enough examples to keep the file well under 20 s on the 2-core machine, always the same ones."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# -- valid events ----------------------------------------------------------------------------------


@bounded(150)
@given(raw=s.events())
def test_every_valid_event_is_accepted_and_survives_kafka(raw):
    event = parse_event(copy.deepcopy(raw))
    assert event.type == raw["type"] and type(event.data).__name__ == raw["type"]
    assert parse_event(json.dumps(raw)) == event  # JSON text is the same event
    assert parse_event(json.dumps(raw, ensure_ascii=False).encode()) == event  # and so are UTF-8 bytes

    key, value, headers = event_to_kafka(event)
    assert key == event.provider_id.encode()
    back = event_from_kafka(value, headers)
    assert back == event
    assert back.model_dump() == event.model_dump()
    # The record holds what was sent (the builders leave out what is unset): no field written as null.
    assert all(leaf is not None for _, leaf in walk(json.loads(value)))


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
@bounded(5)
@given(data=st.data())
def test_the_strategies_make_events_of_every_type(event_type, data):
    raw = data.draw(s.EVENTS[event_type]())
    assert parse_event(raw).type == event_type


# -- invalid events --------------------------------------------------------------------------------

Path = tuple[str | int, ...]



def _texts(schema: Any) -> Iterator[str]:
    """Every key and string in a JSON Schema: names, literals, patterns."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            yield str(key)
            yield from _texts(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _texts(value)
    elif isinstance(schema, str):
        yield schema


#: Text that a reason may hold whatever the input: the known types, literals and patterns, the
#: window. A rejected value that happens to be part of it is not "repeated" when the reason holds it.
VOCABULARY = "\n".join([
    *EVENT_TYPES, str(contract.FIRST_DATE), str(contract.LAST_DATE),
    *_texts(Envelope.model_json_schema()), *(text for model in EVENT_TYPES.values() for text in _texts(model.model_json_schema())),
])  # fmt: skip

#: The fields of each ``data`` model and its nested models that name a thing by text (an email
#: address goes into SMTP commands and headers: no control characters either).
NAME_FIELDS = {"name", "email"}
ID_FIELDS = {"id", "provider_id", "change_id", "subcontractor_id", "unit_id", "takeover_from", "taken_over_by", "person_id"}
ENVELOPE_TEXT = ("id", "source", "subject")
DATE_FIELDS = {"start_date", "decided_on", "effective_date", "end_date", "closing_date", "submitted_on"}


def refused(raw: Any, *offending: Any) -> list[FieldError]:
    """``raw`` is refused with InvalidEvent (any other exception fails the test), every error names
    a field and a reason, and no reason repeats any string of ``offending`` of 6 characters or more."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    errors = caught.value.errors
    assert errors, "InvalidEvent without errors"
    for error in errors:
        assert error.field.strip(), error
        assert error.reason.strip(), error
    for value in offending:
        if isinstance(value, str) and len(value) >= 6 and value not in VOCABULARY:
            for error in errors:
                assert value not in error.reason, f"{error.field}: the reason repeats the rejected value"
    return errors


def named(errors: list[FieldError], path: Path) -> bool:
    """Whether an error names the field at ``path`` (or something inside it)."""
    field = field_name(path)  # an odd key is quoted
    return any(error.field == field or error.field.startswith(field + ".") for error in errors)


def walk(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every node under ``value`` (not ``value`` itself) with its path."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*path, key), child
        yield from walk(child, (*path, key))


def get(raw: Any, path: Path) -> Any:
    for part in path:
        raw = raw[part]
    return raw


def put(raw: Any, path: Path, value: Any) -> None:
    get(raw, path[:-1])[path[-1]] = value


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (or holds a list of), and whether it is a list."""
    origin = typing.get_origin(annotation)
    if origin is list:
        inner = typing.get_args(annotation)[0]
        return (inner, True) if isinstance(inner, type) and issubclass(inner, BaseModel) else (None, True)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def required_paths(model: type[BaseModel], value: dict, path: Path) -> Iterator[Path]:
    for name, field in model.model_fields.items():
        if name not in value:
            continue
        if field.is_required():
            yield (*path, name)
        nested, many = _nested_model(field.annotation)
        if nested is not None and many and isinstance(value[name], list):
            for index, item in enumerate(value[name]):
                yield from required_paths(nested, item, (*path, name, index))
        elif nested is not None and isinstance(value[name], dict):
            yield from required_paths(nested, value[name], (*path, name))


def envelope_required(raw: dict) -> list[Path]:
    return [(name,) for name in ("specversion", "id", "source", "type", "time", "data")] + list(
        required_paths(EVENT_TYPES[raw["type"]], raw["data"], ("data",))
    )


#: What no field of each JSON type ever accepts instead (null only where nothing is optional).
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
WRONG_TYPES: dict[type, st.SearchStrategy] = {
    str: st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.booleans() | st.lists(st.text(), max_size=2) | st.dictionaries(st.text(max_size=4), st.text(), max_size=2),
    int: st.text() | st.floats(allow_nan=False, allow_infinity=False) | st.booleans() | st.none() | st.lists(st.integers(), max_size=2),
    bool: st.integers() | st.sampled_from(["true", "yes", "1", ""]) | st.none() | st.lists(st.booleans(), max_size=2),
    list: st.dictionaries(st.text(max_size=4), st.text(), max_size=2) | st.text() | st.integers() | st.booleans() | st.none(),
    dict: st.lists(st.text(), max_size=2) | st.text() | st.integers() | st.booleans() | st.none(),
}  # fmt: skip
#: What an envelope attribute, a data id and a name each must not hold.
NOT_PRINTABLE_ASCII = st.sampled_from([" ", "\t", "\n", "\r", "\x00", "\x7f", "\x85", "å", "\u2028", "€", "😀"])
NOT_IN_AN_ID = NOT_PRINTABLE_ASCII | st.sampled_from(["/", "@", "#", "+", "%", "'", '"', "\\", "!", ",", ";"])
CONTROL = st.sampled_from(
    [chr(code) for code in range(0x00, 0x20)] + [chr(code) for code in range(0x7F, 0xA0)]
)
OUT_OF_WINDOW = st.dates(dt.date(1, 1, 1), contract.FIRST_DATE - dt.timedelta(days=1)) | st.dates(
    contract.LAST_DATE + dt.timedelta(days=1), dt.date(9999, 12, 31)
)

valid_events = st.one_of(*(strategy() for strategy in s.EVENTS.values()))


def _inserted(value: str, char: str) -> str:
    """``char`` inside ``value``, between two characters that are not white space (so that
    stripping the value's ends cannot remove it)."""
    stripped = value.strip() or "A"
    return stripped[:1] + char + (stripped[1:] or "Z")


@bounded(120)
@given(raw=valid_events, data=st.data())
def test_a_dropped_required_field_is_refused_naming_it(raw, data):
    path = data.draw(st.sampled_from(envelope_required(raw)), label="dropped")
    del get(raw, path[:-1])[path[-1]]
    errors = refused(raw)
    assert named(errors, path), (path, errors)


@bounded(150)
@given(raw=valid_events, data=st.data())
def test_a_field_of_the_wrong_json_type_is_refused_naming_it(raw, data):
    path, value = data.draw(st.sampled_from(list(walk(raw))), label="field")
    replacement = data.draw(WRONG_TYPES[type(value)], label="replacement")
    put(raw, path, replacement)
    errors = refused(raw, replacement)
    assert named(errors, path), (path, errors)


@bounded(100)
@given(raw=valid_events, data=st.data())
def test_a_date_outside_the_window_is_refused_naming_it(raw, data):
    candidates = [(path, kind) for path, kind in [(("time",), "time")] + [
        (path, "date") for path, value in walk(raw) if path[-1] in DATE_FIELDS and isinstance(value, str)
    ] + [(path, "month") for path, _ in walk(raw) if path[-1] == "month"]]  # fmt: skip
    path, kind = data.draw(st.sampled_from(candidates), label="date")
    day = data.draw(OUT_OF_WINDOW, label="day")
    if kind == "time":
        value = f"{day.isoformat()}T12:00:00+01:00"
    elif kind == "month":
        value = day.isoformat()[:7]
    else:
        value = day.isoformat()
    put(raw, path, value)
    errors = refused(raw, value)
    assert named(errors, path), (path, errors)


#: Unix times inside the window, as JSON numbers and as strings of digits: what pydantic would take.
UNIX_TIMES = st.integers(946_684_800, 4_102_444_799)
NUMBERS = st.one_of(
    UNIX_TIMES, UNIX_TIMES.map(float), UNIX_TIMES.map(str), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([20260301, "20260301", "2026", "1.7e9", 0, True]),
)  # fmt: skip


@bounded(60)
@given(raw=valid_events, data=st.data(), number=NUMBERS)
def test_a_time_or_a_date_given_as_a_number_is_refused_naming_it(raw, data, number):
    # docs/events.md, "Limits": a number is not a date, nor a time (pydantic would read a Unix time).
    candidates = [("time",)] + [path for path, _ in walk(raw) if path[-1] in DATE_FIELDS | {"month"}]
    path = data.draw(st.sampled_from(candidates), label="field")
    put(raw, path, number)
    errors = refused(raw, number)
    assert named(errors, path), (path, errors)


@bounded(40)
@given(raw=s.provider_started(), data=st.data())
def test_a_contact_for_a_unit_the_provider_does_not_have_is_refused_without_repeating_it(raw, data):
    units = {unit["id"] for unit in raw["data"]["units"]}
    unit_id = data.draw(s.ids.filter(lambda candidate: candidate not in units), label="unit_id")
    contacts = raw["data"]["contacts"] = raw["data"]["contacts"] or [f.contact()]
    index = data.draw(st.integers(0, len(contacts) - 1), label="contact")
    contacts[index]["unit_id"] = unit_id
    errors = refused(raw, unit_id)
    assert named(errors, ("data", "contacts", index, "unit_id")), errors


@bounded(40)
@given(raw=st.one_of(s.service_report_submitted(), s.provider_started(), s.staff_left()), data=st.data(),
       digits=st.sampled_from(["０１２３４５６７８９", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९"]))  # fmt: skip
def test_digits_of_another_script_in_a_date_month_or_identifier_are_refused_without_repeating_it(raw, data, digits):
    # Only ASCII digits make a date, an organisation number or an HSA-id: one organisation or
    # person must not be stored under two spellings.
    def numeric(path: tuple) -> bool:
        return (path[-1] in DATE_FIELDS | {"month", "org_number", "person_id"}) or path[-2:] == ("person", "id")

    path = data.draw(st.sampled_from([path for path, _ in walk(raw) if numeric(path)]))
    value = get(raw, path)
    where = data.draw(st.sets(st.sampled_from([i for i, char in enumerate(value) if char.isdigit()]), min_size=1))
    value = "".join(digits[int(char)] if i in where else char for i, char in enumerate(value))
    put(raw, path, value)
    errors = refused(raw, value)
    assert named(errors, path), (path, errors)


@bounded(150)
@given(raw=valid_events, data=st.data())
def test_a_character_an_id_a_name_or_an_email_may_not_hold_is_refused_naming_it(raw, data):
    envelope = [((name,), NOT_PRINTABLE_ASCII) for name in ENVELOPE_TEXT if isinstance(raw.get(name), str)]
    inside = [
        (path, CONTROL if path[-1] in NAME_FIELDS or path[-2:-1] == ("field_groups",) else NOT_IN_AN_ID)
        for path, value in walk(raw["data"], ("data",))
        if isinstance(value, str) and (path[-1] in NAME_FIELDS | ID_FIELDS or path[-2:-1] in {("field_groups",), ("unit_ids",)})
    ]  # fmt: skip
    path, bad = data.draw(st.sampled_from(envelope + inside), label="field")
    value = _inserted(get(raw, path), data.draw(bad, label="character"))
    put(raw, path, value)
    errors = refused(raw, value)
    assert named(errors, path), (path, errors)


@bounded(60)
@given(raw=valid_events, data=st.data(), n=st.integers(0, 999))
def test_an_id_shaped_like_a_personal_identity_number_is_refused_without_repeating_it(raw, data, n):
    paths = [path for path, value in walk(raw["data"], ("data",)) if isinstance(value, str) and path[-1] in ID_FIELDS - {"person_id", "id"}]
    paths += [path for path, _ in walk(raw["data"], ("data",)) if path[-1] == "id" and path[-2] != "person"]
    path = data.draw(st.sampled_from(paths), label="id")
    shaped = data.draw(st.sampled_from([f.personal_number_shaped(n), f.personal_number_shaped(n).replace("-", "")]))
    put(raw, path, shaped)
    errors = refused(raw, shaped)
    assert named(errors, path), (path, errors)
    assert shaped not in str(InvalidEvent(errors))


@bounded(80)
@given(raw=valid_events, event_type=json_values.filter(lambda value: not (isinstance(value, str) and value in EVENT_TYPES)))
def test_an_unknown_type_is_refused_naming_type(raw, event_type):
    raw["type"] = event_type
    errors = refused(raw, event_type)
    assert named(errors, ("type",))
    assert not named(errors, ("data",)), "no errors in the fields of some other type's data"


@bounded(80)
@given(raw=valid_events, data=st.data(), key=st.text(min_size=1, max_size=20), value=json_values)
def test_an_extra_field_anywhere_is_refused_naming_it(raw, data, key, value):
    objects = [()] + [path for path, node in walk(raw) if isinstance(node, dict)]
    path = data.draw(st.sampled_from(objects), label="object")
    target = get(raw, path)
    if key.isidentifier():  # as every field of the contract is: make sure it is none of them
        key += "-extra"
    target[key] = value
    errors = refused(raw, value)
    assert named(errors, (*path, key)), (path, key, errors)


@bounded(150)
@given(raw=json_values | st.dictionaries(st.sampled_from(["specversion", "id", "source", "type", "time", "data"]), json_values))
def test_any_json_value_is_refused_or_a_valid_event_never_a_crash(raw):
    for form in (raw, json.dumps(raw), json.dumps(raw).encode()):
        try:
            event = parse_event(form)
        except InvalidEvent as invalid:
            assert invalid.errors and all(error.field and error.reason for error in invalid.errors)
        else:
            assert isinstance(event, Envelope)


@bounded(100)
@given(raw=valid_events, data=json_values)
def test_any_json_as_data_of_a_known_type_is_refused_or_valid_never_a_crash(raw, data):
    raw["data"] = data
    try:
        parse_event(raw)
    except InvalidEvent as invalid:
        assert invalid.errors and all(error.field and error.reason for error in invalid.errors)
        strings = [leaf for _, leaf in walk(data) if isinstance(leaf, str)] + ([data] if isinstance(data, str) else [])
        refused(raw, *strings)


@bounded(80)
@given(body=st.binary(max_size=200) | st.text(max_size=200))
def test_any_bytes_or_text_is_refused_or_a_valid_event_never_a_crash(body):
    try:
        parse_event(body)
    except InvalidEvent as invalid:
        assert invalid.errors and all(error.field and error.reason for error in invalid.errors)


@bounded(60)
@given(raw=valid_events, data=st.data())
def test_a_kafka_record_with_bad_headers_or_value_is_refused_naming_a_field(raw, data):
    _, value, headers = event_to_kafka(parse_event(raw))
    kind = data.draw(st.sampled_from(["drop", "replace", "value"]), label="kind")
    if kind == "drop":
        victim = data.draw(st.sampled_from([name for name, _ in headers if name.startswith("ce_")]))
        headers = [(name, header) for name, header in headers if name != victim]
    elif kind == "replace":
        victim = data.draw(st.sampled_from([name for name, _ in headers if name.startswith("ce_")]))
        replacement = data.draw(st.binary(max_size=40))
        headers = [(name, replacement if name == victim else header) for name, header in headers]
    else:
        value = data.draw(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
    try:
        event_from_kafka(value, headers)
    except InvalidEvent as invalid:
        assert invalid.errors and all(error.field and error.reason for error in invalid.errors)


# -- the planner -----------------------------------------------------------------------------------


def fold(history: list[dict]) -> tuple[list[Plan | None], ProviderState]:
    """Every event of ``history`` planned and folded as the services and the dry run do it (a
    replay is skipped: None); the provider's state after the last one."""
    provider_id = history[0]["data"]["provider"]["id"]
    states: dict[str, ProviderState] = {provider_id: ProviderState(provider_id=provider_id)}
    plans: list[Plan | None] = []
    for raw in history:
        event = parse_event(json.dumps(raw))
        state = states.get(event.provider_id) or ProviderState(provider_id=event.provider_id)
        if state.has_processed(event):
            plans.append(None)
            continue
        plan = PLANNER.plan(event, state)
        states[event.provider_id] = evolve(state, event, plan, CATALOG)
        plans.append(plan)
    (state,) = states.values()
    return plans, state


@bounded(60)
@given(history=s.histories())
def test_every_valid_history_plans_without_error_the_same_every_time(history):
    plans, state = fold(history)
    seen: set[str] = set()
    for raw, plan in zip(history, plans, strict=True):
        if plan is None:
            continue
        assert plan.event_id == raw["id"]
        assert plan.catalog_version == CATALOG.version
        for task in plan.tasks:
            assert isinstance(task.due, dt.date), task
            assert task.remind_on == sorted(task.remind_on) and all(day <= task.due for day in task.remind_on)
            assert all(day > task.due for day in task.escalate_on)
            assert (task.status == "blocked") == bool(task.depends_on)
            assert set(task.depends_on) <= seen | {other.id for other in plan.tasks}, "waits for a task never planned"
        assert len({task.id for task in plan.tasks}) == len(plan.tasks), "two tasks share an id"
        seen |= {task.id for task in plan.tasks}

    # No double orders, and one path to each grant's end (issue 11).
    check_access(plans, CATALOG, state)
    # A task is never due before what it waits for, nor before its event arrived (issue 12).
    check_schedule(zip([parse_event(json.dumps(raw)) for raw in history], plans, strict=True), CATALOG)

    # Deterministic: the same history, planned again from scratch, gives the same plans.
    again, state_again = fold(copy.deepcopy(history))
    assert [plan and [task.id for task in plan.tasks] for plan in again] == [plan and [task.id for task in plan.tasks] for plan in plans]
    assert again == plans and state_again == state
    # The state the services keep in their Faust tables survives its JSON.
    assert ProviderState.model_validate_json(state.model_dump_json()) == state

    # The dry run folds the same way: its plan of the last event is ours.
    *earlier, last = [(line, parse_event(raw)) for line, raw in enumerate(history, 1)]
    before = fold(history[:-1])[1] if len(history) > 1 else ProviderState(provider_id=last[1].provider_id)
    assert fold_and_plan([*earlier, last], CATALOG) == PLANNER.plan(last[1], before)


@bounded(40)
@given(raw=valid_events.filter(lambda raw: raw["type"] != "ProviderStarted"))
def test_an_event_for_a_provider_never_started_is_refused_as_unknown(raw):
    event = parse_event(raw)
    with pytest.raises(UnknownProvider):
        PLANNER.plan(event, ProviderState(provider_id=event.provider_id))
    with pytest.raises(InvalidHistory) as caught:
        fold_and_plan([(1, event)], CATALOG)
    assert caught.value.line == 1 and caught.value.error.field == "data.provider_id"
