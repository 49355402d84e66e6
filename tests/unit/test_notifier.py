"""The notifier's pure parts: contacts, routing per task line, templates, the mail, and SMTP
failure classification."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path

import aiosmtplib
import pytest

from schemas.events import Contact, ContactAssigned, Envelope, Provider, ProviderStarted, StaffLeft, Unit
from schemas.identifiers import PERSONAL_NUMBER_PLACEHOLDER, pseudonym, redact
from schemas.notifications import NotificationRequest, TaskLine
from services.domain import mail as composition
from services.domain import templating
from services.domain.mail import compose, fold, for_mail, line_recipients, route, should_send
from services.domain.templating import Templates
from services.notifier import smtp

HSA_ID = "SE2321000131-E000000000001"
T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


@dataclass
class Config:
    mail_from: str = "omboard@uppsala.se"
    klk_it_email: str = "it.support@uppsala.se"
    fallback_email: str = "fallback@uppsala.se"
    status_page_url: str = "https://omboard.example/"
    fallback_contacts: dict[str, str] = field(default_factory=dict)
    system_contacts: dict[str, str] = field(default_factory=dict)
    mail_templates_dir: Path | None = None


CONFIG = Config()


def contact(email: str, role: str = "kontaktperson", system: str | None = None, unit_id: str | None = None,
            name: str = "Anna") -> Contact:
    return Contact(name=name, email=email, role=role, system=system, unit_id=unit_id)  # type: ignore[arg-type]


def task(task_id: str = "t1", due: dt.date = dt.date(2026, 12, 30), **fields) -> TaskLine:
    values = dict(
        task_id=task_id, obligation="SB2", system="siebel", action="order-accounts-and-tokens", due=due,
        channel="sesam", where="Sesam", instructions_sv="Beställ konton i Siebel.",
        instructions_en="Order Siebel accounts.", unit_id="u1", quantity=3,
    )
    return TaskLine(**(values | fields))


def request(**fields) -> NotificationRequest:
    values = dict(
        id="reminder-0001", kind="reminder", provider_id="p1", provider_name="Omsorg AB", responsible="provider",
        system="siebel", unit_id="u1", tasks=[task()], requested_at=T0,
    )
    return NotificationRequest(**(values | fields))


def envelope(data, event_id: str = "e1") -> Envelope:
    return Envelope(specversion="1.0", id=event_id, source="test", type=type(data).__name__, time=T0, data=data)


def started(*contacts: Contact) -> ProviderStarted:
    return ProviderStarted(
        provider=Provider(id="p1", name="Omsorg AB", org_number="556677-8899", regi="privat",
                          services=["hemtjanst"], hsl=False, uses_flexite=False),
        start_date=dt.date(2027, 1, 1),
        units=[Unit(id="u1", name="Enhet 1", staff_count=20), Unit(id="u2", name="Enhet 2", staff_count=5)],
        contacts=list(contacts),
    )


# --- contacts ------------------------------------------------------------------------------


def test_fold_keeps_contacts_and_a_newer_one_replaces_the_older_for_the_same_role_system_unit() -> None:
    state = fold(None, envelope(started(contact("a@x.se", "administrator", "siebel"), contact("k@x.se"))))
    assert state is not None and state.provider_name == "Omsorg AB"
    assert [c.email for c in state.contacts] == ["a@x.se", "k@x.se"]

    replaced = fold(state, envelope(ContactAssigned(provider_id="p1", contact=contact("b@x.se", "administrator", "siebel")), "e2"))
    assert replaced is not None
    assert sorted(c.email for c in replaced.contacts) == ["b@x.se", "k@x.se"]

    other_unit = fold(replaced, envelope(ContactAssigned(provider_id="p1", contact=contact("c@x.se", "administrator", "siebel", "u1")), "e3"))
    assert other_unit is not None
    assert sorted(c.email for c in other_unit.contacts) == ["b@x.se", "c@x.se", "k@x.se"]


def test_fold_is_idempotent_and_ignores_other_events() -> None:
    event = envelope(ContactAssigned(provider_id="p1", contact=contact("b@x.se")))
    once = fold(None, event)
    assert fold(once, event) == once
    assert once is not None and once.contacts == [contact("b@x.se")]
    leaver = envelope(StaffLeft(provider_id="p1", person_id=HSA_ID, end_date=dt.date(2027, 1, 1)))
    assert not composition.matters(leaver) and fold(once, leaver) is None


def test_a_repeated_event_with_new_content_is_a_replay_and_changes_nothing() -> None:
    once = fold(None, envelope(ContactAssigned(provider_id="p1", contact=contact("b@x.se")), "e1"))
    resent = fold(once, envelope(ContactAssigned(provider_id="p1", contact=contact("mallory@x.se")), "e1"))
    assert resent == once, "the same source and id is the same event, whatever it now says"
    other_source = envelope(ContactAssigned(provider_id="p1", contact=contact("c@x.se")), "e1").model_copy(
        update={"source": "another"})
    assert [c.email for c in fold(once, other_source).contacts] == ["c@x.se"]


# --- recipients, per task line ---------------------------------------------------------------

CONTACTS = [
    contact("unit1-siebel@x.se", "administrator", "siebel", "u1"),
    contact("unit2-siebel@x.se", "administrator", "siebel", "u2"),
    contact("siebel-admin@x.se", "administrator", "siebel"),
    contact("siebel-expert@x.se", "expertanvandare", "siebel", name="Bo"),
    contact("unit1-chef@x.se", "enhetschef", None, "u1"),
    contact("kontakt@x.se", "kontaktperson"),
    contact("chef@x.se", "verksamhetschef"),
]


def for_line(contacts, config=CONFIG, provider_id: str = "p1", responsible: str = "provider", **fields) -> list[str]:
    return line_recipients(contacts, provider_id, responsible, task(**fields), config)


def test_klk_it_tasks_go_to_the_klk_it_address_or_the_systems_manager() -> None:
    assert for_line(CONTACTS, responsible="klk-it") == ["it.support@uppsala.se"]
    managers = Config(system_contacts={"siebel": "siebel-forvaltning@uppsala.se"})
    assert for_line(CONTACTS, managers, responsible="klk-it") == ["siebel-forvaltning@uppsala.se"]
    assert for_line(CONTACTS, managers, responsible="klk-it", system="siths") == ["it.support@uppsala.se"]


def test_provider_tasks_go_to_the_contacts_for_the_system_and_unit_first() -> None:
    assert for_line(CONTACTS) == ["unit1-siebel@x.se"]


def test_then_to_the_system_contacts_administrators_first() -> None:
    assert for_line(CONTACTS, unit_id="u3") == ["siebel-admin@x.se", "siebel-expert@x.se"]
    assert for_line(CONTACTS, unit_id=None) == ["siebel-admin@x.se", "siebel-expert@x.se"]


def test_then_to_the_units_own_contacts_then_provider_wide_contact_persons() -> None:
    assert for_line(CONTACTS, system="prator") == ["unit1-chef@x.se"]
    assert for_line(CONTACTS, system="prator", unit_id="u2") == ["kontakt@x.se"]
    assert for_line(CONTACTS, system="prator", unit_id=None) == ["kontakt@x.se"]


def test_never_dropped_for_want_of_a_contact() -> None:
    assert for_line([]) == ["fallback@uppsala.se"]
    # A provider-wide verksamhetschef is no contact person for the systems.
    assert for_line([contact("chef@x.se", "verksamhetschef")]) == ["fallback@uppsala.se"]
    for party in ("main-provider", "handing-over-provider", "taking-over-provider"):
        assert for_line([], responsible=party) == ["fallback@uppsala.se"]


def test_fallbacks_the_providers_then_the_systems_then_the_global_one() -> None:
    config = Config(fallback_contacts={"p1": "p1-chef@x.se"}, system_contacts={"siebel": "siebel-forvaltning@uppsala.se"})
    assert for_line([], config) == ["p1-chef@x.se"]
    assert for_line([], config, provider_id="p2") == ["siebel-forvaltning@uppsala.se"]
    assert for_line([], config, provider_id="p2", system="siths") == ["fallback@uppsala.se"]
    # Fallbacks are for want of a contact only.
    assert for_line([contact("kontakt@x.se")], config) == ["kontakt@x.se"]


def test_the_same_address_is_mailed_once() -> None:
    twice = [contact("a@x.se", "administrator", "siebel"), contact("A@x.se", "kontaktperson", "siebel", name="B")]
    assert for_line(twice, unit_id=None) == ["a@x.se"]


# --- routing: one mail per recipient with their lines (digests) -------------------------------


def siebel_and_siths() -> NotificationRequest:
    return request(system=None, unit_id=None, tasks=[
        task("t-siebel-1", dt.date(2027, 1, 5)),
        task("t-siths", dt.date(2026, 12, 30), system="siths", action="order-siths-cards", channel="it-support",
             where="it.support@uppsala.se", unit_id="u1", quantity=None),
        task("t-siebel-2", dt.date(2027, 1, 2), unit_id="u2", action="order-expert-users"),
        task("t-prator", dt.date(2027, 1, 9), system="prator", channel="local-admin", where=None, unit_id=None),
    ])


def test_a_multi_system_request_becomes_one_mail_per_recipient_with_their_lines() -> None:
    contacts = [contact("siebel-admin@x.se", "administrator", "siebel"), contact("kontakt@x.se", "kontaktperson")]
    req = siebel_and_siths()
    plan = route(contacts, req, CONFIG)
    assert plan.notification_id == req.id
    assert [(m.recipient, m.task_ids) for m in plan.mails] == [
        ("kontakt@x.se", ["t-siths", "t-prator"]),  # recipients in the order of their first task
        ("siebel-admin@x.se", ["t-siebel-2", "t-siebel-1"]),
    ]
    mails = [compose(for_mail(req, m), [m.recipient], CONFIG) for m in plan.mails]
    kontakt, admin = (text_of(mail) for mail in mails)
    assert "siths – order-siths-cards" in kontakt and "prator" in kontakt and "siebel" not in kontakt
    assert "Uppgift: t-siebel-1" in admin and "Uppgift: t-siebel-2" in admin and "siths" not in admin
    assert mails[0]["Subject"] == "[omboard] Påminnelse: 2 uppgifter för Omsorg AB förfaller senast 2026-12-30"
    assert mails[1]["Subject"] == "[omboard] Påminnelse: 2 uppgifter för Omsorg AB förfaller senast 2027-01-02"
    assert mails[0]["Message-ID"] != mails[1]["Message-ID"]
    assert [m["To"] for m in mails] == ["kontakt@x.se", "siebel-admin@x.se"]


def test_the_slice_of_a_request_keeps_its_id_and_says_its_own_system_and_unit() -> None:
    req = siebel_and_siths()
    part = for_mail(req, composition.PlannedMail(recipient="a@x.se", task_ids=["t-siebel-1", "t-siebel-2"]))
    assert (part.id, part.kind, part.responsible) == (req.id, req.kind, req.responsible)
    assert [t.task_id for t in part.tasks] == ["t-siebel-1", "t-siebel-2"]
    assert (part.system, part.unit_id) == ("siebel", None)
    one = for_mail(req, composition.PlannedMail(recipient="a@x.se", task_ids=["t-siths"]))
    assert (one.system, one.unit_id) == ("siths", "u1")


def test_a_line_for_several_recipients_reaches_each_of_them_once() -> None:
    contacts = [contact("a@x.se", "administrator", "siebel"), contact("b@x.se", "expertanvandare", "siebel", name="B"),
                contact("k@x.se", "kontaktperson")]
    plan = route(contacts, siebel_and_siths(), CONFIG)
    assert [(m.recipient, m.task_ids) for m in plan.mails] == [
        ("k@x.se", ["t-siths", "t-prator"]),
        ("a@x.se", ["t-siebel-2", "t-siebel-1"]),
        ("b@x.se", ["t-siebel-2", "t-siebel-1"]),
    ]


def test_klk_it_digests_split_by_system_manager_and_fallbacks_by_system() -> None:
    config = Config(system_contacts={"siths": "siths-forvaltning@uppsala.se"})
    plan = route([], siebel_and_siths().model_copy(update={"responsible": "klk-it"}), config)
    assert [(m.recipient, m.task_ids) for m in plan.mails] == [
        ("siths-forvaltning@uppsala.se", ["t-siths"]),
        ("it.support@uppsala.se", ["t-siebel-2", "t-siebel-1", "t-prator"]),
    ]
    provider_side = route([], siebel_and_siths(), config)  # no contacts: the siths line to the system's address
    assert [m.recipient for m in provider_side.mails] == ["siths-forvaltning@uppsala.se", "fallback@uppsala.se"]


def test_routing_is_deterministic() -> None:
    assert route(CONTACTS, siebel_and_siths(), CONFIG) == route(list(reversed(CONTACTS)), siebel_and_siths(), CONFIG)


def test_sent_records_are_kept_per_request_and_recipient() -> None:
    assert composition.sent_key("n1", "A@x.se") == composition.sent_key("n1", "a@x.se") == b"n1|a@x.se"
    assert composition.sent_key("n1", "b@x.se") != composition.sent_key("n1", "a@x.se")


# --- composition ---------------------------------------------------------------------------


def text_of(mail) -> str:
    """The body through the wire format and back, as the recipient's client reads it."""
    return BytesParser(policy=policy.default).parsebytes(mail.as_bytes()).get_content()


