"""The notifier's pure logic: whom to tell, and what the mail says. No I/O here (the templates
are read from disk once per process, see ``templating``).

- ``fold`` keeps each provider's contacts from ProviderStarted and ContactAssigned events.
- ``line_recipients`` picks the addresses for one task line (its system and unit), falling back
  step by step so a task is never dropped for want of a contact.
- ``route`` turns a request into a ``MailPlan``: one mail per distinct recipient, holding the
  lines that are that recipient's (a digest: reporting asks once per party and day).
- ``compose`` builds one mail from templates: a Swedish subject, a plain-text body in Swedish
  then English, and a Message-ID derived from the request id and the recipient, so a mail sent
  twice is recognisably the same mail.

Person ids (HSA-ids) never reach a mail: the TaskLine carries none, and free text is scrubbed of
anything shaped like one before it goes into a body.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote

from pydantic import Field

from schemas.events import Contact, ContactAssigned, Contract, Envelope, ProviderStarted
from schemas.identifiers import redact
from schemas.notifications import DeliveryRecord, NotificationKind, NotificationRequest, TaskLine
from services.domain.state import with_contact
from services.domain.templating import FOOTER, Templates, language_of, templates

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

_MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]")


class MailConfig(Protocol):
    """The settings the domain needs (``services.runtime.settings.Settings`` has them all)."""

    mail_from: str
    klk_it_email: str
    fallback_email: str
    status_page_url: str
    fallback_contacts: dict[str, str]  # provider id -> email
    system_contacts: dict[str, str]  # system -> email
    mail_templates_dir: Path | None


# --------------------------------------------------------------------------------------- contacts


#: How many event keys a provider's contacts remember for de-duplication, as the planners do:
#: redelivery under at-least-once is of recent messages.
PROCESSED_MEMORY = 1000


class ProviderContacts(Contract):
    """What the notifier knows about one provider: its name and the contacts it has named."""

    provider_id: str
    provider_name: str | None = None
    contacts: list[Contact] = Field(default_factory=list)
    #: The events folded in, by ``Envelope.dedup_key``: a repeat is a replay and changes nothing,
    #: even with other content (a resent ContactAssigned with a new address must not redirect mail).
    processed: list[str] = Field(default_factory=list)


def matters(event: Envelope) -> bool:
    """Whether the notifier keeps anything from this event."""
    return isinstance(event.data, (ProviderStarted, ContactAssigned))


def fold(known: ProviderContacts | None, event: Envelope) -> ProviderContacts | None:
    """The provider's contacts after ``event``; None when the event does not concern contacts.

    Folding the same event twice gives the same result, so a redelivered event is harmless.
    """
    data = event.data
    state = known or ProviderContacts(provider_id=event.provider_id)
    if not isinstance(data, (ProviderStarted, ContactAssigned)):
        return None
    if event.dedup_key in state.processed:
        return state
    processed = [*state.processed, event.dedup_key][-PROCESSED_MEMORY:]
    if isinstance(data, ProviderStarted):
        contacts = list(state.contacts)
        for contact in data.contacts:
            contacts = with_contact(contacts, contact)
        return state.model_copy(update={"provider_name": data.provider.name, "contacts": contacts, "processed": processed})
    return state.model_copy(update={"contacts": with_contact(state.contacts, data.contact), "processed": processed})


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


def line_recipients(
    contacts: Sequence[Contact], provider_id: str, responsible: str, line: TaskLine, config: MailConfig
) -> list[str]:
    """Who gets one task line: never empty.

    KLK IT's tasks go to the system's address in ``system_contacts`` (e.g. KLK IT's system
    manager), else to the KLK IT address. A provider-side party's go to the first of: the
    provider's contacts for the line's system and unit; for the system (provider-wide); for the
    unit (any system); its provider-wide contact persons and administrators; the provider's
    fallback address (``fallback_contacts``); the system's (``system_contacts``); the global
    fallback address, whose owner forwards the mail and chases the missing contact.
    """
    if responsible == "klk-it":
        return [config.system_contacts.get(line.system) or config.klk_it_email]
    system, unit = line.system, line.unit_id
    steps = [lambda c: c.system == system and c.unit_id == unit] if unit else []
    steps.append(lambda c: c.system == system and c.unit_id is None)
    if unit:
        steps.append(lambda c: c.system is None and c.unit_id == unit)
    steps.append(lambda c: c.system is None and c.unit_id is None and c.role in PROVIDER_WIDE_ROLES)
    for step in steps:
        found = _addresses(c for c in contacts if step(c))
        if found:
            return found
    fallback = config.fallback_contacts.get(provider_id) or config.system_contacts.get(system) or config.fallback_email
    return [fallback]


class PlannedMail(Contract):
    """One mail of a request: to one recipient, about the request's tasks that are theirs."""

    recipient: str
    task_ids: list[str] = Field(min_length=1)
    #: Who else the same mail goes to (a ``date-at-risk`` notice: everyone concerned, together).
    others: list[str] = Field(default_factory=list)

    @property
    def to(self) -> list[str]:
        return [self.recipient, *self.others]


