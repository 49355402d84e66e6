"""Logging for every omboard process, with personal identifiers scrubbed as a last line of defence.

Code does not log HSA-ids or personal identity numbers (it logs pseudonyms); this filter catches
what slips through anyway, e.g. inside a library's exception message.
"""

from __future__ import annotations

import logging
import logging.config
import re

# HSA-ids, and personal identity numbers with or without century and separator.
_PERSONAL = re.compile(r"\bSE\d{10}-[A-Za-z0-9]{1,20}\b|\b(?:19|20)?\d{6}[-+]?\d{4}\b")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    return _PERSONAL.sub(REDACTED, text)


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
    """A dictConfig for ``logging.config`` and for Faust's Worker, which otherwise installs its own."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactingFilter}},
        "formatters": {"plain": {"format": f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"],
                        "stream": "ext://sys.stderr"},
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def configure_logging(process: str, level: str = "INFO") -> None:
    logging.config.dictConfig(logging_config(process, level))
