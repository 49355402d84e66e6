"""A unit taken over by a provider omboard knows: the closure at the handing-over provider stands
for a ``UnitOpened`` at the taking-over one, whose planners plan that side (its structures, the
Phoniro registration of the company and its field groups, the night-care contact, the access for
the staff who move with the unit, the readiness check). Pure.

The planners of one provider see only that provider's state, so the taker's side is planned where
the taker's state is: the service that plans unit rules publishes this event, keyed by the taker.
Its id is derived from the closure's, so a redelivered closure publishes the same event again and
the taker's planners see a redelivery. A taker omboard does not know cannot be planned for: its
planners dead-letter the event, naming the provider (its own ProviderStarted with
``takeover_from`` plans its side instead).
"""

from __future__ import annotations

import datetime as dt
import hashlib

from schemas.events import LAST_DATE, Envelope, Unit, UnitClosed, UnitOpened
from services.domain.state import StateView

SOURCE = "omboard/orgstructure"


def takeover(closure: Envelope, state: StateView) -> Envelope | None:
    """The UnitOpened ``closure`` (a UnitClosed with ``taken_over_by``) stands for at the taker, who
    runs the unit from the day after the closing date; None for any other event, or a unit the
    handing-over provider has not got open."""
    data = closure.data
    if not isinstance(data, UnitClosed) or data.taken_over_by in (None, closure.provider_id):
        return None
    unit = state.unit(data.unit_id)
    if unit is None or not unit.active:
        return None
    digest = hashlib.sha256(closure.dedup_key.encode()).hexdigest()[:32]
    return Envelope(
        specversion="1.0", id=f"takeover-{digest}", source=SOURCE, type="UnitOpened", time=closure.time,
        data=UnitOpened(
            provider_id=data.taken_over_by,
            unit=Unit(id=unit.id, name=unit.name, staff_count=unit.staff_count, field_groups=unit.field_groups),
            start_date=min(data.closing_date + dt.timedelta(days=1), LAST_DATE),
            taken_over_from=closure.provider_id,
        ),
    )