def three_tasks() -> list[TaskLine]:
    return [
        task("t1", dt.date(2027, 1, 5)),
        task("t2", dt.date(2026, 12, 30), action="book-training", channel="boka", where="http://kursbokning.example/",
             instructions_sv="Boka utbildning i BOKA.", instructions_en="Book training in BOKA.", quantity=None),
        task("t3", dt.date(2027, 1, 2), system="prator", unit_id=None, quantity=None, where=None, channel="provider"),
    ]


def test_subject_is_swedish_names_the_count_provider_and_first_deadline() -> None:
    mail = compose(request(tasks=three_tasks()), ["a@x.se"], CONFIG)
    assert mail["Subject"] == "[omboard] Påminnelse: 3 uppgifter för Omsorg AB förfaller senast 2026-12-30"
    assert composition.subject(request()) == "[omboard] Påminnelse: 1 uppgift för Omsorg AB förfaller senast 2026-12-30"


@pytest.mark.parametrize(
    ("kind", "wording"),
    [
        ("escalation", "Eskalering: 3 uppgifter för Omsorg AB är försenade (förföll 2026-12-30)"),
        ("late-order", "Sen beställning: 3 uppgifter för Omsorg AB hade tidsgräns redan 2026-12-30"),
        ("unblocked", "Kan påbörjas: 3 uppgifter för Omsorg AB förfaller senast 2026-12-30"),
    ],
)
def test_each_kind_has_its_own_wording(kind: str, wording: str) -> None:
    assert composition.subject(request(kind=kind, tasks=three_tasks())) == f"[omboard] {wording}"