class MailPlan(Contract):
    """Who gets which lines of a notification request: one mail per distinct recipient."""

    notification_id: str
    mails: list[PlannedMail] = Field(min_length=1)


def route(contacts: Sequence[Contact], request: NotificationRequest, config: MailConfig) -> MailPlan:
    """Resolve the recipients of each task line and give every recipient one mail with their lines.

    Addresses are compared without regard to case. Recipients are in the order their first task
    comes in the mail (earliest due first), so the plan for the same request and contacts is
    always the same.
    """
    if request.kind == "date-at-risk":
        return _together(contacts, request, config)
    mails: dict[str, tuple[str, list[str]]] = {}  # lower-cased address -> (address, task ids)
    for line in ordered(request.tasks):
        for address in line_recipients(contacts, request.provider_id, request.responsible, line, config):
            _, task_ids = mails.setdefault(address.lower(), (address, []))
            if line.task_id not in task_ids:
                task_ids.append(line.task_id)
    return MailPlan(
        notification_id=request.id,
        mails=[PlannedMail(recipient=address, task_ids=task_ids) for address, task_ids in mails.values()],
    )


def _together(contacts: Sequence[Contact], request: NotificationRequest, config: MailConfig) -> MailPlan:
    """One mail for everyone a verdict concerns: whoever each task of the chain goes to (the
    provider's contacts for it, or KLK IT's system manager) and KLK IT, so that they agree on the
    date with each other, not each alone."""
    lines = ordered(request.tasks)
    found = [address for line in lines
             for address in line_recipients(contacts, request.provider_id, _side(line.responsible), line, config)]
    found.append(config.klk_it_email)
    recipients = list({address.lower(): address for address in found[::-1]}.values())[::-1]  # each once, where first named
    return MailPlan(notification_id=request.id, mails=[PlannedMail(
        recipient=recipients[0], others=recipients[1:], task_ids=[line.task_id for line in lines])])


def _side(responsible: str | None) -> str:
    """KLK IT's tasks go to KLK IT's addresses; every other party's to the provider's contacts."""
    return "klk-it" if responsible == "klk-it" else "provider"


def for_mail(request: NotificationRequest, mail: PlannedMail) -> NotificationRequest:
    """The part of ``request`` one planned mail is about (same id, kind and party; fewer tasks)."""
    wanted = set(mail.task_ids)
    lines = [line for line in request.tasks if line.task_id in wanted]
    if not lines:
        raise ValueError(f"planned mail for {request.id} names none of its tasks")
    systems = {line.system for line in lines}
    units = {line.unit_id for line in lines}
    return request.model_copy(update={
        "tasks": lines,
        "system": lines[0].system if len(systems) == 1 else None,
        "unit_id": lines[0].unit_id if len(units) == 1 else None,
    })


