"""SMTP delivery with aiosmtplib; every failure is classified temporary or permanent.

Temporary: a 4xx reply, a refused or dropped connection, a timeout — trying again later may work.
Permanent: a 5xx reply (unknown mailbox, rejected sender, failed authentication) or a server that
lacks what the settings ask for (STARTTLS, AUTH) — trying again will not help.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

log = logging.getLogger(__name__)

#: How long one SMTP conversation may take before it counts as a (temporary) failure.
TIMEOUT = 30.0


class SmtpConfig(Protocol):
    smtp_host: str
    smtp_port: int
    smtp_starttls: bool
    smtp_username: str | None
    smtp_password: str | None
    smtp_cafile: Path | None


class DeliveryError(Exception):
    """A mail that was not delivered; ``temporary`` says whether trying again may help."""

    temporary: bool = False

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TemporaryDeliveryError(DeliveryError):
    temporary = True


class PermanentDeliveryError(DeliveryError):
    temporary = False


@dataclass(frozen=True)
class Sent:
    """A mail the server accepted; ``refused`` holds recipients it refused (address -> reply)."""

    response: str
    refused: dict[str, str] = field(default_factory=dict)


def _by_code(code: int, reason: str) -> DeliveryError:
    return TemporaryDeliveryError(reason) if 400 <= code < 500 else PermanentDeliveryError(reason)


def classify(error: BaseException) -> DeliveryError:
    """Map an aiosmtplib or socket error to a temporary or permanent delivery error."""
    if isinstance(error, DeliveryError):
        return error
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):  # every recipient refused
        replies = [f"{r.recipient}: {r.code} {r.message}" for r in error.recipients]
        reason = "all recipients refused: " + "; ".join(replies)
        temporary = any(400 <= r.code < 500 for r in error.recipients)  # a retry may get those through
        return TemporaryDeliveryError(reason) if temporary else PermanentDeliveryError(reason)
    if isinstance(error, aiosmtplib.SMTPResponseException):  # a reply with a code (includes AUTH, DATA, MAIL FROM)
        return _by_code(error.code, f"{type(error).__name__}: {error.code} {error.message}")
    if isinstance(error, aiosmtplib.SMTPNotSupported):  # e.g. STARTTLS or AUTH asked for but not offered
        return PermanentDeliveryError(f"SMTPNotSupported: {error}")
    if type(error) is aiosmtplib.SMTPException and "not supported" in str(error):
        # aiosmtplib raises the bare class when the server offers no STARTTLS, or no AUTH (often:
        # not before STARTTLS): the settings and the server disagree; retrying will not help.
        return PermanentDeliveryError(f"SMTPException: {error}")
    if isinstance(error, ssl.SSLCertVerificationError):  # an untrusted or mismatched certificate
        return PermanentDeliveryError(f"SSLCertVerificationError: {error}")
    if isinstance(error, (OSError, asyncio.TimeoutError, aiosmtplib.SMTPException)):  # connection, timeout
        return TemporaryDeliveryError(f"{type(error).__name__}: {error}")
    return TemporaryDeliveryError(f"{type(error).__name__}: {error}")


async def send(message: EmailMessage, settings: SmtpConfig, *, timeout: float = TIMEOUT) -> Sent:
    """Send ``message`` to the addresses in its headers; raises a DeliveryError on failure."""
    options: dict = {
        "hostname": settings.smtp_host,
        "port": settings.smtp_port,
        "timeout": timeout,
        "start_tls": bool(settings.smtp_starttls),  # never opportunistic: the settings decide
    }
    cafile = getattr(settings, "smtp_cafile", None)
    if cafile:
        options["cert_bundle"] = str(cafile)  # verify the server's certificate against this CA
    if settings.smtp_username:
        options |= {"username": settings.smtp_username, "password": settings.smtp_password or ""}
    try:
        refused, response = await aiosmtplib.send(message, **options)
    except Exception as error:
        raise classify(error) from error
    return Sent(
        response=response,
        refused={address: f"{reply.code} {reply.message}" for address, reply in refused.items()},
    )


Sender = Callable[[EmailMessage], Awaitable[Sent]]


async def send_with_retries(
    send_once: Sender,
    message: EmailMessage,
    *,
    attempts: int = 4,
    backoff: float = 0.5,
    factor: float = 2.0,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> tuple[Sent, int]:
    """Send, trying temporary failures again after ``backoff``, ``backoff*factor``, ... seconds.

    Returns the result and the number of attempts; raises the last DeliveryError when a failure
    is permanent or the attempts are used up (its ``attempts`` attribute says how many were made).
    """
    delay = backoff
    for attempt in range(1, attempts + 1):
        try:
            return await send_once(message), attempt
        except Exception as raised:
            error = classify(raised)
            error.attempts = attempt  # type: ignore[attr-defined]
            if not error.temporary or attempt == attempts:
                raise error from raised
            log.warning("mail %s: %s; trying again in %.1fs", message["Message-ID"], error.reason, delay)
            await sleep(delay)
            delay *= factor
    raise AssertionError("unreachable")  # pragma: no cover