def test_subject_falls_back_to_the_provider_id_and_cannot_inject_headers() -> None:
    assert "för p1 förfaller" in composition.subject(request(provider_name=None))
    mail = compose(request(provider_name="Evil\r\nBcc: all@x.se"), ["a@x.se"], CONFIG)
    assert mail["Bcc"] is None and "Evil Bcc: all@x.se" in mail["Subject"]
    assert b"\nBcc:" not in mail.as_bytes()


def test_message_id_is_stable_per_request_and_recipient_so_a_resent_mail_is_recognisable() -> None:
    first = compose(request(), ["a@x.se"], CONFIG)
    again = compose(request(), ["a@x.se"], CONFIG)
    assert first.as_bytes() == again.as_bytes()
    assert first["Message-ID"] == composition.message_id(request(), ["a@x.se"])
    assert first["Message-ID"].startswith("<reminder-0001.") and first["Message-ID"].endswith("@omboard>")
    assert compose(request(), ["A@x.se"], CONFIG)["Message-ID"] == first["Message-ID"]  # addresses ignore case
    assert compose(request(), ["b@x.se"], CONFIG)["Message-ID"] != first["Message-ID"]
    assert compose(request(id="reminder-0002"), ["a@x.se"], CONFIG)["Message-ID"].startswith("<reminder-0002.")
    assert composition.message_id(request(id="odd id<>@x"), ["a@x.se"]).startswith("<odd-id---x.")


