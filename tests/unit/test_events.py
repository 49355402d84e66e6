"""The event contract: what ``parse_event`` accepts, and how it names what it rejects."""

from __future__ import annotations

import copy
import json

import pytest

from schemas.events import EVENT_TYPES, Envelope, InvalidEvent, parse_event
from tests import factories as f


def errors_of(raw) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    return {error.field: error.reason for error in caught.value.errors}


def assert_not_echoed(raw, value: str) -> None:
    """Neither the exception text nor any field or reason repeats the rejected value."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert value not in str(caught.value)
    assert value not in repr(caught.value)
    for error in caught.value.errors:
        assert value not in error.field
        assert value not in error.reason


def test_a_builder_for_every_event_type():
    assert set(f.BUILDERS) == set(EVENT_TYPES)
    assert len(EVENT_TYPES) == 10


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_a_valid_event_of_every_type_parses(event_type):
    raw = f.BUILDERS[event_type](event_id=f"evt-{event_type}")
    event = parse_event(raw)
    assert isinstance(event, Envelope)
    assert event.type == event_type
    assert type(event.data).__name__ == event_type
    assert event.id == f"evt-{event_type}"
    assert event.provider_id == f.PROVIDER_ID
    # JSON text and bytes are the same event.
    assert parse_event(json.dumps(raw)) == event
    assert parse_event(json.dumps(raw).encode()) == event


def test_org_numbers_are_normalised_to_the_dash_form():
    raw = f.provider_started(org=f.org_number(7).replace("-", ""))
    assert parse_event(raw).data.provider.org_number == f.org_number(7)


def test_unknown_field_in_data_is_rejected_with_its_name():
    raw = f.provider_started()
    raw["data"]["provider"]["colour"] = "blue"
    errors = errors_of(raw)
    assert list(errors) == ["data.provider.colour"]
    assert "not permitted" in errors["data.provider.colour"]


def test_unknown_envelope_attribute_is_rejected_with_its_name():
    raw = f.staff_left()
    raw["priority"] = "high"
    assert "priority" in errors_of(raw)


def test_bad_org_number_checksum_names_the_field_not_the_value():
    good = f.org_number(4)
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    raw = f.provider_started(org=bad)
    errors = errors_of(raw)
    assert list(errors) == ["data.provider.org_number"]
    assert "check digit" in errors["data.provider.org_number"]
    assert_not_echoed(raw, bad)
    assert_not_echoed(raw, bad.replace("-", ""))


def test_personal_identity_number_as_org_number_is_refused_without_repeating_it():
    personnummer = f.personal_number_shaped(987)
    raw = f.subcontractor_started(org=personnummer)
    errors = errors_of(raw)
    assert list(errors) == ["data.subcontractor.org_number"]
    assert "legal entity" in errors["data.subcontractor.org_number"]
    assert_not_echoed(raw, personnummer)
    assert_not_echoed(raw, personnummer.replace("-", ""))
    assert_not_echoed(raw, personnummer[:6])


@pytest.mark.parametrize(
    "bad_hsa_id",
    [
        "SE2321000031-P0001",  # issuer number with a wrong check digit
        "2321000032-P0001",  # no SE
        "SE2321000032-",  # nothing after the dash
        "SE2321000032-P00*1",  # not a letter or digit
        "198112189876",  # a personal identity number instead
    ],
)
def test_bad_hsa_id_names_the_field_not_the_value(bad_hsa_id):
    raw = f.staff_joined(person_id=bad_hsa_id)
    assert list(errors_of(raw)) == ["data.person.id"]
    assert_not_echoed(raw, bad_hsa_id)
    raw = f.staff_left(person_id=bad_hsa_id)
    assert list(errors_of(raw)) == ["data.person_id"]
    assert_not_echoed(raw, bad_hsa_id)


@pytest.mark.parametrize("bad_date", ["02/03/2026", "2026-3-2", "2026-02-30", "next monday"])
def test_non_iso_date_names_the_field(bad_date):
    raw = f.provider_started(start_date=bad_date)
    assert list(errors_of(raw)) == ["data.start_date"]
    assert_not_echoed(raw, bad_date)


def test_naive_datetime_is_rejected():
    raw = f.unit_closed(time="2026-01-05T09:00:00")
    errors = errors_of(raw)
    assert list(errors) == ["time"]
    assert "time zone" in errors["time"]


def test_utc_z_and_offsets_are_accepted():
    assert parse_event(f.unit_closed(time="2026-01-05T08:00:00Z")).time.utcoffset().total_seconds() == 0
    assert parse_event(f.unit_closed(time="2026-07-05T08:00:00+02:00")).time.utcoffset().total_seconds() == 7200


def test_wrong_type_names_the_type_attribute():
    raw = f.staff_left()
    raw["type"] = "StaffVanished"
    errors = errors_of(raw)
    assert "type" in errors
    assert all(field == "type" or field.startswith("data") for field in errors)


def test_wrong_specversion():
    raw = f.staff_left()
    raw["specversion"] = "0.3"
    assert list(errors_of(raw)) == ["specversion"]


def test_data_that_does_not_match_the_type_names_data_fields():
    raw = f.provider_started()
    raw["type"] = "StaffLeft"
    errors = errors_of(raw)
    assert errors, "must be rejected"
    assert all(field.startswith("data.") for field in errors), errors
    assert "data.provider_id" in errors  # what StaffLeft needs and ProviderStarted lacks
    assert "data.provider" in errors  # what ProviderStarted has and StaffLeft forbids


def test_every_error_is_listed_at_once():
    raw = f.staff_joined(person_id="SE2321000031-P0001", start_date="2026-13-01", time="2026-01-05T09:00:00")
    assert {"data.person.id", "data.start_date", "time"} <= set(errors_of(raw))


@pytest.mark.parametrize("missing", ["id", "source", "type", "time", "specversion", "data"])
def test_missing_required_attribute_is_named(missing):
    raw = f.service_report_submitted()
    del raw[missing]
    assert missing in errors_of(raw)


def test_not_json_and_not_an_object():
    assert list(errors_of("{not json")) == ["(body)"]
    assert list(errors_of(b"[1, 2]")) == ["(body)"]
    assert list(errors_of([f.staff_left()])) == ["(body)"]


def test_contract_rules_across_fields():
    raw = f.provider_started(units=[f.unit("u1"), f.unit("u1")])
    assert "two units share an id" in " ".join(errors_of(raw).values())
    raw = f.provider_started(takeover_from=f.PROVIDER_ID)
    assert "take over from itself" in " ".join(errors_of(raw).values())
    raw = f.provider_started(contacts=[f.contact(unit_id="nowhere")])
    assert "not one of the provider's units" in " ".join(errors_of(raw).values())


def test_rejected_values_are_never_echoed_in_any_error():
    """One event full of personal data and bad values: no error repeats any of them."""
    secrets = {
        "org": f.personal_number_shaped(123),
        "hsa": "SE2321000031-SECRET9",
        "date": "31/12/2026",
        "email": "not an email sara@x",
        "role": "chief-secret-officer",
    }
    raw = f.staff_joined(person_id=secrets["hsa"], start_date=secrets["date"], email=secrets["email"], role=secrets["role"])
    raw["data"]["org_number"] = secrets["org"]  # also an unknown field
    with pytest.raises(InvalidEvent) as caught:
        parse_event(copy.deepcopy(raw))
    text = str(caught.value) + repr(caught.value.errors)
    for value in secrets.values():
        assert value not in text
    assert len(caught.value.errors) >= 5
