"""Dead letters: what a service could not process, kept byte for byte with the reason beside it.

Faust acks a message whose handler raised, so anything not dead-lettered is silently gone.
"""

from __future__ import annotations

import datetime as dt

from schemas.topics import dead_letter_topic
from services.runtime.streams import Outgoing, Received

# Headers are stored with every record and read by people: keep a reason short. Callers must
# not put personal identity numbers in it (pydantic errors quote the input: pass a summary).
MAX_REASON = 1000


def dead_letter(service: str, received: Received, reason: str, at: dt.datetime | None = None) -> Outgoing:
    """The dead-letter record for ``received``, to be produced with the rest of its batch."""
    at = at or dt.datetime.now(dt.UTC)  # wall clock: when it happened, not domain time
    provenance = {
        "dlq_reason": reason[:MAX_REASON],
        "dlq_service": service,
        "dlq_topic": received.topic,
        "dlq_partition": str(received.partition),
        "dlq_offset": str(received.offset),
        "dlq_at": at.isoformat(),
    }
    headers = [*received.headers, *((name, value.encode()) for name, value in provenance.items())]
    return Outgoing(dead_letter_topic(service), received.key, received.value, headers)