# ------------------------------------------------------------------------------------ composition

_PARTY = {
    "sv": {
        "klk-it": "KLK IT",
        "provider": "utföraren",
        "main-provider": "huvudutföraren",
        "handing-over-provider": "den överlämnande utföraren",
        "taking-over-provider": "den övertagande utföraren",
    },
    "en": {
        "klk-it": "KLK IT",
        "provider": "the provider",
        "main-provider": "the main provider",
        "handing-over-provider": "the handing-over provider",
        "taking-over-provider": "the taking-over provider",
    },
}
#: The mail shows these languages in this order; each is one template (see ``templating``).
LANGUAGES = ("sv", "en")
KINDS: tuple[NotificationKind, ...] = ("reminder", "escalation", "late-order", "unblocked", "date-at-risk")
ENGLISH_FOLLOWS = "-- In English --"


def _tasks_sv(count: int) -> str:
    return "1 uppgift" if count == 1 else f"{count} uppgifter"


def _one_line(text: str) -> str:
    """Header-safe: no line breaks (header injection), no runs of whitespace."""
    return " ".join(text.split())


def provider_label(request: NotificationRequest) -> str:
    return redact(_one_line(request.provider_name or request.provider_id))


def first_due(request: NotificationRequest) -> dt.date:
    """The earliest deadline among the request's tasks: the one that binds."""
    return min(task.due for task in request.tasks)


def first_checklist_due(request: NotificationRequest) -> dt.date:
    """The earliest date the checklist asked for among the request's tasks (a late order: the
    deadline that had passed, where the task is now due later)."""
    return min(task.checklist_due or task.due for task in request.tasks)


def subject(request: NotificationRequest) -> str:
    """The Swedish subject; each kind has its own wording. Always one line."""
    n = len(request.tasks)
    tasks = _tasks_sv(n)
    who = provider_label(request)
    due = first_due(request).isoformat()
    wording: dict[NotificationKind, str] = {
        "reminder": f"Påminnelse: {tasks} för {who} förfaller senast {due}",
        "escalation": f"Eskalering: {tasks} för {who} {'är försenad' if n == 1 else 'är försenade'} (förföll {due})",
        "late-order": f"Sen beställning: {tasks} för {who} hade tidsgräns redan {first_checklist_due(request).isoformat()}",
        "unblocked": f"Kan påbörjas: {tasks} för {who} förfaller senast {due}",
        "date-at-risk": _at_risk_subject(request, who),
    }
    return _one_line(f"{SUBJECT_PREFIX} {wording[request.kind]}")


def _at_risk_subject(request: NotificationRequest, who: str) -> str:
    verdict = request.verdict
    if verdict is None or verdict.date is None:
        return f"Datum i fara för {who}"
    feasible = verdict.earliest_feasible.isoformat() if verdict.earliest_feasible else "okänt"
    return f"Datum i fara: {verdict.date.isoformat()} för {who} kan inte hållas, tidigast {feasible}"


def ordered(tasks: Iterable[TaskLine]) -> list[TaskLine]:
    """The order a mail lists tasks in: earliest due first."""
    return sorted(tasks, key=lambda t: (t.due, t.system, t.action, t.unit_id or "", t.task_id))


def status_link(request: NotificationRequest, config: MailConfig) -> str:
    return f"{config.status_page_url.rstrip('/')}/providers/{quote(request.provider_id, safe='')}"


def mail_templates(config: MailConfig) -> Templates:
    """The templates ``config`` names (an operator's directory over the built-in set)."""
    return templates(getattr(config, "mail_templates_dir", None))


def _context(request: NotificationRequest, config: MailConfig, language: str) -> dict[str, Any]:
    tasks = ordered(request.tasks)
    return {
        "kind": request.kind,
        "language": language,
        "provider": provider_label(request),
        "party": _PARTY.get(language, _PARTY["en"])[request.responsible],
        "tasks": tasks,
        "n": len(tasks),
        "first_due": first_due(request),
        "first_checklist_due": first_checklist_due(request),
        "systems": sorted({task.system for task in tasks}),
        "link": status_link(request, config),
        "reference": request.id,
        "verdict": request.verdict,
    }


