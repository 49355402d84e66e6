"""Logging for every omboard process, with personal identifiers scrubbed as a last line of defence.

Code does not log HSA-ids or personal identity numbers (it logs pseudonyms); this filter catches
what slips through anyway, e.g. inside a library's exception message.

Keys are not logged either, but a client may put one in a query string (``?api_key=...``), and
uvicorn's access log (``uvicorn.access``, which reaches the root handler configured here) and
httpx's request log write the whole URL. ``SecretQueryFilter`` blanks the value of every query
parameter named like a secret.
"""

from __future__ import annotations

import logging
import logging.config
import re
from urllib.parse import unquote_plus

from schemas.identifiers import redact

REDACTED = "[redacted]"


#: One ``name=value`` of a query string: after ``?`` or ``&``, the value up to the next separator
#: or the end of the URL as a log line shows it (a space or a quote).
_QUERY_PARAMETER = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;?#\s\"']+)=(?P<value>[^&;#\s\"']*)")
#: A parameter whose name holds one of these (case-insensitive, once decoded) carries a secret.
_SECRET_NAMES = re.compile(r"key|token|secret|passw|pwd|credential|auth|session|signature", re.IGNORECASE)


def redact_secret_query(text: str) -> str:
    """``text`` with the value of every secret-named query parameter replaced by ``[redacted]``."""
    if "=" not in text:
        return text

    def blank(match: re.Match[str]) -> str:
        if not match.group("value") or not _SECRET_NAMES.search(unquote_plus(match.group("name"))):
            return match.group(0)
        return f"{match.group('lead')}{match.group('name')}={REDACTED}"

    return _QUERY_PARAMETER.sub(blank, text)


class SecretQueryFilter(logging.Filter):
    """Redacts secrets in URLs. Each argument is redacted on its own first, so a record keeps its
    arguments where it can (uvicorn's access formatter, should a deployment use it, reads them by
    position); a secret that only the formatted message shows (``"?key=%s"``) collapses it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_secret_query(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact_secret_query(v) if isinstance(v, str) else v for k, v in record.args.items()}
        message = record.getMessage()
        cleaned = redact_secret_query(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def logging_config(process: str, level: str = "INFO") -> dict:
    """A dictConfig for ``logging.config``: one line per record, secrets and identity numbers redacted."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"secret_query": {"()": SecretQueryFilter}, "redact": {"()": RedactingFilter}},
        "formatters": {"plain": {"format": f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["secret_query", "redact"],
                        "stream": "ext://sys.stderr"},
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
        # kafka-python logs every connection it opens at INFO (the topic set-up at start).
        "loggers": {"kafka": {"level": "WARNING"}},
    }


def configure_logging(process: str, level: str = "INFO") -> None:
    logging.config.dictConfig(logging_config(process, level))
