"""An operator's confirmation of a held roster (warning ``roster-held``), as the event both the
intake API and ``omboard roster confirm`` publish.

Each is an event of its own (two rosters held on the same date are confirmed one at a time); a
second confirmation of a roster finds nothing held and plans nothing (warning ``roster-not-held``).
"""

from __future__ import annotations

import datetime as dt
import uuid

from schemas.events import Envelope
from schemas.parsing import FieldError, InvalidEvent, parse_event

SOURCE = "omboard/operator"


def roster_confirmation(provider_id: str, as_of: str, confirmed_by: str, at: dt.datetime) -> Envelope:
    """Raises InvalidEvent naming ``provider_id``, ``as_of`` or ``confirmed_by`` (never their values)."""
    raw = {
        "specversion": "1.0",
        "id": f"roster-confirmed:{uuid.uuid4()}",
        "source": SOURCE,
        "type": "StaffRosterConfirmed",
        "time": at.isoformat(),
        "data": {"provider_id": provider_id, "as_of": as_of, "confirmed_by": confirmed_by},
    }
    try:
        return parse_event(raw)
    except InvalidEvent as invalid:
        # Named as the caller gave them, not as fields of an event it never wrote.
        errors = [FieldError(field=error.field.removeprefix("data."), reason=error.reason)
                  for error in invalid.errors if error.field.startswith("data.")]
        raise InvalidEvent(errors or [FieldError(field="provider_id", reason="makes no valid event id")]) from None