def test_headers() -> None:
    mail = compose(request(), ["a@x.se"], CONFIG)
    assert mail["From"] == "omboard@uppsala.se"
    assert mail["To"] == "a@x.se"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Date"] == "Tue, 01 Dec 2026 08:00:00 +0000"
    assert mail["Content-Language"] == "sv, en"
    assert mail["X-Omboard-Kind"] == "reminder" and mail["X-Omboard-Notification-Id"] == "reminder-0001"
    with pytest.raises(ValueError):
        compose(request(), [], CONFIG)


def test_body_lists_each_task_in_swedish_then_english_with_channels_and_the_status_link() -> None:
    text = text_of(compose(request(tasks=three_tasks()), ["a@x.se"], CONFIG))
    swedish, english = text.split("-- In English --")
    assert swedish.index("Senast 2026-12-30") < swedish.index("Senast 2027-01-02") < swedish.index("Senast 2027-01-05")
    for expected in ("siebel – order-accounts-and-tokens", "Åtagande: SB2", "Enhet: u1", "Antal: 3",
                     "Kanal: Sesam", "Var: Sesam\n", "Kanal: BOKA (kursbokning)\n   Var: http://kursbokning.example/",
                     "Kanal: utföraren gör det själv\n   Gör så här", "Gör så här: Beställ konton i Siebel.",
                     "prator – order-accounts-and-tokens", "Uppgift: t3", "System: prator, siebel.",
                     "Den första tidsgränsen är 2026-12-30."):
        assert expected in swedish, expected
    for expected in ("Due 2026-12-30", "Obligation: SB2", "Unit: u1", "Quantity: 3", "Channel: Sesam",
                     "Where: http://kursbokning.example/", "What to do: Book training in BOKA.", "Task: t2",
                     "The first deadline is 2026-12-30."):
        assert expected in english, expected
    link = "https://omboard.example/providers/p1"
    assert f"Status och alla uppgifter för Omsorg AB: {link}" in swedish
    assert f"Status and all tasks of Omsorg AB: {link}" in english
    assert english.rstrip().endswith("Referens / Reference: reminder-0001")


