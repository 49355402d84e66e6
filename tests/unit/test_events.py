"""The event contract: what ``parse_event`` accepts, and how it names what it rejects."""

from __future__ import annotations

import copy
import json

import pytest

from schemas.events import EVENT_TYPES, Envelope
from schemas.parsing import InvalidEvent, parse_event
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
    assert len(EVENT_TYPES) == 13


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


@pytest.mark.parametrize("written", ["{n}", "19{n}", "{digits}", "Anna ({n})"])
def test_a_personal_identity_number_in_a_name_is_refused_without_repeating_it(written):
    personnummer = f.personal_number_shaped(987)
    text = written.format(n=personnummer, digits=personnummer.replace("-", ""))
    raw = f.provider_started(contacts=[f.contact(name=f"Karin {text}")])
    errors = errors_of(raw)
    assert list(errors) == ["data.contacts.0.name"]
    assert "personal identity number" in errors["data.contacts.0.name"]
    assert_not_echoed(raw, personnummer)
    assert_not_echoed(raw, personnummer.replace("-", ""))


def test_numbers_that_are_no_personal_identity_number_stay_in_a_name():
    raw = f.provider_started(name="Omsorg 2000 AB, org 556677-8899")  # an org number: third digit 6
    assert parse_event(raw).data.provider.name == "Omsorg 2000 AB, org 556677-8899"


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


# -- limits where input enters (docs/events.md, "Limits") --------------------------------------------


@pytest.mark.parametrize("bad_type", [{}, ["ProviderStarted"], 7, None])
def test_a_type_that_is_not_a_string_is_named_as_such(bad_type):
    raw = f.staff_left()
    raw["type"] = bad_type
    assert errors_of(raw)["type"].startswith("must be a string")


def test_an_unknown_type_is_named_unknown_not_as_errors_in_another_types_fields():
    raw = f.staff_left()
    raw["type"] = "StaffTransferred"
    raw["id"] = "bad id with spaces"
    errors = errors_of(raw)
    assert errors["type"].startswith("is not a known event type; one of ProviderStarted")
    assert set(errors) == {"type", "id"}, "no data fields of some other type"


def test_json_nested_too_deeply_is_refused_not_a_crash():
    assert errors_of("[" * 100_000 + "]" * 100_000) == {"(body)": "nests too deeply"}


@pytest.mark.parametrize("attribute", ["id", "source", "subject"])
@pytest.mark.parametrize("control", ["\r\nforged: log line", "nul\x00", "tab\there", "space here"])
def test_envelope_attributes_take_printable_ascii_only(attribute, control):
    raw = f.staff_left()
    raw[attribute] = f"x{control}"
    assert list(errors_of(raw)) == [attribute]


def test_names_take_no_control_characters():
    raw = f.provider_started(units=[f.unit(name="Norr\r\nX-Forged: 1")])
    assert list(errors_of(raw)) == ["data.units.0.name"]


@pytest.mark.parametrize("bad_date", ["9999-12-31", "0001-01-01", "1999-12-31", "2100-01-01"])
def test_dates_outside_what_a_plan_can_handle_are_refused_naming_the_field(bad_date):
    assert errors_of(f.provider_started(start_date=bad_date))["data.start_date"] == "must be between 2000-01-01 and 2099-12-31"
    assert "data.end_date" in errors_of(f.staff_left(end_date=bad_date))
    assert "time" in errors_of(f.staff_left(time=f"{bad_date}T09:00:00+01:00"))


@pytest.mark.parametrize("not_a_date", [0, 1_700_000_000, 20270301, True, "20270301"])
def test_a_date_is_an_iso_string_not_a_number(not_a_date):
    raw = f.provider_started()
    raw["data"]["start_date"] = not_a_date
    assert errors_of(raw)["data.start_date"] == "must be an ISO date, YYYY-MM-DD"


def test_month_outside_the_window_is_refused():
    assert "data.month" in errors_of(f.service_report_submitted(month="9999-01"))


