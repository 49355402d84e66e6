"""The notifier's pure logic: whom to tell, and what the mail says. No I/O here.

- ``fold`` keeps each provider's contacts from ProviderStarted and ContactAssigned events.
- ``recipients`` picks the addresses for a notification request, falling back step by step so a
  notification is never dropped for want of a contact.
- ``compose`` builds the mail: a Swedish subject, a plain-text body in Swedish then English, and a
  Message-ID derived from the request id, so a mail sent twice is recognisably the same mail.

Person ids (HSA-ids) never reach a mail: the TaskLine carries none, and free text is scrubbed of
anything shaped like one before it goes into a body.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Literal, Protocol
from urllib.parse import quote

from pydantic import Field

from schemas.events import Contact, ContactAssigned, Contract, Envelope, ProviderStarted
from schemas.identifiers import pseudonym
from schemas.notifications import DeliveryRecord, NotificationKind, NotificationRequest, TaskLine

SUBJECT_PREFIX = "[omboard]"

#: Provider-wide contacts who get a provider's mail when nobody is named for the system or unit.
PROVIDER_WIDE_ROLES = ("kontaktperson", "administrator")

#: Within one step of the fallback, the people who administer a system come first.
_ROLE_ORDER = {
    role: rank
    for rank, role in enumerate(
        ("administrator", "behorighetsadministrator", "kontaktperson", "verksamhetschef", "enhetschef", "expertanvandare")
    )
}

_HSA_ID = re.compile(r"SE\d{10}-[A-Za-z0-9]{1,20}")
_MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]")


class MailConfig(Protocol):
    """The settings the domain needs (``services.runtime.settings.Settings`` has them all)."""

    mail_from: str
    klk_it_email: str
    fallback_email: str
    status_page_url: str


# --------------------------------------------------------------------------------------- contacts


class ProviderContacts(Contract):
    """What the notifier knows about one provider: its name and the contacts it has named."""

    provider_id: str
    provider_name: str | None = None
    contacts: list[Contact] = Field(default_factory=list)


def with_contact(contacts: Sequence[Contact], contact: Contact) -> list[Contact]:
    """A newer contact for the same role, system and unit replaces the older one."""
    same = (contact.role, contact.system, contact.unit_id)
    return [c for c in contacts if (c.role, c.system, c.unit_id) != same] + [contact]


def matters(event: Envelope) -> bool:
    """Whether the notifier keeps anything from this event."""
    return isinstance(event.data, (ProviderStarted, ContactAssigned))


def fold(known: ProviderContacts | None, event: Envelope) -> ProviderContacts | None:
    """The provider's contacts after ``event``; None when the event does not concern contacts.

    Folding the same event twice gives the same result, so a redelivered event is harmless.
    """
    data = event.data
    state = known or ProviderContacts(provider_id=event.provider_id)
    match data:
        case ProviderStarted():
            contacts = list(state.contacts)
            for contact in data.contacts:
                contacts = with_contact(contacts, contact)
            return state.model_copy(update={"provider_name": data.provider.name, "contacts": contacts})
        case ContactAssigned():
            return state.model_copy(update={"contacts": with_contact(state.contacts, data.contact)})
    return None


# ------------------------------------------------------------------------------------- recipients


def _addresses(contacts: Iterable[Contact]) -> list[str]:
    ordered = sorted(contacts, key=lambda c: (_ROLE_ORDER.get(c.role, len(_ROLE_ORDER)), c.name, c.email))
    seen: set[str] = set()
    result = []
    for contact in ordered:
        if contact.email.lower() not in seen:
            seen.add(contact.email.lower())
            result.append(contact.email)
    return result


def recipients(contacts: Sequence[Contact], request: NotificationRequest, config: MailConfig) -> list[str]:
    """Who gets ``request``: never empty.

    KLK IT's tasks go to the KLK IT address. A provider-side party's go to the first of: the
    provider's contacts for the request's system and unit; for the system (provider-wide); for the
    unit (any system); its provider-wide contact persons and administrators; the fallback address,
    whose owner forwards the mail and chases the missing contact.
    """
    if request.responsible == "klk-it":
        return [config.klk_it_email]
    system, unit = request.system, request.unit_id
    steps = []
    if system and unit:
        steps.append(lambda c: c.system == system and c.unit_id == unit)
    if system:
        steps.append(lambda c: c.system == system and c.unit_id is None)
    if unit:
        steps.append(lambda c: c.system is None and c.unit_id == unit)
    steps.append(lambda c: c.system is None and c.unit_id is None and c.role in PROVIDER_WIDE_ROLES)
    for step in steps:
        found = _addresses(c for c in contacts if step(c))
        if found:
            return found
    return [config.fallback_email]


# ------------------------------------------------------------------------------------ composition

_PARTY_SV = {
    "klk-it": "KLK IT",
    "provider": "utföraren",
    "main-provider": "huvudutföraren",
    "handing-over-provider": "den överlämnande utföraren",
    "taking-over-provider": "den övertagande utföraren",
}
_PARTY_EN = {
    "klk-it": "KLK IT",
    "provider": "the provider",
    "main-provider": "the main provider",
    "handing-over-provider": "the handing-over provider",
    "taking-over-provider": "the taking-over provider",
}


def _tasks_sv(count: int) -> str:
    return "1 uppgift" if count == 1 else f"{count} uppgifter"


def _tasks_en(count: int) -> str:
    return "1 task" if count == 1 else f"{count} tasks"


def _one_line(text: str) -> str:
    """Header-safe: no line breaks (header injection), no runs of whitespace."""
    return " ".join(text.split())


def redact(text: str) -> str:
    """Replace anything shaped like an HSA-id with its pseudonym."""
    return _HSA_ID.sub(lambda match: pseudonym(match.group(0)), text)


def provider_label(request: NotificationRequest) -> str:
    return redact(_one_line(request.provider_name or request.provider_id))


def first_due(request: NotificationRequest) -> dt.date:
    """The earliest deadline among the request's tasks: the one that binds."""
    return min(task.due for task in request.tasks)