@pytest.mark.parametrize(
    ("kind", "swedish", "english"),
    [
        ("reminder", "Hej! Det här är en påminnelse om 3 uppgifter som utföraren ska utföra för Omsorg AB.",
         "Hello! This is a reminder of 3 tasks for the provider to carry out for Omsorg AB."),
        ("escalation", "Det här är en eskalering till utföraren",
         "Hello! 3 tasks for Omsorg AB are past the deadline (the first was due 2026-12-30) and not done."),
        ("late-order", "beställdes först efter sin tidsgräns enligt checklistan (den första var 2026-12-30)",
         "3 tasks for Omsorg AB were ordered only after the checklist's deadline"),
        ("unblocked", "Nu kan utföraren utföra dem; den första tidsgränsen är 2026-12-30.",
         "The provider can now carry them out; the first deadline is 2026-12-30."),
    ],
)
def test_each_kind_has_its_own_template_in_swedish_and_english(kind: str, swedish: str, english: str) -> None:
    text = text_of(compose(request(kind=kind, tasks=three_tasks()), ["a@x.se"], CONFIG))
    sv, en = text.split("-- In English --")
    assert swedish in sv and english in en
    assert "Uppgift: t1" in sv and "Task: t1" in en


def test_singular_wording_for_one_task() -> None:
    text = text_of(compose(request(kind="escalation"), ["a@x.se"], CONFIG))
    assert "1 uppgift för Omsorg AB har passerat" in text and "är inte klar." in text
    assert "1 task for Omsorg AB is past the deadline" in text and "see to it at once" in text


def test_the_builtin_templates_cover_every_kind_in_both_languages() -> None:
    library = templating.templates()
    library.check(composition.KINDS, composition.LANGUAGES)
    for kind in composition.KINDS:
        for language in composition.LANGUAGES:
            assert library.resolve(kind, language).name == f"{kind}.{language}.txt.j2"


def write_templates(directory: Path, **templates: str) -> Templates:
    for name, text in templates.items():
        (directory / f"{name}.txt.j2").write_text(text, encoding="utf-8")
    return Templates(directory)


def test_a_missing_swedish_template_falls_back_to_english_shown_once(tmp_path: Path) -> None:
    library = write_templates(tmp_path, **{"reminder.en": "EN {{ n }} for {{ party }}\n", "generic.sv": "GENERIC SV\n"})
    text, languages = composition.body_and_languages(request(), CONFIG, library)
    assert text == "EN 1 for the provider\n" and languages == ["en"]
    mail = compose(request(), ["a@x.se"], CONFIG, library)
    assert mail["Content-Language"] == "en"


