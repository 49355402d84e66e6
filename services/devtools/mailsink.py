"""A local SMTP sink for ``make run`` and tests: keeps every mail where a person can read it.

Each mail received is written to ``<directory>/<UTC timestamp>-<Message-ID>.eml`` (open it in any
mail client or text editor) and kept in memory for tests. A mail received twice is kept twice, so
a duplicate send is visible. Tests can make the sink refuse recipients or fail the next deliveries.

A mail it cannot write (its disk is full) is refused with ``452 4.3.1`` naming the directory and
the error: a temporary refusal, so the sender keeps the mail and tries again, as from a real relay
whose spool is full. Nothing is accepted that is not on disk.

It can also stand in for a real relay: given a certificate and key it offers STARTTLS and
requires it, and given credentials it requires AUTH (PLAIN/LOGIN, over TLS when TLS is on).
``sessions`` then says, per accepted mail, whether it came over TLS and as whom.

    python -m services.devtools.mailsink --directory var/mail --port 8025
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from services.devtools.processes import free_port

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")
log = logging.getLogger(__name__)


def write_file(path: Path, content: bytes) -> None:
    path.write_bytes(content)


def eml_name(message_id: str | None, at: dt.datetime) -> str:
    """``20261230T101500.123456Z-<sanitized Message-ID>.eml``: sorts by arrival, safe on any disk."""
    stem = _UNSAFE.sub("_", (message_id or "").strip().strip("<>"))[:150].strip("._") or "no-message-id"
    return f"{at.astimezone(dt.UTC):%Y%m%dT%H%M%S.%f}Z-{stem}.eml"


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        reply = self._sink._refusals.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        return self._sink._accept(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content,
                                  (session.ssl is not None, login))


class _Authenticator:
    def __init__(self, credentials: Mapping[str, str]) -> None:
        self._credentials = dict(credentials)

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if login in self._credentials and self._credentials[login] == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)  # 535 Authentication credentials invalid


class MailSink:
    """An aiosmtpd server on ``host:port`` (a free port when none is given) that keeps all mail."""

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        tls: tuple[Path, Path] | None = None,
        credentials: Mapping[str, str] | None = None,
        write: Callable[[Path, bytes], None] = write_file,
    ) -> None:
        """``tls``: (certificate, key) PEM files: offer and require STARTTLS. ``credentials``:
        login -> password: require AUTH. ``write`` stores one mail (tests give it a full disk)."""
        self.write = write
        self.directory = Path(directory)
        self.host = host
        self.port = port or free_port(host)  # aiosmtpd's Controller cannot bind port 0
        self.tls = tls
        self.credentials = dict(credentials) if credentials else None
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []  # (MAIL FROM, RCPT TOs) per message
        self.sessions: list[tuple[bool, str | None]] = []  # (over TLS, AUTH login) per message
        self.paths: list[Path] = []
        self._refusals: dict[str, str] = {}
        self._failures: list[str] = []
        self._changed = threading.Condition()
        self._controller: Controller | None = None

    # --- running ---------------------------------------------------------------------------

    def start(self) -> MailSink:
        self.directory.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {}
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*map(str, self.tls))
            options |= {"tls_context": context, "require_starttls": True}
        if self.credentials is not None:
            options |= {"authenticator": _Authenticator(self.credentials), "auth_required": True,
                        "auth_require_tls": self.tls is not None}
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **options)
        self._controller.start()  # returns once the server answers
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- test controls ---------------------------------------------------------------------

    def refuse(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        """Answer RCPT TO ``address`` with ``reply`` (a 4xx reply: temporarily, 5xx: for good)."""
        self._refusals[address.lower()] = reply

    def accept(self, address: str) -> None:
        """Stop refusing ``address``."""
        self._refusals.pop(address.lower(), None)

    def fail_next(self, times: int = 1, reply: str = "451 4.3.0 Try again later") -> None:
        """Answer the next ``times`` DATA commands with ``reply`` instead of accepting the mail."""
        with self._changed:
            self._failures += [reply] * times

    # --- what arrived ----------------------------------------------------------------------

    def _accept(self, mail_from: str, rcpt_tos: list[str], content: bytes,
                session: tuple[bool, str | None] = (False, None)) -> str:
        with self._changed:
            if self._failures:
                return self._failures.pop(0)
        message = BytesParser(policy=policy.default).parsebytes(content)
        path = self.directory / eml_name(message["Message-ID"], dt.datetime.now(dt.UTC))
        tmp = path.with_suffix(".tmp")
        try:
            self.write(tmp, content)
            tmp.replace(path)  # a reader never sees half a mail
        except OSError as error:
            with_reason = f"cannot write the mail to {self.directory}: {error.strerror or error}"
            log.error("mail sink: %s; refusing it for now (452)", with_reason)
            tmp.unlink(missing_ok=True)
            return f"452 4.3.1 Insufficient system storage: {with_reason}"
        with self._changed:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((mail_from, rcpt_tos))
            self.sessions.append(session)
            self.paths.append(path)
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    def snapshot(self) -> list[EmailMessage]:
        with self._changed:
            return list(self.messages)

    def wait_for(self, condition: Callable[[list[EmailMessage]], bool], timeout: float) -> list[EmailMessage]:
        """Wait until ``condition(messages)`` holds; returns the messages. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(list(self.messages)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"mail sink: condition not met within {timeout}s ({len(self.messages)} mails)")
                self._changed.wait(left)
            return list(self.messages)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local SMTP sink: writes every mail as an .eml file.")
    parser.add_argument("--directory", type=Path, default=Path("var/mail"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    with MailSink(args.directory, args.host, args.port) as sink:
        print(f"mail sink on {sink.host}:{sink.port}, writing to {sink.directory}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