def subject(request: NotificationRequest) -> str:
    """The Swedish subject; each kind has its own wording."""
    n = len(request.tasks)
    tasks = _tasks_sv(n)
    who = provider_label(request)
    due = first_due(request).isoformat()
    wording: dict[NotificationKind, str] = {
        "reminder": f"Påminnelse: {tasks} för {who} förfaller senast {due}",
        "escalation": f"Eskalering: {tasks} för {who} {'är försenad' if n == 1 else 'är försenade'} (förföll {due})",
        "late-order": f"Sen beställning: {tasks} för {who} hade tidsgräns redan {due}",
        "unblocked": f"Kan påbörjas: {tasks} för {who} förfaller senast {due}",
    }
    return f"{SUBJECT_PREFIX} {wording[request.kind]}"


def _intro_sv(request: NotificationRequest) -> str:
    party = _PARTY_SV[request.responsible]
    who = provider_label(request)
    one = len(request.tasks) == 1
    tasks = _tasks_sv(len(request.tasks))
    them = "den" if one else "dem"
    return {
        "reminder": f"Hej! Det här är en påminnelse om {tasks} som {party} ska utföra för {who}.",
        "escalation": f"Hej! {tasks.capitalize()} som {party} skulle ha utfört för {who} har passerat "
        f"sin tidsgräns och är inte {'klar' if one else 'klara'}. Åtgärda {them} snarast.",
        "late-order": f"Hej! {tasks.capitalize()} för {who} beställdes först efter "
        f"sin tidsgräns. Det som {party} ska göra behöver därför göras omgående.",
        "unblocked": f"Hej! {tasks.capitalize()} för {who} väntade på att annat arbete skulle bli klart. "
        f"Nu kan {party} utföra {them}.",
    }[request.kind]


def _intro_en(request: NotificationRequest) -> str:
    party = _PARTY_EN[request.responsible]
    who = provider_label(request)
    one = len(request.tasks) == 1
    tasks = _tasks_en(len(request.tasks)).capitalize()
    them = "it" if one else "them"
    return {
        "reminder": f"Hello! This is a reminder of {_tasks_en(len(request.tasks))} for {party} to carry out for {who}.",
        "escalation": f"Hello! {tasks} that {party} should have carried out for {who} "
        f"{'is' if one else 'are'} past the deadline and not done. Please see to {them} at once.",
        "late-order": f"Hello! {tasks} for {who} {'was' if one else 'were'} ordered only after the deadline, "
        f"so what {party} has to do needs doing right away.",
        "unblocked": f"Hello! {tasks} for {who} {'was' if one else 'were'} waiting for other work to be done. "
        f"{party[0].upper()}{party[1:]} can now carry {them} out.",
    }[request.kind]


def _ordered(tasks: Iterable[TaskLine]) -> list[TaskLine]:
    return sorted(tasks, key=lambda t: (t.due, t.system, t.action, t.unit_id or "", t.task_id))