def test_a_kind_without_templates_falls_back_to_the_generic_ones(tmp_path: Path) -> None:
    library = write_templates(tmp_path, **{"generic.sv": "SV {{ kind }}\n", "generic.en": "EN {{ kind }}\n",
                                           "_footer": "-- {{ reference }}\n"})
    text, languages = composition.body_and_languages(request(kind="unblocked"), CONFIG, library)
    assert text == "SV unblocked\n\n-- In English --\n\nEN unblocked\n\n-- reminder-0001\n"
    assert languages == ["sv", "en"]
    (tmp_path / "generic.sv.txt.j2").unlink()
    assert composition.body(request(kind="unblocked"), CONFIG, Templates(tmp_path)) == "EN unblocked\n\n-- reminder-0001\n"


def test_the_builtin_generic_templates_stand_in_for_any_kind() -> None:
    library = Templates(templating.BUILTIN)
    generic = library.env.get_template("generic.sv.txt.j2").render(
        composition._context(request(tasks=three_tasks()), CONFIG, "sv"))
    assert generic.startswith("Hej! Det här gäller 3 uppgifter för Omsorg AB.") and "Uppgift: t2" in generic


def test_no_template_at_all_is_an_error_at_start(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="reminder.sv.txt.j2"):
        Templates(tmp_path).check(composition.KINDS, composition.LANGUAGES)


def test_an_operators_directory_overrides_single_builtin_templates(tmp_path: Path) -> None:
    (tmp_path / "reminder.sv.txt.j2").write_text("Egen text: {{ n|plural('uppgift', 'uppgifter') }}.\n", encoding="utf-8")
    config = Config(mail_templates_dir=tmp_path)
    sv, en = text_of(compose(request(tasks=three_tasks()), ["a@x.se"], config)).split("-- In English --")
    assert sv.strip() == "Egen text: 3 uppgifter."
    assert "Hello! This is a reminder of 3 tasks" in en


def test_the_status_link_quotes_the_provider_id() -> None:
    assert composition.status_link(request(provider_id="p:1"), CONFIG) == "https://omboard.example/providers/p%3A1"


def test_no_person_id_reaches_a_mail() -> None:
    assert "person_id" not in TaskLine.model_fields  # by design, and it stays that way
    leaky = task(instructions_sv=f"Beställ kort för {HSA_ID}.", instructions_en=f"Order a card for {HSA_ID}.")
    mail = compose(request(tasks=[leaky], provider_name=f"Omsorg {HSA_ID}"), ["a@x.se"], CONFIG)
    assert HSA_ID not in mail.as_string() and HSA_ID not in mail.get_content() and HSA_ID not in mail["Subject"]
    assert pseudonym(HSA_ID) in mail.get_content()


@pytest.mark.parametrize("number", ["121212-1212", "19121212-1212", "191212121212", "1212121212", "121212+1212",
                                    "701063-2391"])  # the last a coordination number (day + 60)
def test_no_personal_identity_number_reaches_a_mail(number: str) -> None:
    leaky = task(instructions_sv=f"Beställ kort för {number}.", instructions_en=f"Order a card for ({number}).")
    mail = compose(request(tasks=[leaky], provider_name=f"Omsorg {number}"), ["a@x.se"], CONFIG)
    assert number not in mail.as_string()
    assert f"kort för {PERSONAL_NUMBER_PLACEHOLDER}." in mail.get_content()
    assert f"card for ({PERSONAL_NUMBER_PLACEHOLDER})." in mail.get_content()
    assert mail["Subject"].count(PERSONAL_NUMBER_PLACEHOLDER) == 1


def test_numbers_that_are_no_personal_identity_number_stay_in_a_mail() -> None:
    kept = ["212000-3005",  # an organisation number (Uppsala kommun): its "month" is 20
            "121212-1213",  # a wrong check digit
            "2026-12-30", "08-123 45 67", "ref 1234567890123"]
    text = redact(" · ".join(kept))
    assert text == " · ".join(kept)
    assert redact(f"{HSA_ID} 811218-9876") == f"{pseudonym(HSA_ID)} {PERSONAL_NUMBER_PLACEHOLDER}"