def test_counts_and_flags_are_strict():
    raw = f.provider_started()
    raw["data"]["units"][0]["staff_count"] = True
    raw["data"]["provider"]["hsl"] = "yes"
    raw["data"]["provider"]["uses_flexite"] = 1
    assert {"data.units.0.staff_count", "data.provider.hsl", "data.provider.uses_flexite"} <= set(errors_of(raw))


def test_lists_are_bounded():
    many_units = f.provider_started(units=[f.unit(f"u{i}") for i in range(301)])
    assert "data.units" in errors_of(many_units)
    assert parse_event(f.provider_started(units=[f.unit(f"u{i}") for i in range(300)]))
    many_groups = f.provider_started(units=[f.unit(field_groups=[f"g{i}" for i in range(51)])])
    assert "data.units.0.field_groups" in errors_of(many_groups)
    many_contacts = f.provider_started(contacts=[f.contact(email=f"c{i}@example.se") for i in range(201)])
    assert "data.contacts" in errors_of(many_contacts)


@pytest.mark.parametrize("shaped", ["811218-9876", "8112189876", "198112189876", "19811218-9876", "811278-9870"])
def test_an_id_shaped_like_a_personal_identity_number_is_refused_without_echo(shaped):
    from schemas.identifiers import luhn_valid

    digits = shaped.replace("-", "")[-10:]
    shaped = shaped[:-1] + next(d for d in "0123456789" if luhn_valid(digits[:-1] + d))  # a valid check digit
    raw = f.unit_closed(provider_id=shaped)
    errors = errors_of(raw)
    assert "identifies no person" in errors["data.provider_id"]
    assert_not_echoed(raw, shaped)


def test_ids_that_only_look_numeric_are_kept():
    assert parse_event(f.unit_closed(provider_id="5560360793"))  # an organisation number: month 60 is no month
    assert parse_event(f.unit_closed(provider_id="20270301"))  # eight digits


def test_the_kafka_record_holds_what_was_sent_not_every_omitted_field_as_null():
    from schemas.wire import event_from_kafka, event_to_kafka

    event = parse_event(f.provider_started())  # no takeover_from, no system or unit_id in contacts
    _, value, headers = event_to_kafka(event)
    assert b"takeover_from" not in value and b"null" not in value
    assert event_from_kafka(value, headers) == event  # the defaults come back on the way in


def test_an_event_too_large_for_a_kafka_record_is_refused_naming_the_event():
    from schemas.wire import MAX_RECORD_BYTES, EventTooLarge, event_to_kafka

    units = [f.unit(f"u{i}", name="x" * 200, field_groups=["y" * 200] * 50) for i in range(100)]
    event = parse_event(f.provider_started(units=units))
    with pytest.raises(EventTooLarge) as caught:
        event_to_kafka(event)
    [error] = caught.value.errors
    assert error.field == "(event)" and f"{MAX_RECORD_BYTES:,}" in error.reason


def test_what_the_provider_uses_flexite_and_prator_for_is_checked_naming_the_field():
    def errors(**provider) -> dict[str, str]:
        event = f.provider_started(uses_flexite=None, **provider)
        try:
            parse_event(event)
        except InvalidEvent as invalid:
            return {error.field: error.reason for error in invalid.errors}
        return {}

    assert "data.provider.flexite" in errors()  # neither said
    assert errors(flexite="hsl") == {} and errors(flexite="none") == {}
    assert set(errors(flexite="hsl", prator_home_care=True)) == set()
    contradicting = f.provider_started(uses_flexite=False, flexite="hsl_and_sol_lss")
    with pytest.raises(InvalidEvent) as raised:
        parse_event(contradicting)
    assert [e.field for e in raised.value.errors] == ["data.provider.uses_flexite"]
    assert set(errors(flexite="none", services=["lss"], prator_home_care=True)) == {"data.provider.prator_home_care"}
    assert parse_event(f.provider_started(uses_flexite=True)).data.provider.flexite_use == "hsl_and_sol_lss"
    assert parse_event(f.provider_started(uses_flexite=False)).data.provider.flexite_use == "none"
