"""An operator's confirmation of a held roster (warning ``roster-held``), as the event both the
intake API and ``omboard roster confirm`` publish.

A confirmation that names its roster (the digest its ``roster-held`` warning and task give) confirms
that one only, and sent again is the same event. One that names only the date confirms the roster
held then, and is an event of its own each time: a second finds nothing held and plans nothing
(warning ``roster-not-held``).
"""

from __future__ import annotations

import datetime as dt
import uuid

from schemas.events import Envelope
from schemas.parsing import FieldError, InvalidEvent, parse_event

SOURCE = "omboard/operator"


def roster_confirmation(provider_id: str, as_of: str, confirmed_by: str, at: dt.datetime,
                        roster: str | None = None) -> Envelope:
    """Raises InvalidEvent naming ``provider_id``, ``as_of``, ``confirmed_by`` or ``roster`` (never
    their values). Naming the ``roster`` (as its warning and task give it) confirms that one only,
    and a confirmation of it sent again is the same event."""
    data = {"provider_id": provider_id, "as_of": as_of, "confirmed_by": confirmed_by}
    if roster is not None:
        data["roster"] = roster
    raw = {
        "specversion": "1.0",
        "id": f"roster-confirmed:{provider_id}:{roster}" if roster else f"roster-confirmed:{uuid.uuid4()}",
        "source": SOURCE,
        "type": "StaffRosterConfirmed",
        "time": at.isoformat(),
        "data": data,
    }
    try:
        return parse_event(raw)
    except InvalidEvent as invalid:
        # Named as the caller gave them, not as fields of an event it never wrote.
        errors = [FieldError(field=error.field.removeprefix("data."), reason=error.reason)
                  for error in invalid.errors if error.field.startswith("data.")]
        raise InvalidEvent(errors or [FieldError(field="provider_id", reason="makes no valid event id")]) from None