def test_delivery_record_and_when_to_send_again() -> None:
    req = request()
    mail = compose(req, ["a@x.se"], CONFIG)
    record = composition.delivery_record(req, mail, ["a@x.se"], "sent", T0)
    assert (record.notification_id, record.message_id, record.recipients) == ("reminder-0001", mail["Message-ID"], ["a@x.se"])
    assert record.subject == mail["Subject"]
    assert should_send(None)
    assert not should_send(record)
    assert should_send(record.model_copy(update={"status": "failed", "reason": "permanent ..."}))


# --- SMTP failure classification and retries -------------------------------------------------


@pytest.mark.parametrize(
    ("error", "temporary"),
    [
        (aiosmtplib.SMTPDataError(451, "try later"), True),
        (aiosmtplib.SMTPSenderRefused(550, "no", "omboard@uppsala.se"), False),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), False),
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "unknown", "a@x.se")]), False),
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(452, "full", "a@x.se")]), True),
        (aiosmtplib.SMTPConnectError("refused"), True),
        (aiosmtplib.SMTPServerDisconnected("gone"), True),
        (aiosmtplib.SMTPTimeoutError("slow"), True),
        (ConnectionRefusedError(111, "refused"), True),
        (aiosmtplib.SMTPNotSupported("STARTTLS not offered"), False),
        (aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."), False),
        (aiosmtplib.SMTPException("The SMTP AUTH extension is not supported by this server."), False),
        (ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate"), False),
        (aiosmtplib.SMTPException("something else went wrong"), True),
    ],
)
def test_failures_are_temporary_or_permanent(error: Exception, temporary: bool) -> None:
    classified = smtp.classify(error)
    assert classified.temporary is temporary
    assert isinstance(classified, smtp.TemporaryDeliveryError if temporary else smtp.PermanentDeliveryError)


def run_with_retries(outcomes: list[Exception | None], attempts: int = 4) -> tuple[object, list[float], int]:
    calls = 0
    pauses: list[float] = []

    async def send_once(message):
        nonlocal calls
        outcome = outcomes[calls]
        calls += 1
        if outcome is not None:
            raise outcome
        return smtp.Sent(response="ok")

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    async def go():
        try:
            return await smtp.send_with_retries(send_once, compose(request(), ["a@x.se"], CONFIG),
                                                attempts=attempts, backoff=0.5, sleep=sleep)
        except smtp.DeliveryError as error:
            return error

    return asyncio.run(go()), pauses, calls


def test_temporary_failures_are_retried_with_backoff() -> None:
    temporary = aiosmtplib.SMTPDataError(451, "later")
    result, pauses, calls = run_with_retries([temporary, temporary, None])
    assert result == (smtp.Sent(response="ok"), 3) and pauses == [0.5, 1.0] and calls == 3


def test_retries_are_bounded() -> None:
    result, pauses, calls = run_with_retries([aiosmtplib.SMTPServerDisconnected("gone")] * 3, attempts=3)
    assert isinstance(result, smtp.TemporaryDeliveryError) and result.attempts == 3  # type: ignore[attr-defined]
    assert pauses == [0.5, 1.0] and calls == 3


def test_permanent_failures_are_not_retried() -> None:
    result, pauses, calls = run_with_retries([aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(550, "unknown", "a@x.se")])])
    assert isinstance(result, smtp.PermanentDeliveryError) and "a@x.se: 550 unknown" in result.reason
    assert pauses == [] and calls == 1


# --- the verdict on a date ------------------------------------------------------------------------


def verdict_request(**fields) -> NotificationRequest:
    from schemas.tasks import ChainStep, Warning

    chain = [ChainStep(task_id="t1", rule="siebel-send-org-structure", system="siebel", action="send-org-structure",
                       due=dt.date(2026, 12, 30), checklist_due=dt.date(2026, 12, 1)),
             ChainStep(task_id="t2", rule="siebel-order-accounts", system="siebel", action="order-accounts-and-tokens",
                       unit_id="u1", due=dt.date(2027, 1, 20))]
    verdict = Warning(code="date-at-risk", obligation="SB2", message="ProviderStarted: ...", date=dt.date(2027, 1, 4),
                      earliest_feasible=dt.date(2027, 1, 21), chain=chain)
    values = dict(kind="date-at-risk", id="risk-0001", verdict=verdict, system=None, unit_id=None,
                  tasks=[task("t1", dt.date(2026, 12, 30), action="send-org-structure", unit_id=None, quantity=None),
                         task("t2", dt.date(2027, 1, 20))])
    return request(**(values | fields))