def _task_block(number: int, task: TaskLine, english: bool) -> list[str]:
    labels = (
        ("Due", "Obligation", "Unit", "Quantity", "Channel", "What to do", "Task")
        if english
        else ("Senast", "Åtagande", "Enhet", "Antal", "Kanal", "Gör så här", "Uppgift")
    )
    due, obligation, unit, quantity, channel, what, ref = labels
    channel_text = task.channel + (f" ({task.where})" if task.where else "")
    lines = [f"{number}. {due} {task.due.isoformat()}: {task.system} – {task.action}"]
    lines.append(f"   {obligation}: {task.obligation}")
    if task.unit_id:
        lines.append(f"   {unit}: {task.unit_id}")
    if task.quantity is not None:
        lines.append(f"   {quantity}: {task.quantity}")
    lines.append(f"   {channel}: {channel_text}")
    lines.append(f"   {what}: {task.instructions_en if english else task.instructions_sv}")
    lines.append(f"   {ref}: {task.task_id}")
    return [redact(line) for line in lines]


def status_link(request: NotificationRequest, config: MailConfig) -> str:
    return f"{config.status_page_url.rstrip('/')}/providers/{quote(request.provider_id, safe='')}"


def body(request: NotificationRequest, config: MailConfig) -> str:
    tasks = _ordered(request.tasks)
    link = status_link(request, config)
    lines = [_intro_sv(request), ""]
    for number, task in enumerate(tasks, 1):
        lines += _task_block(number, task, english=False) + [""]
    lines += [
        f"Status och alla uppgifter för utföraren: {link}",
        "Markera en uppgift som klar när den är gjord, så upphör påminnelserna.",
        "",
        "-- In English --",
        "",
        _intro_en(request),
        "",
    ]
    for number, task in enumerate(tasks, 1):
        lines += _task_block(number, task, english=True) + [""]
    lines += [
        f"Status and all tasks of the provider: {link}",
        "Mark a task as done once it is, and the reminders stop.",
        "",
        "--",
        "Skickat automatiskt av omboard, svara inte på detta meddelande. / Sent automatically by omboard; do not reply.",
        f"Referens / Reference: {request.id}",
    ]
    return "\n".join(redact(line) for line in lines) + "\n"


def message_id(request: NotificationRequest) -> str:
    """``<{request.id}@omboard>``: the same request always yields the same Message-ID.

    Characters a Message-ID cannot hold are replaced; ids are deterministic, so that is stable too.
    """
    local = _MESSAGE_ID_UNSAFE.sub("-", request.id)
    local = re.sub(r"\.{2,}", ".", local).strip(".") or "notification"
    return f"<{local}@omboard>"


def compose(request: NotificationRequest, to: Sequence[str], config: MailConfig) -> EmailMessage:
    """The complete mail for ``request``; composing the same request twice gives the same mail."""
    if not to:
        raise ValueError("a mail needs at least one recipient")
    message = EmailMessage()
    message["Subject"] = subject(request)
    message["From"] = config.mail_from
    message["To"] = ", ".join(to)
    message["Message-ID"] = message_id(request)
    # The request's time, not the wall clock: a re-sent mail is byte for byte the same mail.
    requested = request.requested_at
    message["Date"] = format_datetime(requested if requested.tzinfo else requested.replace(tzinfo=dt.timezone.utc))
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies, please
    message["X-Omboard-Notification-Id"] = _one_line(request.id)
    message["X-Omboard-Kind"] = request.kind
    message.set_content(body(request, config))
    message["Content-Language"] = "sv, en"  # after set_content, which replaces Content-* headers
    return message


# ------------------------------------------------------------------------------------ bookkeeping


def should_send(previous: DeliveryRecord | None) -> bool:
    """Send unless this notification was already delivered.

    A request seen before whose delivery failed is tried again: that is how an operator retries
    a dead-lettered notification (the deadline engine asks for each reminder once).
    """
    return previous is None or previous.status != "sent"


def delivery_record(
    request: NotificationRequest,
    message: EmailMessage,
    to: Sequence[str],
    status: Literal["sent", "failed"],
    at: dt.datetime,
    reason: str | None = None,
) -> DeliveryRecord:
    return DeliveryRecord(
        notification_id=request.id,
        message_id=str(message["Message-ID"]),
        recipients=list(to),
        subject=str(message["Subject"]),
        status=status,
        reason=reason,
        at=at,
    )
