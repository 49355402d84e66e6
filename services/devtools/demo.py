"""The demo scenario ``make run`` publishes: a private home-care provider starting soon, two of
its staff named.

Dates are relative to today so that some orders are already late (a late-order notice goes out
at once), the start itself cannot be met in three weeks (a date-at-risk notice to the provider and
KLK IT together names the earliest start that can) and some reminders fall due today: a person
sees mail without doing anything.
"""

from __future__ import annotations

import datetime as dt
import uuid

from services.domain.calendar import BusinessCalendar


def demo_events(today: dt.date | None = None) -> list[dict]:
    today = today or dt.date.today()
    start = BusinessCalendar().add_business_days(today, 15)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return [
        {
            "specversion": "1.0",
            "id": f"demo-{uuid.uuid4()}",
            "source": "omboard/demo",
            "type": "ProviderStarted",
            "time": now.isoformat(),
            "subject": "demo-omsorg",
            "data": {
                "provider": {
                    "id": "demo-omsorg",
                    "name": "Demo Omsorg AB",
                    "org_number": "556036-0793",
                    "regi": "privat",
                    "services": ["hemtjanst"],
                    "hsl": True,
                    "uses_flexite": False,
                },
                "start_date": start.isoformat(),
                "takeover_from": None,
                "units": [
                    # Two of Norr's 23 named: their access is their own (see /providers/demo-omsorg/access).
                    {"id": "demo-norr", "name": "Hemtjänst Norr", "staff_count": 23, "field_groups": ["Norr 1", "Norr 2"],
                     "staff": [
                         {"id": "SE2321000032-DEMO0001", "name": "Sara Sjuksköterska", "email": "sara@demo-omsorg.example",
                          "role": "sjukskoterska", "licensed": True},
                         {"id": "SE2321000032-DEMO0002", "name": "Erik Enhetschef", "email": "erik@demo-omsorg.example",
                          "role": "enhetschef", "licensed": False},
                     ]},
                    {"id": "demo-syd", "name": "Hemtjänst Syd", "staff_count": 9, "field_groups": ["Syd"]},
                ],
                "contacts": [
                    {"name": "Karin Kontakt", "email": "karin@demo-omsorg.example", "role": "kontaktperson"},
                    {"name": "Sven Siebel", "email": "sven@demo-omsorg.example", "role": "administrator", "system": "siebel"},
                ],
            },
        }
    ]