def test_a_date_at_risk_is_one_mail_to_the_contacts_of_its_chain_and_klk_it_together() -> None:
    contacts = [contact("siebel@p1.se", role="administrator", system="siebel"),
                contact("unit1@p1.se", system="siebel", unit_id="u1")]
    plan = route(contacts, verdict_request(), CONFIG)
    (mail,) = plan.mails
    assert mail.to == ["siebel@p1.se", "unit1@p1.se", "it.support@uppsala.se"]
    assert mail.task_ids == ["t1", "t2"]
    composed = compose(for_mail(verdict_request(), mail), mail.to, CONFIG)
    assert composed["To"] == "siebel@p1.se, unit1@p1.se, it.support@uppsala.se"
    assert composed["Subject"] == "[omboard] Datum i fara: 2027-01-04 för Omsorg AB kan inte hållas, tidigast 2027-01-21"
    # Nobody's address twice: a contact who is also KLK IT's address is one recipient.
    (again,) = route([contact("IT.support@uppsala.se", system="siebel")], verdict_request(), CONFIG).mails
    assert again.to == ["IT.support@uppsala.se"]


def test_a_date_at_risk_mail_names_the_date_the_earliest_feasible_one_and_the_chain_in_both_languages() -> None:
    text = text_of(compose(verdict_request(), ["a@x.se"], CONFIG))
    sv, en = text.split("-- In English --")
    assert "Datumet 2027-01-04 för Omsorg AB kan inte hållas" in sv and "Tidigaste datum som kan hållas: 2027-01-21." in sv
    assert "1. siebel – send-org-structure: klar tidigast 2026-12-30 (enligt checklistan 2026-12-01)" in sv
    assert "2. siebel – order-accounts-and-tokens (enhet u1): klar tidigast 2027-01-20" in sv
    assert "The date 2027-01-04 for Omsorg AB cannot be met" in en and "The earliest date that can be met: 2027-01-21." in en
    assert "1. siebel – send-org-structure: done 2026-12-30 at the earliest (the checklist says 2026-12-01)" in en
    assert "goes once, to the provider and KLK IT together" in en
    assert "Task: t2" in en


def test_a_late_order_names_the_checklists_deadline_that_passed_and_the_date_each_task_is_due_now() -> None:
    late = [task("t1", dt.date(2027, 1, 8), checklist_due=dt.date(2026, 12, 1)),
            task("t2", dt.date(2027, 1, 12), checklist_due=dt.date(2026, 12, 15))]
    req = request(kind="late-order", tasks=late)
    assert composition.subject(req) == "[omboard] Sen beställning: 2 uppgifter för Omsorg AB hade tidsgräns redan 2026-12-01"
    sv, en = text_of(compose(req, ["a@x.se"], CONFIG)).split("-- In English --")
    assert "(den första var 2026-12-01)" in sv and "det första 2027-01-08" in sv
    assert "1. Senast 2027-01-08: siebel – order-accounts-and-tokens\n   Enligt checklistan: 2026-12-01" in sv
    assert "(the first was 2026-12-01)" in en and "The checklist says: 2026-12-15" in en


def test_a_date_at_risk_reaches_klk_its_system_manager_for_klk_its_own_task_in_the_chain() -> None:
    config = Config(system_contacts={"siebel": "siebel-forvaltning@uppsala.se"})
    lines = [task("t1", dt.date(2026, 12, 30), action="create-org-structure", unit_id=None, quantity=None,
                  responsible="klk-it"),
             task("t2", dt.date(2027, 1, 20))]
    (mail,) = route([contact("unit1@p1.se", system="siebel", unit_id="u1")], verdict_request(tasks=lines), config).mails
    assert mail.to == ["siebel-forvaltning@uppsala.se", "unit1@p1.se", "it.support@uppsala.se"]