def body_and_languages(
    request: NotificationRequest, config: MailConfig, library: Templates | None = None
) -> tuple[str, list[str]]:
    """The plain-text body (Swedish, then English) and the languages it is in.

    Each language's part is the kind's template in that language, or its fallback (see
    ``templating.candidates``); a part that falls back to the same template as English is shown
    once. Everything is scrubbed of HSA-ids after rendering.
    """
    library = library or mail_templates(config)
    parts: list[str] = []
    shown: dict[str, str] = {}  # template name -> language it is in
    for language in LANGUAGES:
        template = library.resolve(request.kind, language)
        name = str(template.name)
        if name in shown:
            continue
        shown[name] = language_of(name)
        parts.append(template.render(_context(request, config, shown[name])).strip("\n"))
    text = f"\n\n{ENGLISH_FOLLOWS}\n\n".join(parts) + "\n"
    footer = library.optional(FOOTER)
    if footer is not None:
        text += "\n" + footer.render(_context(request, config, "en")).strip("\n") + "\n"
    return redact(text), list(dict.fromkeys(shown.values()))


def body(request: NotificationRequest, config: MailConfig, library: Templates | None = None) -> str:
    return body_and_languages(request, config, library)[0]


def _recipient_hash(to: Sequence[str]) -> str:
    joined = "\n".join(sorted(address.strip().lower() for address in to))
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


def message_id(request: NotificationRequest, to: Sequence[str]) -> str:
    """``<{request.id}.{hash of the recipient}@omboard>``: stable per request and recipient.

    The same request to the same recipient always yields the same Message-ID; its mails to
    different recipients differ. Characters a Message-ID cannot hold are replaced; ids are
    deterministic, so that is stable too.
    """
    local = _MESSAGE_ID_UNSAFE.sub("-", request.id)
    local = re.sub(r"\.{2,}", ".", local).strip(".") or "notification"
    return f"<{local}.{_recipient_hash(to)}@omboard>"


def compose(
    request: NotificationRequest, to: Sequence[str], config: MailConfig, library: Templates | None = None
) -> EmailMessage:
    """The complete mail for ``request`` (usually ``for_mail(...)``: one recipient's lines);
    composing the same request for the same recipients twice gives the same bytes."""
    if not to:
        raise ValueError("a mail needs at least one recipient")
    text, languages = body_and_languages(request, config, library)
    message = EmailMessage()
    message["Subject"] = subject(request)
    message["From"] = config.mail_from
    message["To"] = ", ".join(_one_line(address) for address in to)
    message["Message-ID"] = message_id(request, to)
    # The request's time, not the wall clock: a re-sent mail is byte for byte the same mail.
    requested = request.requested_at
    message["Date"] = format_datetime(requested if requested.tzinfo else requested.replace(tzinfo=dt.UTC))
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies, please
    message["X-Omboard-Notification-Id"] = _one_line(request.id)
    message["X-Omboard-Kind"] = request.kind
    message.set_content(text)
    message["Content-Language"] = ", ".join(languages)  # after set_content, which replaces Content-* headers
    return message


# ------------------------------------------------------------------------------------ bookkeeping


def sent_key(notification_id: str, recipient: str) -> bytes:
    """Where the ``sent`` table keeps the DeliveryRecord of one request's mail to one recipient."""
    return f"{notification_id}|{recipient.strip().lower()}".encode()


def should_send(previous: DeliveryRecord | None) -> bool:
    """Send unless this mail (request and recipient) was already delivered.

    A mail seen before whose delivery failed is tried again: that is how an operator retries
    a dead-lettered notification (the deadline engine asks for each reminder once); the mails
    of the request that did go out are not sent again.
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
