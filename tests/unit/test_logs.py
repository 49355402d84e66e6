"""What reaches the log: the handler every process configures scrubs keys in URLs and personal
identifiers, whichever logger the record comes from."""

from __future__ import annotations

import io
import logging
import logging.config
from collections.abc import Iterator

import pytest

from schemas.identifiers import PERSONAL_NUMBER_PLACEHOLDER, pseudonym
from services.runtime.logs import REDACTED, logging_config, redact_secret_query

KEY = "ops-key-0123456789abcdef"


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """The root handler of ``logging_config``, writing to a buffer; the test's logging is restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    config = logging_config("api")
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        yield stream
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_the_access_log_shows_no_key_from_a_query_string(logged):
    # Exactly what uvicorn's h11/httptools protocols log for each request.
    path = (f"/v1/events?key={KEY}&page=2&api_key={KEY}&token={KEY}&Access_Token={KEY}"
            f"&x-api-key={KEY}&api%5Fkey={KEY}&system=siebel")
    access = logging.getLogger("uvicorn.access")
    records: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = records.append  # type: ignore[method-assign]
    logging.getLogger().addHandler(capture)  # after the redacting handler, so it sees what that one left
    level = access.level
    access.setLevel(logging.INFO)  # as uvicorn sets it
    try:
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:51234", "POST", path, "1.1", 202)
    finally:
        access.setLevel(level)

    line = logged.getvalue()
    assert KEY not in line
    assert "uvicorn.access" in line and '"POST /v1/events?key=[redacted]&page=2&api_key=[redacted]' in line
    for name in ("token", "Access_Token", "x-api-key", "api%5Fkey"):
        assert f"&{name}={REDACTED}" in line
    assert line.rstrip().endswith('&system=siebel HTTP/1.1" 202')
    [record] = records
    assert len(record.args) == 5 and record.args[2].startswith("/v1/events?key=[redacted]")  # type: ignore[index]


def test_a_key_that_only_the_formatted_message_shows_is_redacted_too(logged):
    logging.getLogger("httpx").warning("HTTP Request: GET http://127.0.0.1:8001/providers?key=%s&x=1 \"401\"", KEY)
    assert KEY not in logged.getvalue() and "?key=[redacted]&x=1" in logged.getvalue()


def test_personal_identity_numbers_and_hsa_ids_are_still_redacted(logged):
    """The one ``redact`` that mail and API errors use too."""
    hsa_id = "SE2321000131-E000000000001"
    logging.getLogger("omboard").info("looked at %s and %s", "19121212-1212", hsa_id)
    assert "19121212-1212" not in logged.getvalue() and PERSONAL_NUMBER_PLACEHOLDER in logged.getvalue()
    assert hsa_id not in logged.getvalue() and pseudonym(hsa_id) in logged.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/x?key=abc", "/x?key=[redacted]"),
        ("/x?monkey=abc&keys=1", "/x?monkey=[redacted]&keys=[redacted]"),  # named like a key: blanked, harmless
        ("/x?key=&page=1", "/x?key=&page=1"),  # nothing to hide
        ("/x?system=siebel&status=open#key=y", "/x?system=siebel&status=open#key=y"),
        ("key=abc without a query", "key=abc without a query"),
    ],
)
def test_which_query_values_are_blanked(text, expected):
    assert redact_secret_query(text) == expected
