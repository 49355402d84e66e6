"""The notifier's pure parts: contacts, recipients, the mail, and SMTP failure classification."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser

import aiosmtplib
import pytest

from schemas.events import Contact, ContactAssigned, Envelope, Provider, ProviderStarted, StaffLeft, Unit
from schemas.identifiers import pseudonym
from schemas.notifications import NotificationRequest, TaskLine
from services.notifier import domain, smtp
from services.notifier.domain import ProviderContacts, compose, fold, recipients, should_send

HSA_ID = "SE2321000131-E000000000001"
T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.timezone.utc)


@dataclass
class Config:
    mail_from: str = "omboard@uppsala.se"
    klk_it_email: str = "it.support@uppsala.se"
    fallback_email: str = "fallback@uppsala.se"
    status_page_url: str = "https://omboard.example/"


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
    assert once == ProviderContacts(provider_id="p1", contacts=[contact("b@x.se")])
    leaver = envelope(StaffLeft(provider_id="p1", person_id=HSA_ID, end_date=dt.date(2027, 1, 1)))
    assert not domain.matters(leaver) and fold(once, leaver) is None


# --- recipients ----------------------------------------------------------------------------

CONTACTS = [
    contact("unit1-siebel@x.se", "administrator", "siebel", "u1"),
    contact("unit2-siebel@x.se", "administrator", "siebel", "u2"),
    contact("siebel-admin@x.se", "administrator", "siebel"),
    contact("siebel-expert@x.se", "expertanvandare", "siebel", name="Bo"),
    contact("unit1-chef@x.se", "enhetschef", None, "u1"),
    contact("kontakt@x.se", "kontaktperson"),
    contact("chef@x.se", "verksamhetschef"),
]


def test_klk_it_tasks_go_to_the_klk_it_address() -> None:
    assert recipients(CONTACTS, request(responsible="klk-it"), CONFIG) == ["it.support@uppsala.se"]


def test_provider_tasks_go_to_the_contacts_for_the_system_and_unit_first() -> None:
    assert recipients(CONTACTS, request(), CONFIG) == ["unit1-siebel@x.se"]


def test_then_to_the_system_contacts_administrators_first() -> None:
    assert recipients(CONTACTS, request(unit_id="u3"), CONFIG) == ["siebel-admin@x.se", "siebel-expert@x.se"]
    assert recipients(CONTACTS, request(unit_id=None), CONFIG) == ["siebel-admin@x.se", "siebel-expert@x.se"]


def test_then_to_the_units_own_contacts_then_provider_wide_contact_persons() -> None:
    assert recipients(CONTACTS, request(system="prator"), CONFIG) == ["unit1-chef@x.se"]
    assert recipients(CONTACTS, request(system="prator", unit_id="u2"), CONFIG) == ["kontakt@x.se"]
    assert recipients(CONTACTS, request(system=None, unit_id=None), CONFIG) == ["kontakt@x.se"]


def test_never_dropped_for_want_of_a_contact() -> None:
    assert recipients([], request(), CONFIG) == ["fallback@uppsala.se"]
    # A provider-wide verksamhetschef is no contact person for the systems.
    assert recipients([contact("chef@x.se", "verksamhetschef")], request(), CONFIG) == ["fallback@uppsala.se"]
    for party in ("main-provider", "handing-over-provider", "taking-over-provider"):
        assert recipients([], request(responsible=party), CONFIG) == ["fallback@uppsala.se"]


def test_the_same_address_is_mailed_once() -> None:
    twice = [contact("a@x.se", "administrator", "siebel"), contact("A@x.se", "kontaktperson", "siebel", name="B")]
    assert recipients(twice, request(unit_id=None), CONFIG) == ["a@x.se"]


# --- composition ---------------------------------------------------------------------------


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
    assert domain.subject(request()) == "[omboard] Påminnelse: 1 uppgift för Omsorg AB förfaller senast 2026-12-30"


@pytest.mark.parametrize(
    ("kind", "wording"),
    [
        ("escalation", "Eskalering: 3 uppgifter för Omsorg AB är försenade (förföll 2026-12-30)"),
        ("late-order", "Sen beställning: 3 uppgifter för Omsorg AB hade tidsgräns redan 2026-12-30"),
        ("unblocked", "Kan påbörjas: 3 uppgifter för Omsorg AB förfaller senast 2026-12-30"),
    ],
)
def test_each_kind_has_its_own_wording(kind: str, wording: str) -> None:
    assert domain.subject(request(kind=kind, tasks=three_tasks())) == f"[omboard] {wording}"


def test_subject_falls_back_to_the_provider_id_and_cannot_inject_headers() -> None:
    assert "för p1 förfaller" in domain.subject(request(provider_name=None))
    mail = compose(request(provider_name="Evil\r\nBcc: all@x.se"), ["a@x.se"], CONFIG)
    assert mail["Bcc"] is None and "Evil Bcc: all@x.se" in mail["Subject"]


def test_message_id_is_stable_so_a_resent_mail_is_recognisable() -> None:
    first = compose(request(), ["a@x.se"], CONFIG)
    again = compose(request(), ["a@x.se"], CONFIG)
    assert first["Message-ID"] == "<reminder-0001@omboard>"
    assert first.as_bytes() == again.as_bytes()
    assert compose(request(id="reminder-0002"), ["a@x.se"], CONFIG)["Message-ID"] == "<reminder-0002@omboard>"
    assert domain.message_id(request(id="odd id<>@x")) == "<odd-id---x@omboard>"


def test_headers() -> None:
    mail = compose(request(), ["a@x.se", "b@x.se"], CONFIG)
    assert mail["From"] == "omboard@uppsala.se"
    assert mail["To"] == "a@x.se, b@x.se"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Date"] == "Tue, 01 Dec 2026 08:00:00 +0000"
    assert mail["Content-Language"] == "sv, en"
    with pytest.raises(ValueError):
        compose(request(), [], CONFIG)


def test_body_lists_each_task_in_swedish_then_english_with_the_status_link() -> None:
    mail = compose(request(tasks=three_tasks()), ["a@x.se"], CONFIG)
    # Through the wire format and back, as the recipient's client reads it.
    text = BytesParser(policy=policy.default).parsebytes(mail.as_bytes()).get_content()
    swedish, english = text.split("-- In English --")
    assert swedish.index("Senast 2026-12-30") < swedish.index("Senast 2027-01-02") < swedish.index("Senast 2027-01-05")
    for expected in ("siebel – order-accounts-and-tokens", "Åtagande: SB2", "Enhet: u1", "Antal: 3",
                     "Kanal: sesam (Sesam)", "Kanal: boka (http://kursbokning.example/)", "Kanal: provider\n",
                     "Gör så här: Beställ konton i Siebel.", "prator – order-accounts-and-tokens", "Uppgift: t3"):
        assert expected in swedish, expected
    for expected in ("Due 2026-12-30", "Obligation: SB2", "Unit: u1", "Quantity: 3", "Channel: sesam (Sesam)",
                     "What to do: Book training in BOKA.", "Task: t2"):
        assert expected in english, expected
    link = "https://omboard.example/providers/p1"
    assert link in swedish and link in english


def test_the_status_link_quotes_the_provider_id() -> None:
    assert domain.status_link(request(provider_id="p:1"), CONFIG) == "https://omboard.example/providers/p%3A1"


def test_no_person_id_reaches_a_mail() -> None:
    assert "person_id" not in TaskLine.model_fields  # by design, and it stays that way
    leaky = task(instructions_sv=f"Beställ kort för {HSA_ID}.", instructions_en=f"Order a card for {HSA_ID}.")
    mail = compose(request(tasks=[leaky], provider_name=f"Omsorg {HSA_ID}"), ["a@x.se"], CONFIG)
    assert HSA_ID not in mail.as_string() and HSA_ID not in mail.get_content() and HSA_ID not in mail["Subject"]
    assert pseudonym(HSA_ID) in mail.get_content()


def test_delivery_record_and_when_to_send_again() -> None:
    req = request()
    mail = compose(req, ["a@x.se"], CONFIG)
    record = domain.delivery_record(req, mail, ["a@x.se"], "sent", T0)
    assert (record.notification_id, record.message_id, record.recipients) == ("reminder-0001", "<reminder-0001@omboard>", ["a@x.se"])
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
